#include "build/measured_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "build/path_timing.h"
#include "gati/bundle.h"
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
                                              double* model_only_mean_ms, int batch) {
  const int stages = static_cast<int>(problem->stage_ms.size());
  // Segment (and whole-model) times per row at `batch`, as {per row, shared}
  // per segment. For batches, the segments are timed at a quarter of the
  // batch too: what a segment costs on b rows is fit as fixed + b x per-row;
  // shared is the fixed part over the batch (problem->segment_shared_ms).
  // The whole model stays whole: its full time per row, nothing shared.
  problem->batch = batch;
  using Timed = std::vector<std::pair<double, double>>;
  auto time_segments = [&model, batch](const std::vector<int>& cuts, int reps,
                                       double* whole_ms) -> absl::StatusOr<Timed> {
    ProfileOptions profile;
    profile.warmup = 5;
    profile.repetitions = reps;
    profile.batch = batch;
    GATI_ASSIGN_OR_RETURN(std::vector<double> ms, ProfileSegments(model, cuts, profile, whole_ms));
    if (whole_ms != nullptr) *whole_ms /= batch;
    Timed timed;
    if (batch == 1 || cuts.empty()) {
      for (double m : ms) timed.push_back({m / batch, 0.0});
      return timed;
    }
    const int small = std::max(1, batch / 4);
    profile.batch = small;
    GATI_ASSIGN_OR_RETURN(std::vector<double> small_ms, ProfileSegments(model, cuts, profile));
    for (size_t i = 0; i < ms.size(); ++i) {
      const double per_row =
          std::clamp((ms[i] - small_ms[i]) / (batch - small), 0.0, ms[i] / batch);
      timed.push_back({per_row, std::max(0.0, ms[i] / batch - per_row)});
    }
    return timed;
  };
  // Stores a timing of `range`, or, with `weight` w > 0, averages it into
  // the one stored, with weight w for the new one (both parts alike).
  auto store = [problem](const std::pair<int, int>& range, const std::pair<double, double>& t,
                         double weight) {
    double& per_row = problem->measured_segment_ms[range];
    double& shared = problem->segment_shared_ms[range];
    if (weight > 0) {
      per_row = (per_row + weight * t.first) / (1 + weight);
      shared = (shared + weight * t.second) / (1 + weight);
    } else {
      per_row = t.first;
      shared = t.second;
    }
    if (shared == 0) problem->segment_shared_ms.erase(range);
  };
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
    // The whole model is timed in the same repetitions, so that the speedup
    // compares runs under the same machine noise.
    double whole_ms = 0;
    GATI_ASSIGN_OR_RETURN(Timed segments, time_segments(cuts, repetitions, &whole_ms));
    for (size_t i = 0; i < ranges.size(); ++i) store(ranges[i], segments[i], 0);
    if (!cuts.empty()) problem->measured_segment_ms[{0, stages}] = whole_ms;
    // The last round's plan is re-evaluated below with what was measured.
    plan.evaluation = EvaluatePlan(*problem, plan.choices, options);
  }
  if (problem->measured_segment_ms.count({0, stages}) == 0) {
    GATI_ASSIGN_OR_RETURN(Timed whole, time_segments({}, repetitions, nullptr));
    problem->measured_segment_ms[{0, stages}] = whole[0].first;
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
    double whole_ms = 0;
    GATI_ASSIGN_OR_RETURN(Timed segments, time_segments(cuts, 2 * repetitions, &whole_ms));
    // Weighted by repetitions: the new timing ran twice as many.
    for (size_t i = 0; i < ranges.size(); ++i) store(ranges[i], segments[i], 2);
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
      double ignored = 0;
      GATI_ASSIGN_OR_RETURN(Timed timed, time_segments(new_cuts, repetitions, &ignored));
      // Only segments not measured before; the others keep their timing.
      for (size_t i = 0; i < new_ranges.size(); ++i) {
        if (problem->measured_segment_ms.count(new_ranges[i]) == 0) {
          store(new_ranges[i], timed[i], 0);
        }
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

absl::StatusOr<Plan> PlanForBatch(const StagedModel& model,
                                  const std::vector<const LearnedCache*>& caches,
                                  const float* replay, int64_t replay_count,
                                  PlanningProblem* problem, PlanOptions options, int batch,
                                  int repetitions, double* model_only_mean_ms) {
  if (batch < 2 || batch > kMaxPlanBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat("a plan for batches needs a batch size in [2, ", kMaxPlanBatch, "], got ",
                     batch));
  }
  if (caches.size() != problem->caches.size()) {
    return absl::InvalidArgumentError(absl::StrCat("planning for batches needs one cache per "
                                                   "candidate: ", caches.size(), " caches, ",
                                                   problem->caches.size(), " candidates"));
  }
  ProfileOptions profile;
  profile.warmup = 5;
  profile.repetitions = repetitions;
  profile.batch = batch;
  GATI_ASSIGN_OR_RETURN(ModelProfile profiled, ProfileModel(model, profile));
  if (profiled.stages.size() != problem->stage_ms.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model has ", profiled.stages.size(), " stages; the bundle's profile has ",
        problem->stage_ms.size()));
  }
  for (size_t i = 0; i < profiled.stages.size(); ++i) {
    problem->stage_ms[i] = profiled.stages[i].p50_ms / batch;
  }
  problem->whole_ms = profiled.whole_p50_ms / batch;
  const int taps = static_cast<int>(profiled.stages.size()) - 1;
  problem->cut_overhead_ms =
      taps > 0 ? std::max(0.0, (profiled.staged_p50_ms - profiled.whole_p50_ms) / taps) / batch
               : 0;
  for (size_t i = 0; i < caches.size(); ++i) {
    if (caches[i] == nullptr || caches[i]->weights().tap != problem->caches[i].tap) {
      return absl::InvalidArgumentError(
          absl::StrCat("no cache for candidate ", i, " (tap ", problem->caches[i].tap, ")"));
    }
    problem->caches[i].lookup_ms =
        MedianBatchLookupMicros(*caches[i], batch, std::max(20, repetitions), i) / 1000 / batch;
  }
  // Batch 1's timings no longer apply; what a boundary and a lookup add is
  // paid once per batch.
  problem->measured_segment_ms.clear();
  problem->segment_shared_ms.clear();
  problem->lookup_overhead_ms /= batch;
  problem->lookup_ms_per_mb /= batch;
  problem->parallel_request_ms = 0;
  options.mode = LookupMode::kSequential;
  GATI_ASSIGN_OR_RETURN(Plan plan, PlanWithMeasuredSegments(model, problem, options, repetitions,
                                                            3, model_only_mean_ms, batch));
  // The in-situ lookup costs on the plan's all-miss path at this batch size,
  // then a plan on them; twice, since the second plan may cut elsewhere.
  for (int round = 0; round < 2 && !plan.choices.empty() && replay_count > 0; ++round) {
    std::vector<const LearnedCache*> planned;
    for (const PlanChoice& choice : plan.choices) planned.push_back(caches[choice.cache]);
    GATI_RETURN_IF_ERROR(CalibrateLookupCosts(model, plan, planned, replay, replay_count,
                                              std::max(20, repetitions), problem, batch));
    GATI_ASSIGN_OR_RETURN(plan, PlanWithMeasuredSegments(model, problem, options, repetitions,
                                                         3, nullptr, batch));
  }
  return plan;
}

}  // namespace gati
