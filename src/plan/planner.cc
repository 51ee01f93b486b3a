// Plan cost model (exact replay of the planning split) and plan search.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cache/calibration.h"
#include "gati/plan.h"

namespace gati {
namespace {

double FusionFactor(const PlanningProblem& problem) {
  double sum = std::accumulate(problem.stage_ms.begin(), problem.stage_ms.end(), 0.0);
  return sum > 0 ? problem.whole_ms / sum : 1.0;
}

bool Better(const PlanEvaluation& a, const PlanEvaluation& b) {
  return a.feasible && (!b.feasible || a.mean_ms < b.mean_ms - 1e-12);
}

}  // namespace

absl::StatusOr<LookupMode> ParseLookupMode(const std::string& text) {
  if (text == "parallel") return LookupMode::kParallel;
  if (text == "sequential") return LookupMode::kSequential;
  if (text == "auto") return LookupMode::kAuto;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode must be auto, parallel or sequential, got '", text, "'"));
}



absl::StatusOr<int64_t> ParseByteSize(const std::string& text) {
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  auto bad = [&text]() {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' is not a size (examples: 4MB, 512KiB, 2000000)"));
  };
  size_t digits = 0;
  while (digits < s.size() &&
         (std::isdigit(static_cast<unsigned char>(s[digits])) || s[digits] == '.')) {
    ++digits;
  }
  double number = 0;
  if (digits == 0 || !absl::SimpleAtod(s.substr(0, digits), &number)) return bad();
  std::string unit = s.substr(digits);
  if (!unit.empty() && unit.back() == 'b') unit.pop_back();
  double scale = 1;
  if (unit == "") {
    scale = 1;
  } else if (unit == "k") {
    scale = 1e3;
  } else if (unit == "m") {
    scale = 1e6;
  } else if (unit == "g") {
    scale = 1e9;
  } else if (unit == "ki") {
    scale = 1024.0;
  } else if (unit == "mi") {
    scale = 1024.0 * 1024;
  } else if (unit == "gi") {
    scale = 1024.0 * 1024 * 1024;
  } else {
    return bad();
  }
  double bytes = number * scale;
  if (!std::isfinite(bytes) || bytes < 0 || bytes > 9e18) return bad();
  return static_cast<int64_t>(bytes);
}

absl::Status ValidateProblem(const PlanningProblem& problem) {
  const int stages = static_cast<int>(problem.stage_ms.size());
  if (stages < 2) return absl::InvalidArgumentError("planning needs >= 2 stages");
  for (double ms : problem.stage_ms) {
    if (!(ms >= 0) || !std::isfinite(ms)) {
      return absl::InvalidArgumentError("stage latencies must be finite and >= 0");
    }
  }
  if (!(problem.whole_ms > 0) || !(problem.cut_overhead_ms >= 0)) {
    return absl::InvalidArgumentError("whole-model latency must be > 0");
  }
  for (double overhead : {problem.lookup_overhead_ms, problem.lookup_ms_per_mb}) {
    if (!(overhead >= 0) || !std::isfinite(overhead)) {
      return absl::InvalidArgumentError("in-situ lookup costs must be finite and >= 0");
    }
  }
  if (!std::isfinite(problem.parallel_request_ms) ||
      problem.parallel_request_ms < -problem.whole_ms) {
    return absl::InvalidArgumentError(
        "parallel_request_ms must be finite and above minus the whole model's latency");
  }
  if (problem.batch < 1) return absl::InvalidArgumentError("the batch size must be >= 1");
  for (const auto& [range, ms] : problem.segment_shared_ms) {
    if (!(ms >= 0) || !std::isfinite(ms)) {
      return absl::InvalidArgumentError("shared segment costs must be finite and >= 0");
    }
  }
  const size_t n = problem.base_classes.size();
  if (n == 0) return absl::InvalidArgumentError("the planning split is empty");
  for (size_t c = 0; c < problem.caches.size(); ++c) {
    const CandidateCache& cache = problem.caches[c];
    const std::string where = absl::StrCat("cache ", cache.variant, " at tap ", cache.tap);
    if (cache.tap < 0 || cache.tap >= stages - 1) {
      return absl::InvalidArgumentError(where + ": not a tap");
    }
    if (cache.scores.size() != n || cache.classes.size() != n) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": has ", cache.scores.size(), " records, the split has ", n));
    }
    if (cache.thresholds.empty()) {
      return absl::InvalidArgumentError(where + ": has no candidate thresholds");
    }
    if (!(cache.lookup_ms >= 0) || cache.memory_bytes < 0) {
      return absl::InvalidArgumentError(where + ": bad lookup time or memory");
    }
  }
  return absl::OkStatus();
}

double PathLookupMs(const PlanningProblem& problem, const CandidateCache& cache) {
  return cache.lookup_ms + problem.lookup_overhead_ms +
         problem.lookup_ms_per_mb * static_cast<double>(cache.memory_bytes) / 1e6;
}

namespace {
// The part of PathLookupMs a parallel lookup can overlap with the next
// segment: the lookup itself; the boundary's cost is on the request's thread.
double OverlappableLookupMs(const PlanningProblem& problem, const CandidateCache& cache) {
  return PathLookupMs(problem, cache) - problem.lookup_overhead_ms;
}
}  // namespace

double SegmentMs(const PlanningProblem& problem, int first, int end) {
  if (!problem.measured_segment_ms.empty()) {
    auto found = problem.measured_segment_ms.find({first, end});
    if (found != problem.measured_segment_ms.end()) return found->second;
  }
  // The whole model was profiled as one fused segment: use it as measured.
  if (first == 0 && end == static_cast<int>(problem.stage_ms.size())) {
    return problem.whole_ms;
  }
  double sum = 0;
  for (int s = first; s < end; ++s) sum += problem.stage_ms[s];
  return sum * FusionFactor(problem) + (first > 0 ? problem.cut_overhead_ms : 0);
}

double SegmentSharedMs(const PlanningProblem& problem, int first, int end) {
  auto found = problem.segment_shared_ms.find({first, end});
  return found == problem.segment_shared_ms.end() ? 0 : found->second;
}

double SegmentRowMs(const PlanningProblem& problem, int first, int end) {
  return SegmentMs(problem, first, end) + SegmentSharedMs(problem, first, end);
}

PlanEvaluator::PlanEvaluator(const PlanningProblem& problem) : problem_(problem) {
  const size_t n = problem.base_classes.size();
  words_ = (n + 63) / 64;
  for (const CandidateCache& cache : problem.caches) {
    std::vector<std::vector<uint64_t>> hits;
    std::vector<uint64_t> wrong(words_, 0);
    for (size_t i = 0; i < n; ++i) {
      if (cache.classes[i] != problem.base_classes[i]) wrong[i / 64] |= 1ull << (i % 64);
    }
    for (float threshold : cache.thresholds) {
      std::vector<uint64_t> mask(words_, 0);
      for (size_t i = 0; i < n; ++i) {
        if (cache.scores[i] >= threshold) mask[i / 64] |= 1ull << (i % 64);
      }
      hits.push_back(std::move(mask));
    }
    hit_masks_.push_back(std::move(hits));
    wrong_masks_.push_back(std::move(wrong));
  }
}

PlanEvaluation PlanEvaluator::Evaluate(const std::vector<PlanChoice>& choices,
                                       const PlanOptions& options,
                                       const std::vector<double>* segment_ms) const {
  const PlanningProblem& problem = problem_;
  const int stages = static_cast<int>(problem.stage_ms.size());
  const int64_t n = static_cast<int64_t>(problem.base_classes.size());
  const size_t k = choices.size();
  // Segment j runs from the stage after choice j-1's tap to choice j's tap.
  std::vector<double> segment(k + 1), shared(k + 1);
  int first = 0;
  PlanEvaluation result;
  for (size_t j = 0; j < k; ++j) {
    const CandidateCache& cache = problem.caches[choices[j].cache];
    segment[j] = SegmentMs(problem, first, cache.tap + 1);
    shared[j] = SegmentSharedMs(problem, first, cache.tap + 1);
    first = cache.tap + 1;
    result.memory_bytes += cache.memory_bytes;
  }
  segment[k] = SegmentMs(problem, first, stages);
  shared[k] = SegmentSharedMs(problem, first, stages);
  if (segment_ms != nullptr && segment_ms->size() == k + 1) segment = *segment_ms;
  // Every sample that leaves at choice j has the same latency: the segments
  // up to it, the lookups it passed, its own lookup.
  std::vector<double> exit_ms(k + 1);
  std::vector<int64_t> exits(k + 1, 0);
  std::vector<uint64_t> remaining(words_, ~0ull);
  if (n % 64 != 0) remaining[words_ - 1] = (1ull << (n % 64)) - 1;
  double t = 0;
  for (size_t j = 0; j < k; ++j) {
    const CandidateCache& cache = problem.caches[choices[j].cache];
    t += segment[j];
    // In a batch, a lookup's in-situ costs beyond LookupBatch's own (its
    // boundary's handling, its weights read cold) are paid once per batch:
    // shared, as a segment's fixed part is.
    double lookup_ms = PathLookupMs(problem, cache);
    if (problem.batch > 1) {
      shared[j] += lookup_ms - cache.lookup_ms;
      lookup_ms = cache.lookup_ms;
    }
    exit_ms[j] = t + lookup_ms;
    const std::vector<uint64_t>& hit = hit_masks_[choices[j].cache][choices[j].threshold];
    const std::vector<uint64_t>& wrong = wrong_masks_[choices[j].cache];
    for (size_t w = 0; w < words_; ++w) {
      const uint64_t leaving = remaining[w] & hit[w];
      exits[j] += __builtin_popcountll(leaving);
      result.false_answers += __builtin_popcountll(leaving & wrong[w]);
      remaining[w] &= ~leaving;
    }
    // Batches look up between their segments: always sequential.
    t += options.mode != LookupMode::kParallel || problem.batch > 1
             ? lookup_ms
             : problem.lookup_overhead_ms +
                   std::max(0.0, OverlappableLookupMs(problem, cache) - segment[j + 1]);
  }
  exit_ms[k] = t + segment[k];
  if (options.mode == LookupMode::kParallel && problem.batch == 1) {
    for (double& ms : exit_ms) ms += problem.parallel_request_ms;
  }
  exits[k] = n;
  for (size_t j = 0; j < k; ++j) exits[k] -= exits[j];
  // A batch's fixed segment costs, shared by all its rows: segment j runs
  // unless every row of the batch left before it.
  double shared_ms = 0, all_shared_ms = 0;
  int64_t reaching = n;
  for (size_t j = 0; j <= k; ++j) {
    if (shared[j] > 0 && n > 0) {
      const double gone = 1 - static_cast<double>(reaching) / n;
      shared_ms += shared[j] * (1 - std::pow(gone, std::max(1, problem.batch)));
      all_shared_ms += shared[j];
    }
    if (j < k) reaching -= exits[j];
  }
  // A batch in which no row hits pays every fixed part in full.
  result.miss_ms = exit_ms[k] + all_shared_ms;
  for (double& ms : exit_ms) ms += shared_ms;
  result.exit_ms = exit_ms;

  double total = 0;
  std::vector<std::pair<double, int64_t>> groups;
  for (size_t j = 0; j <= k; ++j) {
    total += exit_ms[j] * exits[j];
    groups.emplace_back(exit_ms[j], exits[j]);
    result.exit_share.push_back(static_cast<double>(exits[j]) / n);
  }
  result.mean_ms = total / n;
  std::sort(groups.begin(), groups.end());
  auto quantile = [&](double q) {
    const int64_t rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(q * n)));
    int64_t seen = 0;
    for (const auto& [ms, count] : groups) {
      seen += count;
      if (seen >= rank) return ms;
    }
    return groups.back().first;
  };
  if (problem.batch > 1) {
    // A batch answers its last row when its last segment ends: every row's
    // latency is bounded by the batch's time, batch x the mean over its
    // rows of their path costs (with the shared parts). Over batches drawn
    // from the split that mean is normal by the central limit theorem; its
    // quantiles are the plan's (per row, like every figure of a batch
    // plan), and the tail budget bounds its p99 against the whole model's
    // time per row on the same batch. Left out of the variance: whether a
    // segment's fixed part is paid varies from batch to batch.
    double var = 0;
    for (size_t j = 0; j <= k; ++j) {
      var += exits[j] * (exit_ms[j] - result.mean_ms) * (exit_ms[j] - result.mean_ms);
    }
    const double sd = std::sqrt(var / n / problem.batch);
    result.p50_ms = result.mean_ms;
    result.p95_ms = result.mean_ms + 1.645 * sd;
    result.p99_ms = result.mean_ms + 2.326 * sd;
  } else {
    result.p50_ms = quantile(0.5);
    result.p95_ms = quantile(0.95);
    result.p99_ms = quantile(0.99);
  }
  result.disagreement = static_cast<double>(result.false_answers) / n;
  result.disagreement_bound = Bound(result.false_answers, options.confidence);
  // A plan whose caches never hit answers exactly like the base model.
  const bool answers_like_base = exits[k] == n;
  // A cache that answers nothing only adds a boundary and a lookup; measured
  // noise must not make it look useful.
  bool every_cache_answers = true;
  for (size_t j = 0; j < k; ++j) every_cache_answers &= exits[j] > 0;
  const double base_ms = SegmentRowMs(problem, 0, stages);
  const bool tail_holds =
      k == 0 || options.tail_budget <= 0 || result.p99_ms <= options.tail_budget * base_ms;
  result.feasible = every_cache_answers && tail_holds &&
                    result.memory_bytes <= options.memory_budget_bytes &&
                    (options.max_taps <= 0 || static_cast<int>(k) <= options.max_taps) &&
                    (answers_like_base || result.disagreement_bound <= options.epsilon);
  return result;
}

double PlanEvaluator::Bound(int64_t false_answers, double confidence) const {
  // The bound depends only on the count (the split size is fixed) and costs
  // a bisection over binomial tails, far more than a replay: memoize it.
  if (confidence != bound_confidence_) {
    bounds_.assign(problem_.base_classes.size() + 1, -1.0);
    bound_confidence_ = confidence;
  }
  double& bound = bounds_[false_answers];
  if (bound < 0) {
    bound = ClopperPearsonUpper(
        false_answers, static_cast<int64_t>(problem_.base_classes.size()), confidence);
  }
  return bound;
}

PlanEvaluation EvaluatePlan(const PlanningProblem& problem,
                            const std::vector<PlanChoice>& choices,
                            const PlanOptions& options) {
  return PlanEvaluator(problem).Evaluate(choices, options);
}

namespace {

std::vector<PlanChoice> Sorted(std::vector<PlanChoice> choices,
                               const PlanningProblem& problem) {
  std::sort(choices.begin(), choices.end(), [&](const PlanChoice& a, const PlanChoice& b) {
    return problem.caches[a.cache].tap < problem.caches[b.cache].tap;
  });
  return choices;
}

bool TapTaken(const std::vector<PlanChoice>& choices, const PlanningProblem& problem,
              int tap, int except_index = -1) {
  for (size_t j = 0; j < choices.size(); ++j) {
    if (static_cast<int>(j) != except_index && problem.caches[choices[j].cache].tap == tap) {
      return true;
    }
  }
  return false;
}

Plan Finish(const PlanningProblem& problem, const PlanEvaluator& evaluator,
            const PlanOptions& options, std::vector<PlanChoice> choices,
            int evaluations) {
  Plan plan;
  plan.choices = std::move(choices);
  plan.evaluation = evaluator.Evaluate(plan.choices, options);
  plan.base_ms = problem.whole_ms;
  plan.oracle_mean_ms = OracleMeanMs(problem);
  plan.evaluations = evaluations;
  if (plan.choices.empty()) {
    bool any_fits = false;
    for (const CandidateCache& cache : problem.caches) {
      any_fits |= cache.memory_bytes <= options.memory_budget_bytes;
    }
    if (problem.caches.empty()) {
      plan.note = "no caches in the bundle";
    } else if (!any_fits) {
      plan.note = absl::StrCat("no cache fits the memory budget of ",
                               options.memory_budget_bytes, " bytes");
    } else if (options.max_taps < 0) {
      plan.note = "max taps is negative";
    } else {
      plan.note = absl::StrCat(
          "no plan keeps the disagreement bound <= ", options.epsilon,
          options.tail_budget > 0
              ? absl::StrCat(" and the p99 within ", options.tail_budget, "x the base model")
              : "",
          " and is faster than the base model");
    }
  }
  return plan;
}

}  // namespace

namespace {

// How greedy forward selection ranks additions. Memory and the
// false-answer budget are knapsack-like: the largest single gain can use up
// the budget that several smaller caches would have used better, so the
// search runs greedy under each ranking and keeps the best result.
enum class Ranking { kGain, kGainPerByte, kGainPerFalseAnswer };

struct Search {
  const PlanningProblem& problem;
  const PlanOptions& options;
  PlanEvaluator evaluator{problem};
  int evaluations = 0;

  PlanEvaluation Evaluate(const std::vector<PlanChoice>& choices) {
    ++evaluations;
    return evaluator.Evaluate(choices, options);
  }

  // One greedy step: the feasible addition at a free tap that ranks best.
  bool GreedyStep(Ranking ranking, std::vector<PlanChoice>* current,
                  PlanEvaluation* current_eval) {
    double best_score = 0;
    std::vector<PlanChoice> best;
    PlanEvaluation best_eval;
    for (int c = 0; c < static_cast<int>(problem.caches.size()); ++c) {
      if (TapTaken(*current, problem, problem.caches[c].tap)) continue;
      for (int t = 0; t < static_cast<int>(problem.caches[c].thresholds.size()); ++t) {
        std::vector<PlanChoice> candidate = *current;
        candidate.push_back({c, t});
        candidate = Sorted(std::move(candidate), problem);
        PlanEvaluation e = Evaluate(candidate);
        const double gain = current_eval->mean_ms - e.mean_ms;
        if (!e.feasible || gain <= 1e-12) continue;
        double score = gain;
        if (ranking == Ranking::kGainPerByte) {
          score = gain / (1.0 + problem.caches[c].memory_bytes);
        } else if (ranking == Ranking::kGainPerFalseAnswer) {
          score = gain / (1.0 + e.false_answers - current_eval->false_answers);
        }
        if (score > best_score) {
          best_score = score;
          best = std::move(candidate);
          best_eval = e;
        }
      }
    }
    if (best_score <= 0) return false;
    *current = std::move(best);
    *current_eval = best_eval;
    return true;
  }

  // One local step: the best of every add, drop and replacement.
  bool LocalStep(std::vector<PlanChoice>* current, PlanEvaluation* current_eval) {
    std::vector<PlanChoice> best = *current;
    PlanEvaluation best_eval = *current_eval;
    auto consider = [&](std::vector<PlanChoice> candidate) {
      candidate = Sorted(std::move(candidate), problem);
      PlanEvaluation e = Evaluate(candidate);
      if (Better(e, best_eval)) {
        best = std::move(candidate);
        best_eval = e;
      }
    };
    const int num_caches = static_cast<int>(problem.caches.size());
    for (int c = 0; c < num_caches; ++c) {
      if (TapTaken(*current, problem, problem.caches[c].tap)) continue;
      for (int t = 0; t < static_cast<int>(problem.caches[c].thresholds.size()); ++t) {
        std::vector<PlanChoice> added = *current;
        added.push_back({c, t});
        consider(added);
      }
    }
    for (size_t j = 0; j < current->size(); ++j) {
      std::vector<PlanChoice> dropped = *current;
      dropped.erase(dropped.begin() + j);
      consider(dropped);
      // Replace choice j by any cache at its tap (swap variant, move
      // threshold) or at a free tap (move the cache elsewhere).
      for (int c = 0; c < num_caches; ++c) {
        if (TapTaken(*current, problem, problem.caches[c].tap, static_cast<int>(j))) continue;
        for (int t = 0; t < static_cast<int>(problem.caches[c].thresholds.size()); ++t) {
          if (PlanChoice{c, t} == (*current)[j]) continue;
          std::vector<PlanChoice> changed = *current;
          changed[j] = {c, t};
          consider(changed);
        }
      }
    }
    if (!Better(best_eval, *current_eval)) return false;
    *current = std::move(best);
    *current_eval = best_eval;
    return true;
  }
};

}  // namespace

Plan SearchPlan(const PlanningProblem& problem, const PlanOptions& options) {
  Search search{problem, options};
  std::vector<PlanChoice> best;
  PlanEvaluation best_eval = search.Evaluate(best);
  for (Ranking ranking :
       {Ranking::kGain, Ranking::kGainPerByte, Ranking::kGainPerFalseAnswer}) {
    std::vector<PlanChoice> current;
    PlanEvaluation current_eval = search.Evaluate(current);
    while (search.GreedyStep(ranking, &current, &current_eval)) {
    }
    while (search.LocalStep(&current, &current_eval)) {
    }
    if (Better(current_eval, best_eval)) {
      best = current;
      best_eval = current_eval;
    }
  }
  return Finish(problem, search.evaluator, options, best, search.evaluations);
}

Plan BruteForcePlan(const PlanningProblem& problem, const PlanOptions& options) {
  // Options per tap: none, or any (cache, threshold) at that tap.
  std::vector<int> taps;
  for (const CandidateCache& cache : problem.caches) taps.push_back(cache.tap);
  std::sort(taps.begin(), taps.end());
  taps.erase(std::unique(taps.begin(), taps.end()), taps.end());
  std::vector<std::vector<PlanChoice>> per_tap(taps.size());
  for (size_t i = 0; i < taps.size(); ++i) {
    for (int c = 0; c < static_cast<int>(problem.caches.size()); ++c) {
      if (problem.caches[c].tap != taps[i]) continue;
      for (int t = 0; t < static_cast<int>(problem.caches[c].thresholds.size()); ++t) {
        per_tap[i].push_back({c, t});
      }
    }
  }
  std::vector<PlanChoice> best, current;
  PlanEvaluator evaluator(problem);
  PlanEvaluation best_eval = evaluator.Evaluate(best, options);
  int evaluations = 1;
  std::function<void(size_t)> visit = [&](size_t i) {
    if (i == taps.size()) {
      if (current.empty()) return;
      PlanEvaluation e = evaluator.Evaluate(current, options);
      ++evaluations;
      if (Better(e, best_eval)) {
        best = current;
        best_eval = e;
      }
      return;
    }
    visit(i + 1);
    if (options.max_taps > 0 && static_cast<int>(current.size()) >= options.max_taps) return;
    for (const PlanChoice& choice : per_tap[i]) {
      current.push_back(choice);
      visit(i + 1);
      current.pop_back();
    }
  };
  visit(0);
  return Finish(problem, evaluator, options, best, evaluations);
}

double OracleMeanMs(const PlanningProblem& problem) {
  const int stages = static_cast<int>(problem.stage_ms.size());
  const double fusion = FusionFactor(problem);
  std::vector<double> prefix(stages + 1, 0);
  for (int s = 0; s < stages; ++s) prefix[s + 1] = prefix[s] + problem.stage_ms[s] * fusion;
  double total = 0;
  const size_t n = problem.base_classes.size();
  for (size_t i = 0; i < n; ++i) {
    int earliest = stages - 1;
    for (const CandidateCache& cache : problem.caches) {
      if (cache.tap < earliest && cache.classes[i] == problem.base_classes[i]) {
        earliest = cache.tap;
      }
    }
    total += earliest == stages - 1 ? problem.whole_ms : prefix[earliest + 1];
  }
  return n > 0 ? total / n : problem.whole_ms;
}

absl::Status CalibrateParallelCost(const Plan& plan, const PlanOptions& options,
                                   const ModeTiming& timing, PlanningProblem* problem) {
  const int k = static_cast<int>(plan.choices.size());
  if (k == 0) return absl::InvalidArgumentError("parallel calibration: the plan has no caches");
  if (timing.exit_slot.empty() || !(timing.base_ms > 0) || !(timing.sequential_ms > 0) ||
      !(timing.parallel_ms > 0) || !(plan.base_ms > 0)) {
    return absl::InvalidArgumentError("parallel calibration: no timed requests");
  }
  problem->parallel_request_ms = 0;
  PlanOptions sequential = options, parallel = options;
  sequential.mode = LookupMode::kSequential;
  parallel.mode = LookupMode::kParallel;
  const PlanEvaluation s = EvaluatePlan(*problem, plan.choices, sequential);
  const PlanEvaluation p = EvaluatePlan(*problem, plan.choices, parallel);
  double predicted = 0;  // Parallel minus sequential, per request, as priced.
  for (int exit : timing.exit_slot) {
    if (exit < 0 || exit > k) {
      return absl::InvalidArgumentError(absl::StrCat(
          "parallel calibration: exit ", exit, " outside the plan's ", k, " caches"));
    }
    predicted += p.exit_ms[exit] - s.exit_ms[exit];
  }
  predicted /= static_cast<double>(timing.exit_slot.size());
  const double measured =
      plan.base_ms / timing.base_ms * (timing.parallel_ms - timing.sequential_ms);
  // Parallel mode can beat its pricing (lookups overlap better than
  // priced), but never by more than half the model.
  problem->parallel_request_ms = std::max(measured - predicted, -0.5 * plan.base_ms);
  return absl::OkStatus();
}

}  // namespace gati
