#include "build/measured_plan.h"

#include "gati/profile.h"

namespace gati {

absl::StatusOr<Plan> PlanWithMeasuredSegments(const StagedModel& model,
                                              PlanningProblem* problem,
                                              const PlanOptions& options,
                                              int repetitions, int rounds,
                                              double* model_only_mean_ms) {
  const int stages = static_cast<int>(problem->stage_ms.size());
  Plan plan;
  for (int round = 0; round < std::max(1, rounds); ++round) {
    plan = SearchPlan(*problem, options);
    std::vector<int> cuts;
    std::vector<std::pair<int, int>> ranges;
    int first = 0;
    for (const PlanChoice& choice : plan.choices) {
      const int tap = problem->caches[choice.cache].tap;
      cuts.push_back(tap);
      ranges.push_back({first, tap + 1});
      first = tap + 1;
    }
    ranges.push_back({first, stages});
    bool all_measured = true;
    for (const auto& range : ranges) {
      all_measured &= problem->measured_segment_ms.count(range) > 0;
    }
    if (all_measured) break;
    if (round == 0 && model_only_mean_ms != nullptr) {
      *model_only_mean_ms = plan.evaluation.mean_ms;
    }
    ProfileOptions profile;
    profile.warmup = 5;
    profile.repetitions = repetitions;
    // The whole model is timed in the same repetitions, so that the speedup
    // compares runs under the same machine noise.
    double whole_ms = 0;
    GATI_ASSIGN_OR_RETURN(std::vector<double> segments,
                          ProfileSegments(model, cuts, profile, &whole_ms));
    for (size_t i = 0; i < ranges.size(); ++i) {
      problem->measured_segment_ms[ranges[i]] = segments[i];
    }
    if (!cuts.empty()) problem->measured_segment_ms[{0, stages}] = whole_ms;
    // The last round's plan is re-evaluated below with what was measured.
    plan.evaluation = EvaluatePlan(*problem, plan.choices, options);
  }
  if (problem->measured_segment_ms.count({0, stages}) == 0) {
    ProfileOptions profile;
    profile.warmup = 5;
    profile.repetitions = repetitions;
    GATI_ASSIGN_OR_RETURN(std::vector<double> whole, ProfileSegments(model, {}, profile));
    problem->measured_segment_ms[{0, stages}] = whole[0];
  }
  plan.base_ms = problem->measured_segment_ms[{0, stages}];
  plan.evaluation = EvaluatePlan(*problem, plan.choices, options);
  if (!plan.evaluation.feasible) {
    // The last measurements (the base model's among them) moved a plan found
    // on earlier ones past a constraint, the tail budget most often: search
    // again on the final figures, which keeps every constraint.
    const int evaluations = plan.evaluations;
    plan = SearchPlan(*problem, options);
    plan.base_ms = problem->measured_segment_ms[{0, stages}];
    plan.evaluations += evaluations;
  }
  // The oracle's prefixes come from the cost model; put them on the same
  // footing as the measured base model.
  plan.oracle_mean_ms *= plan.base_ms / problem->whole_ms;
  return plan;
}

}  // namespace gati
