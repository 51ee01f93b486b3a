// Planning on measured segment latencies: the planner (src/plan, no
// LibTorch) searches; the build times the fused segments a plan implies on
// the base model and searches again.
#ifndef GATI_BUILD_MEASURED_PLAN_H_
#define GATI_BUILD_MEASURED_PLAN_H_

#include "gati/model.h"
#include "gati/plan.h"
#include "gati/status.h"

namespace gati {

// Plans with measured segment latencies: searches with the cost model,
// measures the fused segments the plan implies on `model` (batch 1,
// `repetitions` interleaved runs) into problem->measured_segment_ms, and
// searches again, until the plan's segments are all measured (at most
// `rounds` searches). The returned plan's predictions use measured segment
// latencies; stored->model_only_mean_ms keeps the first search's cost-model
// estimate for the same plan, to show the model's error.
absl::StatusOr<Plan> PlanWithMeasuredSegments(const StagedModel& model,
                                              PlanningProblem* problem,
                                              const PlanOptions& options,
                                              int repetitions, int rounds,
                                              double* model_only_mean_ms);

}  // namespace gati

#endif  // GATI_BUILD_MEASURED_PLAN_H_
