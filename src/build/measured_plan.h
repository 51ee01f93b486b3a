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
// cost is per row of such a batch; the in-situ lookup costs start as the
// batch-1 ones spread over the batch and, when `replay` has inputs, are
// calibrated on the plan's all-miss path timed at `batch`
// (CalibrateLookupCosts); lookups are priced sequential (a batch looks up
// between its segments), parallel mode's calibration is dropped. The
// tail budget then bounds a batch in which no row hits against the whole
// model on the same batch. A row is priced at the per-row cost of every
// segment it passes at `batch`, although rows that hit leave the batch and
// later segments run on fewer (whose per-row cost is higher): the mean is
// optimistic by that much. InvalidArgument for a batch outside
// [2, kMaxPlanBatch] or caches that do not match the problem.
absl::StatusOr<Plan> PlanForBatch(const StagedModel& model,
                                  const std::vector<const LearnedCache*>& caches,
                                  const float* replay, int64_t replay_count,
                                  PlanningProblem* problem, PlanOptions options, int batch,
                                  int repetitions, double* model_only_mean_ms);

}  // namespace gati

#endif  // GATI_BUILD_MEASURED_PLAN_H_
