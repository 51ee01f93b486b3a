// The online learner: fine-tunes the planned caches on recent feedback mixed
// with the bundle's build-time replay sample, recalibrates each threshold on
// a held-out slice of the feedback, and hands over only the caches that pass
// the validation gate (ValidateUpdate). Runs as one background thread at low
// priority whose CPU share is bounded by sleeping between slices of work.
#ifndef GATI_RUNTIME_LEARNER_H_
#define GATI_RUNTIME_LEARNER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cache/calibration.h"
#include "gati/cache.h"
#include "gati/engine.h"
#include "runtime/env.h"
#include "runtime/feedback.h"
#include "runtime/mutex.h"
#include "runtime/training_rows.h"

namespace gati::runtime {

// One cache version: the cache of every planned tap (slot), as requests see
// them. Immutable once published.
struct CacheSet {
  int64_t version = 0;  // Of the caches (thresholds may change within one).
  std::vector<std::shared_ptr<const LearnedCache>> caches;
  // The engine's thresholds in force, per cache (> 1 = off; recalibration
  // changes them), published with the caches so that a request sees one
  // policy; empty outside the engine. every_off: no threshold is on.
  std::vector<float> thresholds;
  bool every_off = false;
};

// Trains a replacement for a cache; the LibTorch implementation is in
// torch_backend.cc, tests inject their own.
class CacheTrainer {
 public:
  virtual ~CacheTrainer() = default;
  // Fine-tunes `current`'s predictor on `predictor_rows` (distillation from
  // the rows' base logits) and trains a new selector on `selector_rows`
  // (does the new predictor agree with the base class?). The threshold is
  // left to the caller. Calls `yield` between slices of work.
  virtual absl::StatusOr<CacheWeights> Train(
      const CacheWeights& current, const TrainingRows& predictor_rows,
      const TrainingRows& selector_rows, const LearnerOptions& options,
      uint64_t seed, const std::function<void()>& yield) = 0;
};

struct GateDecision {
  bool accepted = false;
  std::string reason;             // Why rejected, or a summary when accepted.
  Calibration candidate;          // The candidate at its new threshold.
  double current_hit_rate = 0;    // The cache in force, on the same slice.
  std::unique_ptr<LearnedCache> cache;  // Set when accepted.
};

// The validation gate. Calibrates `candidate`'s threshold on `holdout` (the
// candidate thresholds are fixed beforehand from its selector scores on
// `reference`, rows it was not calibrated on) and accepts it only when a
// threshold keeps the Clopper-Pearson bound of the false-hit rate <=
// epsilon on `holdout` and, unless the current cache is switched off, its
// hit rate there is not lower than `current`'s at its own threshold.
GateDecision ValidateUpdate(const LearnedCache& current, bool current_disabled,
                            CacheWeights candidate, const TrainingRows& reference,
                            const TrainingRows& holdout, double epsilon,
                            double confidence);

class OnlineLearner {
 public:
  // What the learner needs from the engine.
  struct Hooks {
    std::function<std::shared_ptr<const CacheSet>()> current;
    std::function<bool(int slot)> disabled;
    // Publishes new caches (slot, cache) as one new version.
    std::function<void(std::vector<std::pair<int, std::shared_ptr<const LearnedCache>>>)>
        install;
    // Requests whose feedback was recorded so far (trigger).
    std::function<int64_t()> feedback_requests;
  };

  // `replay` holds one set of rows per slot (may be empty); `epsilons` the
  // false-hit bound per slot the gate holds updates to.
  // `env` (not owned, outlives the learner) gives the time trigger's clock
  // and the CPU-share sleeps.
  OnlineLearner(const FeedbackStore* store, std::unique_ptr<CacheTrainer> trainer,
                std::vector<TrainingRows> replay, const LearnerOptions& options,
                std::vector<double> epsilons, double confidence, Hooks hooks,
                Env* env = Env::Default());
  // Stops the thread (a round in progress finishes first).
  ~OnlineLearner();

  // Starts the background thread: a round after options.trigger_rows new
  // feedback requests or options.trigger_seconds, whichever comes first.
  void Start();

  // Runs one round on the caller's thread: every slot with enough rows is
  // retrained, gated and (if accepted) installed in one version. Returns the
  // number installed. `throttled` applies the CPU-share bound. Rounds never
  // overlap. Thread-safe.
  absl::StatusOr<int> RunRound(bool throttled);

  bool busy() const { return busy_.load(std::memory_order_relaxed); }
  int64_t rounds() const { return rounds_.load(); }
  int64_t accepted(int slot) const { return accepted_[slot]->load(); }
  int64_t rejected(int slot) const { return rejected_[slot]->load(); }
  double busy_seconds() const;

 private:
  void Loop();
  const FeedbackStore* store_;
  std::unique_ptr<CacheTrainer> trainer_;
  std::vector<TrainingRows> replay_;
  LearnerOptions options_;
  std::vector<double> epsilons_;
  double confidence_;
  Hooks hooks_;
  Env* const env_;
  Mutex round_mutex_;  // One round at a time.
  std::atomic<bool> busy_{false};
  std::atomic<int64_t> rounds_{0};
  std::atomic<int64_t> busy_micros_{0};
  std::vector<std::unique_ptr<std::atomic<int64_t>>> accepted_, rejected_;
  Mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ ABSL_GUARDED_BY(stop_mutex_) = false;
  std::atomic<bool> stop_requested_{false};
  std::thread thread_;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_LEARNER_H_
