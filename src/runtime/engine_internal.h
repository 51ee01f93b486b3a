// How an Engine is assembled from parts. The LibTorch backend
// (torch_backend.cc) loads a bundle into EngineParts; tests build parts from
// fakes, so the engine's scheduling, feedback, monitor and hot swap are
// exercised without LibTorch (and under ThreadSanitizer).
#ifndef GATI_RUNTIME_ENGINE_INTERNAL_H_
#define GATI_RUNTIME_ENGINE_INTERNAL_H_

#include <memory>
#include <vector>

#include "gati/cache.h"
#include "gati/engine.h"
#include "gati/model.h"
#include "runtime/env.h"
#include "runtime/learner.h"
#include "runtime/segment_runner.h"
#include "runtime/training_rows.h"

namespace gati::runtime {

struct EngineParts {
  // The base model's metadata: input shape, normalization, class names.
  ModelMetadata metadata;
  // Planned taps (strictly increasing) and their caches (enabled, at the
  // plan's thresholds), one per tap.
  std::vector<int> taps;
  std::vector<std::shared_ptr<const LearnedCache>> caches;
  // The base model cut at `taps` (taps.size() + 1 segments).
  std::unique_ptr<SegmentRunner> runner;
  // Required when the learner is enabled.
  std::unique_ptr<CacheTrainer> trainer;
  // Build-time replay rows per tap (may be empty).
  std::vector<TrainingRows> replay;
  // Model inputs (row-major, input shape) that mode kAuto times the modes
  // on: the bundle's replay sample. May be empty.
  std::vector<float> probe_inputs;
  int64_t probe_count = 0;
  // The batch size the plan was made for (its predictions are per row at
  // that size); kAuto times batches of this size (16 when it is 1).
  int plan_batch = 1;
  // Time for the engine and its learner (request timings, mode kAuto's
  // measurements, the learner's trigger and sleeps); tests inject fake time.
  // Not owned; must outlive the engine.
  Env* env = Env::Default();
  // The plan's predicted mean in the mode it was priced for, in the other
  // mode (0 = not priced), and the base model's.
  double predicted_mean_ms = 0;
  LookupMode predicted_mode = LookupMode::kSequential;
  double predicted_other_mode_ms = 0;
  double predicted_base_ms = 0;
  // The bundle's per-cache epsilon (used when EngineOptions::epsilon is 0)
  // and the confidence its thresholds were certified at (the learner's gate
  // uses the same).
  double bundle_epsilon = 0.01;
  double bundle_confidence = 0.95;
  // Per planned tap, the false-hit bound the plan holds it to (upper
  // confidence bound of its false-hit rate among the planning split's
  // samples it answers); empty = bundle_epsilon everywhere.
  std::vector<double> tap_epsilon;
  // The plan's bound on the disagreement over all answers (the live
  // bound's target when EngineOptions::answer_epsilon is 0).
  double answer_epsilon = 0.01;
  // Per planned tap, what an answer there saves against the base model
  // (ms; recalibration prefers the policy that saves most). Empty = the
  // share of taps after it, a stand-in proportional to depth.
  std::vector<double> exit_saving_ms;
  // Per planned tap, a lookup's cost (ms; empty = 0), and the cut model's
  // miss path beyond the whole model (ms).
  std::vector<double> lookup_ms;
  double miss_overhead_ms = 0;
  // The plan's predicted share of answers per planned tap, then the base
  // model, and the planning samples it comes from (empty: no drift check).
  std::vector<double> exit_share;
  int64_t exit_share_samples = 0;
};

// InvalidArgument naming the first bad field of `options`.
absl::Status ValidateEngineOptions(const EngineOptions& options);

// Checks that the parts fit together and starts the engine.
absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(EngineParts parts,
                                                     const EngineOptions& options);

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_ENGINE_INTERNAL_H_
