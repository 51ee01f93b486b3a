#include "runtime/confidence_sequence.h"

#include <algorithm>
#include <cmath>

namespace gati::runtime {
namespace {

// The most of its capital a bet may stake, as a share of what keeps the
// capital positive whatever the observation.
constexpr double kTruncation = 0.9;

}  // namespace

BettingConfidenceSequence::BettingConfidenceSequence(double alpha, std::vector<double> targets)
    : log_threshold_(std::log(2.0 / alpha)) {
  std::vector<double> means = std::move(targets);
  // Fine where bounds on disagreement live (1e-4 .. 0.1), coarser above.
  for (int k = 0; k <= 90; ++k) means.push_back(std::pow(10.0, -4.0 + 3.0 * k / 90));
  for (int k = 1; k <= 45; ++k) means.push_back(0.1 + 0.89 * k / 45);
  std::sort(means.begin(), means.end());
  means.erase(std::unique(means.begin(), means.end()), means.end());
  for (double m : means) {
    if (m > 0 && m < 1) grid_.push_back(Candidate{m});
  }
}

void BettingConfidenceSequence::Reset() {
  for (Candidate& c : grid_) c = Candidate{c.m};
  count_ = 0;
  sum_ = 0;
  lower_ = 0;
  upper_ = 1;
}

void BettingConfidenceSequence::Add(double x) {
  x = std::clamp(x, 0.0, 1.0);
  // The running mean before this observation, shrunk towards 1/2 by one
  // pseudo-observation: the bets depend on the past only.
  const double estimate = (sum_ + 0.5) / (count_ + 1.0);
  for (Candidate& c : grid_) {
    const double m = c.m;
    const double kelly = (m - estimate) / (m * (1 - m));
    const double up = std::clamp(kelly, 0.0, kTruncation / (1 - m));
    const double down = std::clamp(-kelly, 0.0, kTruncation / m);
    c.log_up += std::log1p(-up * (x - m));
    c.log_down += std::log1p(down * (x - m));
    c.rejected_up = c.rejected_up || c.log_up >= log_threshold_;
    c.rejected_down = c.rejected_down || c.log_down >= log_threshold_;
  }
  ++count_;
  sum_ += x;
  // Upper: the grid point above the largest mean not yet shown too large
  // (every grid point from there up is); lower likewise from below. A mean
  // between two grid points is covered by the pair around it.
  const int size = static_cast<int>(grid_.size());
  int k = size - 1;
  while (k >= 0 && grid_[k].rejected_up) --k;
  upper_ = k + 1 < size ? grid_[k + 1].m : 1.0;
  k = 0;
  while (k < size && grid_[k].rejected_down) ++k;
  lower_ = k > 0 ? grid_[k - 1].m : 0.0;
}

const BettingConfidenceSequence::Candidate* BettingConfidenceSequence::Find(double target) const {
  for (const Candidate& c : grid_) {
    if (c.m == target) return &c;
  }
  return nullptr;
}

bool BettingConfidenceSequence::Above(double target) const {
  const Candidate* c = Find(target);
  return c != nullptr ? c->rejected_down : lower_ > target;
}

bool BettingConfidenceSequence::Below(double target) const {
  const Candidate* c = Find(target);
  return c != nullptr ? c->rejected_up : upper_ < target;
}

}  // namespace gati::runtime
