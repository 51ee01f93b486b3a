// Threshold recalibration from feedback (Learn-then-Test).
//
// Every feedback-sampled request is kept, as every planned tap's cache saw
// it (selector score and predictor class) together with the base model's
// class, in a bounded window of the most recent samples. Since the window
// holds what each tap *would* have answered, any threshold policy can be
// replayed on it, whatever policy served the requests.
//
// A policy is a threshold per tap. The candidates are fixed before the
// window is seen: the plan's thresholds shifted by a common offset in logit
// space (OffsetThreshold), with the first k taps switched off, for
// k = 0..slots-1 ("chains") and offsets from strict to loose. Along each
// chain the null "the disagreement over all answers is >= epsilon" is tested
// in order (fixed-sequence testing: one-sided Clopper-Pearson at level
// delta / chains, Bonferroni over the chains) and the walk stops at the
// first policy it cannot reject. Every rejected policy is then certified at
// once: with probability >= confidence over the window's sample, each has a
// disagreement below epsilon on the stream the window was drawn from. Of
// those, the one that saves most (replayed on the window) is chosen.
//
// Not thread-safe; the caller serializes.
#ifndef GATI_RUNTIME_RECALIBRATION_H_
#define GATI_RUNTIME_RECALIBRATION_H_

#include <cstdint>
#include <string>
#include <vector>

namespace gati::runtime {

class RecalibrationWindow {
 public:
  // REQUIRES: slots >= 0, capacity >= 1.
  RecalibrationWindow(int slots, int64_t capacity);

  // One sample: `scores` and `labels` hold one value per slot.
  void Add(const float* scores, const int* labels, int base_label);
  void Clear();

  int slots() const { return slots_; }
  int64_t size() const { return count_; }
  int64_t capacity() const { return capacity_; }
  int64_t total_added() const { return added_; }
  // Sample i (any order: policies are replayed over all of them).
  float score(int64_t i, int slot) const { return scores_[i * slots_ + slot]; }
  int label(int64_t i, int slot) const { return labels_[i * slots_ + slot]; }
  int base_label(int64_t i) const { return base_labels_[i]; }

 private:
  int slots_;
  int64_t capacity_;
  std::vector<float> scores_;
  std::vector<int> labels_;
  std::vector<int> base_labels_;
  int64_t next_ = 0;
  int64_t count_ = 0;
  int64_t added_ = 0;
};

// A threshold above 1 switches a tap off (a selector score never reaches it).
inline constexpr float kThresholdOff = 2.0f;

// The plan's threshold `base` shifted by `offset` in logit space:
// sigmoid(logit(base) + offset); kThresholdOff stays off.
float OffsetThreshold(float base, double offset);

struct ThresholdPolicy {
  std::vector<float> thresholds;  // Per slot; > 1 = off.
  int taps_off = 0;               // The first taps_off slots are off.
  double offset = 0;              // Logit shift over the plan's thresholds.
  bool any_on() const;
  // "plan thresholds +1.5 logits, taps 0-1 off", for logs.
  std::string Describe(const std::vector<int>& taps) const;
};

// The policy of a chain: slots below `taps_off` and those `forced_off`
// are off, the others at OffsetThreshold(base[s], offset). FillPolicy
// reuses `out`'s storage.
ThresholdPolicy MakePolicy(const std::vector<float>& base, const std::vector<bool>& forced_off,
                           int taps_off, double offset);
void FillPolicy(const std::vector<float>& base, const std::vector<bool>& forced_off,
                int taps_off, double offset, ThresholdPolicy* out);

// What a policy's answers cost against the base model run whole, per
// request (any unit; the engine uses ms).
struct PolicyCosts {
  std::vector<double> exit_saving;  // Per slot: an answer there saves this.
  std::vector<double> lookup;       // Per slot: a lookup there costs this.
  double miss_overhead = 0;         // The cut model's miss path beyond the whole model.
};

struct PolicyEvaluation {
  int64_t samples = 0;
  int64_t hits = 0;
  int64_t disagreements = 0;  // Hits whose class is not the base model's.
  // Mean saving per request against the base model: the answering slot's
  // saving less the lookups on the way, or for a miss minus the lookups and
  // the miss overhead. 0 for a policy with every tap off (the whole model).
  double saving = 0;
};

// Replays `policy` on every sample: the first slot whose score reaches its
// threshold answers with its class.
PolicyEvaluation Evaluate(const RecalibrationWindow& window, const ThresholdPolicy& policy,
                          const PolicyCosts& costs);

// The logit offsets of each chain, strictest first.
const std::vector<double>& RecalibrationOffsets();

struct Recalibration {
  bool certified = false;   // A policy that saves something was certified.
  // Some policy was certified (when none saves anything, every tap off is
  // then the window's informed choice, not a lack of evidence).
  bool any_passed = false;
  ThresholdPolicy policy;   // The chosen one; every tap off when !certified.
  PolicyEvaluation evaluation;
  double upper_bound = 1;   // Its Clopper-Pearson upper bound at the chain level.
  int policies_tested = 0;
};

// Learn-then-Test over the chains above; of the certified policies, the
// one that saves most, provided it saves more than every tap off (else
// every tap off, still `certified`). REQUIRES: base, forced_off and the
// costs' vectors have window.slots() values; 0 < epsilon < 1,
// 0 < confidence < 1.
Recalibration Recalibrate(const RecalibrationWindow& window, const std::vector<float>& base,
                          const std::vector<bool>& forced_off, const PolicyCosts& costs,
                          double epsilon, double confidence);
// The same into `out`, reusing its storage and `scratch`'s (no allocation
// once they have grown).
void Recalibrate(const RecalibrationWindow& window, const std::vector<float>& base,
                 const std::vector<bool>& forced_off, const PolicyCosts& costs, double epsilon,
                 double confidence, Recalibration* out, ThresholdPolicy* scratch);

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_RECALIBRATION_H_
