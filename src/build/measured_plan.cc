#include "build/measured_plan.h"

#include "gati/profile.h"

namespace gati {
namespace {

// The taps `choices` cut at, and the stage ranges of the fused segments.
std::pair<std::vector<int>, std::vector<std::pair<int, int>>> CutsOf(
    const PlanningProblem& problem, const std::vector<PlanChoice>& choices, int stages) {
  std::vector<int> cuts;
  std::vector<std::pair<int, int>> ranges;
  int first = 0;
  for (const PlanChoice& choice : choices) {
    const int tap = problem.caches[choice.cache].tap;
    cuts.push_back(tap);
    ranges.push_back({first, tap + 1});
    first = tap + 1;
  }
  ranges.push_back({first, stages});
  return {cuts, ranges};
}

}  // namespace

absl::StatusOr<Plan> PlanWithMeasuredSegments(const StagedModel& model,
                                              PlanningProblem* problem,
                                              const PlanOptions& options,
                                              int repetitions, int rounds,
                                              double* model_only_mean_ms) {
  const int stages = static_cast<int>(problem->stage_ms.size());
  Plan plan;
  std::vector<PlanChoice> with_taps;  // The last plan found that had taps.
  for (int round = 0; round < std::max(1, rounds); ++round) {
    plan = SearchPlan(*problem, options);
    if (!plan.choices.empty()) with_taps = plan.choices;
    const auto [cuts, ranges] = CutsOf(*problem, plan.choices, stages);
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
  // When measurements took every plan with taps away (the tail budget most
  // often: the all-miss path is a sum of separately timed segments against
  // the whole model's time, a few percent apart), the last plan with taps is
  // timed again, twice as long, and the search runs on both timings
  // weighted by repetitions; twice at most. Noise alone then does not
  // decide between a plan and none.
  for (int retry = 0; retry < 2 && plan.choices.empty() && !with_taps.empty(); ++retry) {
    const auto [cuts, ranges] = CutsOf(*problem, with_taps, stages);
    ProfileOptions profile;
    profile.warmup = 5;
    profile.repetitions = 2 * repetitions;
    double whole_ms = 0;
    GATI_ASSIGN_OR_RETURN(std::vector<double> segments,
                          ProfileSegments(model, cuts, profile, &whole_ms));
    // Weighted by repetitions: the new timing ran twice as many.
    for (size_t i = 0; i < ranges.size(); ++i) {
      double& measured = problem->measured_segment_ms[ranges[i]];
      measured = (measured + 2 * segments[i]) / 3;
    }
    double& whole = problem->measured_segment_ms[{0, stages}];
    whole = (whole + 2 * whole_ms) / 3;
    const int evaluations = plan.evaluations;
    plan = SearchPlan(*problem, options);
    plan.base_ms = whole;
    plan.evaluations += evaluations;
    // The search may pick segments no timing covered yet: time them, and
    // keep the plan only if it still holds on what was measured.
    const auto [new_cuts, new_ranges] = CutsOf(*problem, plan.choices, stages);
    bool measured_all = true;
    for (const auto& range : new_ranges) {
      measured_all &= problem->measured_segment_ms.count(range) > 0;
    }
    if (!plan.choices.empty() && !measured_all) {
      profile.repetitions = repetitions;
      double ignored = 0;
      GATI_ASSIGN_OR_RETURN(std::vector<double> timed,
                            ProfileSegments(model, new_cuts, profile, &ignored));
      for (size_t i = 0; i < new_ranges.size(); ++i) {
        problem->measured_segment_ms.try_emplace(new_ranges[i], timed[i]);
      }
      plan.evaluation = EvaluatePlan(*problem, plan.choices, options);
      if (!plan.evaluation.feasible) plan = SearchPlan(*problem, options);
      plan.base_ms = whole;
    }
  }
  // The oracle's prefixes come from the cost model; put them on the same
  // footing as the measured base model.
  plan.oracle_mean_ms *= plan.base_ms / problem->whole_ms;
  return plan;
}

}  // namespace gati
