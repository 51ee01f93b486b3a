// Planning on measured segment latencies: the planner (src/plan, no
// LibTorch) searches; the build times the fused segments a plan implies on
// the base model and searches again.
#ifndef GATI_BUILD_MEASURED_PLAN_H_
#define GATI_BUILD_MEASURED_PLAN_H_

#include <vector>

#include "gati/cache.h"
#include "gati/model.h"
#include "gati/plan.h"
#include "gati/status.h"

namespace gati {

// Plans with measured segment latencies: searches with the cost model,
// measures the fused segments the plan implies on `model` (at `batch`, per
// row; `repetitions` interleaved runs) into problem->measured_segment_ms, and
// searches again, until the plan's segments are all measured (at most
// `rounds` searches). The returned plan's predictions use measured segment
// latencies; stored->model_only_mean_ms keeps the first search's cost-model
// estimate for the same plan, to show the model's error.
absl::StatusOr<Plan> PlanWithMeasuredSegments(const StagedModel& model,
                                              PlanningProblem* problem,
                                              const PlanOptions& options,
                                              int repetitions, int rounds,
                                              double* model_only_mean_ms, int batch = 1);

// A plan for batches of `batch` rows (gati plan --batch), from `problem` as
// the bundle's manifest gives it (profiled at batch 1): stages, the whole
// model, the cut model and every candidate's lookup are profiled again on
// `model` at `batch` (`caches[i]` serves problem->caches[i]), so that every
// cost is per row of such a batch, and the plan's segments are timed at
// `batch` and `batch / 4` (PlanWithMeasuredSegments: a fixed part the
// batch's rows share, a part per row that passes). The in-situ lookup costs
// start as the batch-1 ones spread over the batch and, when `replay` has
// inputs, are calibrated on the plan's all-miss path timed at `batch`
// (CalibrateLookupCosts); in a batch they are shared like a segment's fixed
// part. Lookups are priced sequential (a batch looks up between its
// segments); parallel mode's calibration is dropped. The plan's quantiles,
// and so the tail budget, are those of a batch's time per row over batches
// drawn from the planning split (see PlanningProblem::batch). A lookup's
// own LookupBatch time is taken as per row. InvalidArgument for a batch
// outside [2, kMaxPlanBatch] or caches that do not match the problem.
absl::StatusOr<Plan> PlanForBatch(const StagedModel& model,
                                  const std::vector<const LearnedCache*>& caches,
                                  const float* replay, int64_t replay_count,
                                  PlanningProblem* problem, PlanOptions options, int batch,
                                  int repetitions, double* model_only_mean_ms);

}  // namespace gati

#endif  // GATI_BUILD_MEASURED_PLAN_H_
