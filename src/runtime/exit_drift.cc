#include "runtime/exit_drift.h"

#include <algorithm>
#include <cmath>

namespace gati::runtime {

ExitDrift::ExitDrift(std::vector<double> plan_shares, int64_t reference_samples, int block,
                     int blocks, int64_t min_requests, double z)
    : plan_(std::move(plan_shares)),
      reference_(static_cast<double>(std::max<int64_t>(reference_samples, 1))),
      block_(block),
      blocks_(blocks),
      min_requests_(min_requests),
      z_(z),
      counts_(blocks, std::vector<int64_t>(plan_.size(), 0)),
      totals_(blocks, 0),
      pending_(plan_.size(), 0) {}

bool ExitDrift::Record(int exit) {
  if (exit < 0 || exit >= static_cast<int>(plan_.size())) return false;
  ++pending_[exit];
  if (++in_block_ < block_) return false;
  in_block_ = 0;
  const bool alarm = RecordBlock(pending_);
  std::fill(pending_.begin(), pending_.end(), 0);
  return alarm;
}

bool ExitDrift::RecordBlock(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (size_t e = 0; e < plan_.size(); ++e) {
    counts_[current_][e] = e < counts.size() ? counts[e] : 0;
    total += counts_[current_][e];
  }
  totals_[current_] = total;
  filled_ = std::min(filled_ + 1, blocks_);
  current_ = (current_ + 1) % blocks_;
  const bool was = drifting_;
  Judge();
  if (drifting_ && !was) ++alarms_;
  return drifting_ && !was;
}

void ExitDrift::Judge() {
  int64_t n = 0;
  for (int b = 0; b < filled_; ++b) n += totals_[(current_ - 1 - b + 2 * blocks_) % blocks_];
  last_z_ = 0;
  last_exit_ = -1;
  if (n < min_requests_) {
    drifting_ = false;
    return;
  }
  for (size_t e = 0; e < plan_.size(); ++e) {
    int64_t k = 0;
    for (int b = 0; b < filled_; ++b) k += counts_[(current_ - 1 - b + 2 * blocks_) % blocks_][e];
    // The plan's share, kept off 0 and 1 by half a sample so that an exit
    // it never saw still has a variance.
    const double p = std::clamp(plan_[e], 0.5 / reference_, 1 - 0.5 / reference_);
    const double se = std::sqrt(p * (1 - p) * (1.0 / n + 1.0 / reference_));
    const double z = std::abs(static_cast<double>(k) / n - p) / se;
    if (z > last_z_) {
      last_z_ = z;
      last_exit_ = static_cast<int>(e);
    }
  }
  drifting_ = last_z_ > z_;
}

void ExitDrift::Reset() {
  for (auto& block : counts_) std::fill(block.begin(), block.end(), 0);
  std::fill(totals_.begin(), totals_.end(), 0);
  std::fill(pending_.begin(), pending_.end(), 0);
  current_ = 0;
  in_block_ = 0;
  filled_ = 0;
  drifting_ = false;
}

}  // namespace gati::runtime
