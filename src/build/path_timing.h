// The all-miss path of a plan timed as the engine runs it in sequential
// mode, so that the planner's cost model can be calibrated to what a request
// really pays between segments (the lookups' weights evict the model's from
// the CPU caches; boundaries cost more than when segments run back to back).
#ifndef GATI_BUILD_PATH_TIMING_H_
#define GATI_BUILD_PATH_TIMING_H_

#include <cstdint>
#include <vector>

#include "gati/cache.h"
#include "gati/model.h"
#include "gati/plan.h"
#include "gati/status.h"

namespace gati {

struct MissPathTiming {
  double miss_ms = 0;      // Median: every segment of the cut model, every lookup.
  double segments_ms = 0;  // Median: every segment of the cut model, no lookup.
  double whole_ms = 0;     // Median: the whole model on the same inputs.
  int repetitions = 0;
};

// Cuts `model` at `taps` (strictly increasing) and times, per repetition,
// one input of `inputs` (`count` rows in the model's input shape, cycled)
// three ways: through every segment with caches[k] looked up after segment
// k, whatever it answers; through the segments alone; through the whole
// model; in an order that rotates per repetition, after `warmup` untimed
// repetitions. With `batch` > 1 each repetition runs a batch of that many
// consecutive inputs (cycled) and looks them up with LookupBatch, as the
// engine runs a batch in which no row hits; times are per batch. Runs on the
// caller's thread with the intra-op thread count set by SetIntraOpThreads.
// InvalidArgument for sizes that do not fit; Internal when the model fails.
absl::StatusOr<MissPathTiming> TimeMissPath(const StagedModel& model,
                                            const std::vector<int>& taps,
                                            const std::vector<const LearnedCache*>& caches,
                                            const float* inputs, int64_t count,
                                            int repetitions, int warmup = 10,
                                            int64_t batch = 1);

// Times `plan`'s all-miss path (TimeMissPath; caches[k] serves the plan's
// k-th choice) and sets problem->lookup_overhead_ms to what the cut model
// takes beyond its fused-segment profile, per lookup, and
// problem->lookup_ms_per_mb to what the lookups add beyond their isolated
// times, per MB of their caches (below 10 KB of caches that extra is
// charged per lookup instead: a per-MB rate would rest on noise). Times
// are put on the scale of plan.base_ms by the run's own whole-model time, so
// that with `batch` > 1 (the miss path timed on batches of that size) the
// costs come out per row, as a problem made for that batch size has them.
// REQUIRES: plan has choices, evaluated on *problem.
absl::Status CalibrateLookupCosts(const StagedModel& model, const Plan& plan,
                                  const std::vector<const LearnedCache*>& caches,
                                  const float* inputs, int64_t count, int repetitions,
                                  PlanningProblem* problem, int64_t batch = 1);

}  // namespace gati

#endif  // GATI_BUILD_PATH_TIMING_H_
