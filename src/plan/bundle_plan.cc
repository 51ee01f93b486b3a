#include "plan/bundle_plan.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace gati {

absl::StatusOr<PlanningProblem> ProblemFromBundle(const Bundle& bundle,
                                                  int thresholds_per_cache) {
  if (bundle.records().base_classes.empty()) {
    return absl::FailedPreconditionError(
        bundle.dir() + ": has no planning records (rebuild it with gati build)");
  }
  return ProblemFromManifest(bundle.manifest(), bundle.records(),
                             thresholds_per_cache);
}

absl::StatusOr<PlanningProblem> ProblemFromManifest(const BundleManifest& manifest,
                                                    const PlanningRecords& records,
                                                    int thresholds_per_cache) {
  if (records.caches.size() != manifest.caches.size()) {
    return absl::InvalidArgumentError("planning records do not match the caches");
  }
  PlanningProblem problem;
  problem.stage_ms = manifest.stage_p50_ms;
  problem.whole_ms = manifest.whole_p50_ms;
  const int taps = manifest.num_stages - 1;
  problem.cut_overhead_ms =
      taps > 0 ? std::max(0.0, (manifest.staged_p50_ms - manifest.whole_p50_ms) / taps) : 0;
  problem.lookup_overhead_ms = manifest.lookup_overhead_ms;
  problem.lookup_ms_per_mb = manifest.lookup_ms_per_mb;
  problem.parallel_request_ms = manifest.parallel_request_ms;
  problem.base_classes = records.base_classes;
  for (size_t i = 0; i < manifest.caches.size(); ++i) {
    const CacheEntry& entry = manifest.caches[i];
    CandidateCache cache;
    cache.tap = entry.tap;
    cache.variant = entry.variant;
    cache.lookup_ms = entry.metrics.lookup_us / 1000.0;
    cache.memory_bytes = entry.metrics.memory_bytes;
    cache.scores = records.caches[i].scores;
    cache.classes = records.caches[i].classes;
    std::vector<float> sorted = cache.scores;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    std::vector<float> thresholds;
    if (entry.enabled) thresholds.push_back(entry.threshold);
    for (double share : {0.2, 0.4, 0.6, 0.8}) {
      size_t index = static_cast<size_t>(share * sorted.size());
      if (index > 0) thresholds.push_back(sorted[index - 1]);
    }
    std::sort(thresholds.begin(), thresholds.end(), std::greater<float>());
    thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());
    if (static_cast<int>(thresholds.size()) > thresholds_per_cache) {
      thresholds.resize(thresholds_per_cache);
    }
    cache.thresholds = thresholds;
    problem.caches.push_back(std::move(cache));
  }
  GATI_RETURN_IF_ERROR(ValidateProblem(problem));
  return problem;
}

StoredPlan ToStoredPlan(const Plan& plan, const PlanningProblem& problem,
                        const PlanOptions& options, int batch) {
  StoredPlan stored;
  stored.batch = batch;
  stored.mode = LookupModeName(options.mode);
  stored.memory_budget_bytes = options.memory_budget_bytes;
  stored.epsilon = options.epsilon;
  stored.confidence = options.confidence;
  stored.max_taps = options.max_taps;
  stored.tail_budget = options.tail_budget;
  for (const PlanChoice& choice : plan.choices) {
    const CandidateCache& cache = problem.caches[choice.cache];
    stored.caches.push_back({cache.tap, cache.variant, cache.thresholds[choice.threshold]});
  }
  const PlanEvaluation& e = plan.evaluation;
  stored.mean_ms = e.mean_ms;
  stored.p50_ms = e.p50_ms;
  stored.p95_ms = e.p95_ms;
  stored.p99_ms = e.p99_ms;
  stored.miss_ms = e.miss_ms;
  stored.base_ms = plan.base_ms;
  stored.oracle_mean_ms = plan.oracle_mean_ms;
  stored.disagreement = e.disagreement;
  stored.disagreement_bound = e.disagreement_bound;
  stored.memory_bytes = e.memory_bytes;
  stored.exit_share = e.exit_share;
  stored.note = plan.note;
  if (!plan.choices.empty() && batch == 1) {
    PlanOptions other = options;
    other.mode = options.mode == LookupMode::kParallel ? LookupMode::kSequential
                                                       : LookupMode::kParallel;
    const PlanEvaluation priced = EvaluatePlan(problem, plan.choices, other);
    stored.other_mode_mean_ms = priced.mean_ms;
    stored.other_mode_p99_ms = priced.p99_ms;
  }
  return stored;
}

std::string PlanReport(const BundleManifest& manifest) {
  std::string out = PlanReport(manifest.plan);
  // The calibrations below are single requests'; a plan for batches was
  // priced on its own (gati plan --batch).
  if (manifest.has_plan && manifest.plan.batch > 1) return out;
  if (manifest.lookup_overhead_ms > 0 || manifest.lookup_ms_per_mb > 0) {
    char line[256];
    std::snprintf(line, sizeof(line),
                  "in-situ lookup cost (measured on the all-miss path at build): %.1f us per "
                  "lookup + %.1f us per MB of cache, beyond the isolated lookup times\n",
                  manifest.lookup_overhead_ms * 1000, manifest.lookup_ms_per_mb * 1000);
    out += line;
  }
  if (manifest.has_plan && manifest.plan.other_mode_mean_ms > 0) {
    const bool parallel_plan = manifest.plan.mode == "parallel";
    char line[320];
    std::snprintf(line, sizeof(line),
                  "in %s mode this plan: mean %.3f ms, p99 %.3f ms%s\n",
                  parallel_plan ? "sequential" : "parallel", manifest.plan.other_mode_mean_ms,
                  manifest.plan.other_mode_p99_ms,
                  manifest.parallel_request_ms != 0 ? "" : " (parallel handoffs not calibrated)");
    out += line;
  }
  if (manifest.parallel_request_ms != 0) {
    char line[256];
    std::snprintf(line, sizeof(line),
                  "parallel mode's handoffs and contention (the engine timed in both modes at "
                  "build): %+.1f us per request beyond its pricing\n",
                  manifest.parallel_request_ms * 1000);
    out += line;
  }
  return out;
}

std::string PlanReport(const StoredPlan& plan) {
  std::string out = absl::StrCat(
      "plan (mode ", plan.mode, ", memory budget ", plan.memory_budget_bytes,
      " bytes, epsilon ", plan.epsilon,
      plan.max_taps > 0 ? absl::StrCat(", at most ", plan.max_taps, " taps") : "",
      plan.tail_budget > 0 ? absl::StrCat(", p99 within ", plan.tail_budget, "x the base model")
                           : "",
      ")\n");
  if (plan.batch > 1) {
    absl::StrAppend(&out, "made for batches of ", plan.batch,
                    ": every latency below is per row of such a batch, profiled at that size\n");
  }
  char line[256];
  if (plan.caches.empty()) {
    absl::StrAppend(&out, "no caches: every request runs the base model (", plan.note, ")\n");
  } else {
    std::snprintf(line, sizeof(line), "%5s %23s %10s %9s\n", "tap", "variant",
                  "threshold", "answers");
    out += line;
    for (size_t j = 0; j < plan.caches.size(); ++j) {
      std::snprintf(line, sizeof(line), "%5d %23s %10.6f %8.1f%%\n", plan.caches[j].tap,
                    plan.caches[j].variant.c_str(), plan.caches[j].threshold,
                    100 * plan.exit_share[j]);
      out += line;
    }
    std::snprintf(line, sizeof(line), "%5s %23s %10s %8.1f%%\n", "-", "base model", "",
                  100 * plan.exit_share.back());
    out += line;
  }
  std::snprintf(line, sizeof(line),
                "predicted latency: mean %.3f ms, p50 %.3f ms, p95 %.3f ms; base model "
                "%.3f ms; speedup %.2fx\n",
                plan.mean_ms, plan.p50_ms, plan.p95_ms, plan.base_ms,
                plan.base_ms / plan.mean_ms);
  out += line;
  if (plan.miss_ms > 0) {  // Plans written before p99 and the miss path have neither.
    std::snprintf(line, sizeof(line),
                  "predicted p99 %.3f ms (x%.3f the base model), all-miss path %.3f ms\n",
                  plan.p99_ms, plan.p99_ms / plan.base_ms, plan.miss_ms);
    out += line;
  }
  if (plan.model_only_mean_ms > 0) {
    std::snprintf(line, sizeof(line),
                  "segment latencies measured on the plan's fused segments (the cost "
                  "model alone predicted a mean of %.3f ms for the first plan it found)\n",
                  plan.model_only_mean_ms);
    out += line;
  }
  std::snprintf(line, sizeof(line),
                "predicted disagreement %.4f, %.0f%% upper bound %.4f (epsilon %g); "
                "memory %lld bytes\n",
                plan.disagreement, 100 * plan.confidence, plan.disagreement_bound,
                plan.epsilon, static_cast<long long>(plan.memory_bytes));
  out += line;
  std::snprintf(line, sizeof(line),
                "oracle bound: mean %.3f ms (speedup %.2fx); this plan reaches %.0f%% of "
                "the oracle's latency reduction\n",
                plan.oracle_mean_ms, plan.base_ms / plan.oracle_mean_ms,
                plan.base_ms > plan.oracle_mean_ms
                    ? 100 * (plan.base_ms - plan.mean_ms) / (plan.base_ms - plan.oracle_mean_ms)
                    : 100.0);
  out += line;
  return out;
}

}  // namespace gati
