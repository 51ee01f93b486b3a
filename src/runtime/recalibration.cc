#include "runtime/recalibration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "cache/calibration.h"

namespace gati::runtime {

RecalibrationWindow::RecalibrationWindow(int slots, int64_t capacity)
    : slots_(slots),
      capacity_(capacity),
      scores_(capacity * slots),
      labels_(capacity * slots),
      base_labels_(capacity) {}

void RecalibrationWindow::Add(const float* scores, const int* labels, int base_label) {
  std::copy(scores, scores + slots_, scores_.begin() + next_ * slots_);
  std::copy(labels, labels + slots_, labels_.begin() + next_ * slots_);
  base_labels_[next_] = base_label;
  next_ = (next_ + 1) % capacity_;
  count_ = std::min(count_ + 1, capacity_);
  ++added_;
}

void RecalibrationWindow::Clear() { next_ = count_ = 0; }

float OffsetThreshold(float base, double offset) {
  if (base > 1.0f) return kThresholdOff;
  if (base >= 1.0f || offset == 0) return base;
  const double clamped = std::clamp<double>(base, 1e-7, 1 - 1e-7);
  const double logit = std::log(clamped / (1 - clamped)) + offset;
  const float shifted = static_cast<float>(1 / (1 + std::exp(-logit)));
  // Rounding must not loosen a tightened threshold, nor the reverse.
  return offset > 0 ? std::max(shifted, base) : std::min(shifted, base);
}

bool ThresholdPolicy::any_on() const {
  return std::any_of(thresholds.begin(), thresholds.end(), [](float t) { return t <= 1.0f; });
}

std::string ThresholdPolicy::Describe(const std::vector<int>& taps) const {
  if (!any_on()) return "every tap off";
  char text_buffer[64] = "plan thresholds";
  if (offset != 0) {
    std::snprintf(text_buffer, sizeof(text_buffer), "plan thresholds %+.1f logits", offset);
  }
  std::string text = text_buffer;
  std::string off;
  for (size_t s = 0; s < thresholds.size(); ++s) {
    if (thresholds[s] <= 1.0f) continue;
    absl::StrAppend(&off, off.empty() ? "" : ",", s < taps.size() ? taps[s] : static_cast<int>(s));
  }
  if (!off.empty()) absl::StrAppend(&text, ", taps ", off, " off");
  return text;
}

void FillPolicy(const std::vector<float>& base, const std::vector<bool>& forced_off,
                int taps_off, double offset, ThresholdPolicy* out) {
  out->taps_off = taps_off;
  out->offset = offset;
  out->thresholds.resize(base.size());
  for (size_t s = 0; s < base.size(); ++s) {
    const bool off = static_cast<int>(s) < taps_off || forced_off[s];
    out->thresholds[s] = off ? kThresholdOff : OffsetThreshold(base[s], offset);
  }
}

ThresholdPolicy MakePolicy(const std::vector<float>& base, const std::vector<bool>& forced_off,
                           int taps_off, double offset) {
  ThresholdPolicy policy;
  FillPolicy(base, forced_off, taps_off, offset, &policy);
  return policy;
}

PolicyEvaluation Evaluate(const RecalibrationWindow& window, const ThresholdPolicy& policy,
                          const PolicyCosts& costs) {
  PolicyEvaluation out;
  out.samples = window.size();
  if (!policy.any_on()) return out;
  double saving = 0;
  for (int64_t i = 0; i < window.size(); ++i) {
    double spent = 0;
    bool hit = false;
    for (int s = 0; s < window.slots(); ++s) {
      if (policy.thresholds[s] > 1.0f) continue;
      spent += costs.lookup[s];
      if (!(window.score(i, s) >= policy.thresholds[s])) continue;  // As served.
      ++out.hits;
      out.disagreements += window.label(i, s) != window.base_label(i);
      saving += costs.exit_saving[s] - spent;
      hit = true;
      break;
    }
    if (!hit) saving -= spent + costs.miss_overhead;
  }
  if (out.samples > 0) out.saving = saving / out.samples;
  return out;
}

const std::vector<double>& RecalibrationOffsets() {
  static const std::vector<double> offsets = {8,   6, 4,    3,  2,    1.5, 1,
                                              0.5, 0, -0.5, -1, -1.5, -2};
  return offsets;
}

Recalibration Recalibrate(const RecalibrationWindow& window, const std::vector<float>& base,
                          const std::vector<bool>& forced_off, const PolicyCosts& costs,
                          double epsilon, double confidence) {
  Recalibration best;
  ThresholdPolicy scratch;
  Recalibrate(window, base, forced_off, costs, epsilon, confidence, &best, &scratch);
  return best;
}

void Recalibrate(const RecalibrationWindow& window, const std::vector<float>& base,
                 const std::vector<bool>& forced_off, const PolicyCosts& costs, double epsilon,
                 double confidence, Recalibration* out, ThresholdPolicy* scratch) {
  Recalibration& best = *out;
  best.certified = best.any_passed = false;
  best.upper_bound = 1;
  best.policies_tested = 0;
  best.evaluation = {};
  const int slots = window.slots();
  FillPolicy(base, forced_off, slots, 0, &best.policy);
  best.evaluation.samples = window.size();
  if (slots == 0 || window.size() == 0) return;
  // Each chain spends (1 - confidence) / slots; a rejection at that level
  // is a Clopper-Pearson upper bound below epsilon at the matching
  // confidence.
  const double chain_confidence = 1 - (1 - confidence) / slots;
  for (int taps_off = 0; taps_off < slots; ++taps_off) {
    for (double offset : RecalibrationOffsets()) {
      ThresholdPolicy& policy = *scratch;
      FillPolicy(base, forced_off, taps_off, offset, &policy);
      ++best.policies_tested;
      const PolicyEvaluation evaluation = Evaluate(window, policy, costs);
      const double upper =
          ClopperPearsonUpper(evaluation.disagreements, evaluation.samples, chain_confidence);
      if (upper >= epsilon) break;  // The chain stops at its first non-rejection.
      best.any_passed = true;
      // Every tap off (the whole model) saves 0 and is always safe.
      if (evaluation.saving <= 0) continue;
      if (!best.certified || evaluation.saving > best.evaluation.saving) {
        best.certified = true;
        best.policy.thresholds.assign(policy.thresholds.begin(), policy.thresholds.end());
        best.policy.taps_off = policy.taps_off;
        best.policy.offset = policy.offset;
        best.evaluation = evaluation;
        best.upper_bound = upper;
      }
    }
  }
}

}  // namespace gati::runtime
