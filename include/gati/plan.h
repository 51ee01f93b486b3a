// The planner: which taps get a cache, which variant and which threshold, to
// minimize expected latency under a memory budget and a bound on
// disagreement with the base model.
//
// A plan is evaluated exactly by replaying the planning split: every sample
// leaves at the first planned tap whose cache hits (selector score >=
// threshold), paying the fused segments it ran plus what lookups add to the
// critical path; its answer is false when the cache's class differs from the
// base model's. No LibTorch here.
#ifndef GATI_PLAN_H_
#define GATI_PLAN_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gati/status.h"

namespace gati {

// How the engine runs lookups. kParallel: a lookup overlaps the next segment,
// so a miss costs only the part that outlasts that segment, a hit costs the
// whole lookup (the answer waits for it). kSequential: every lookup on the
// path costs its full time. kAuto (the engine only): the engine measures
// both on this machine when it starts and serves in the faster; the planner
// prices kAuto as kSequential, the mode whose cost it models without
// assuming an idle core.
enum class LookupMode { kParallel, kSequential, kAuto };

// "parallel", "sequential" or "auto"; InvalidArgument otherwise.
absl::StatusOr<LookupMode> ParseLookupMode(const std::string& text);
// Inline: the engine core names modes without linking the planner.
inline const char* LookupModeName(LookupMode mode) {
  switch (mode) {
    case LookupMode::kParallel:
      return "parallel";
    case LookupMode::kSequential:
      return "sequential";
    case LookupMode::kAuto:
      return "auto";
  }
  return "?";
}

// Parses "4MB", "512KB", "1.5MiB", "2000000" (bytes; K/M/G are powers of
// 1000, Ki/Mi/Gi of 1024, a trailing B is optional). InvalidArgument for
// anything else, negative or non-finite sizes.
absl::StatusOr<int64_t> ParseByteSize(const std::string& text);

// One tap x variant the planner may choose, with its records on the planning
// split (sample i: scores[i], classes[i]).
struct CandidateCache {
  int tap = 0;
  std::string variant;
  double lookup_ms = 0;
  int64_t memory_bytes = 0;
  // Thresholds the planner may pick for this cache, strictest first.
  std::vector<float> thresholds;
  std::vector<float> scores;
  std::vector<int32_t> classes;
};

struct PlanningProblem {
  // Per-stage latency of each stage frozen alone, and of the whole model
  // fused; their ratio scales summed stage times to fused segment times.
  std::vector<double> stage_ms;
  double whole_ms = 0;
  // Extra latency of one cut (segment boundary), from the profile of the
  // model cut at every tap against the whole model.
  double cut_overhead_ms = 0;
  std::vector<int32_t> base_classes;  // Per planning sample.
  std::vector<CandidateCache> caches;
  // Measured latency of fused segments [first, end), keyed (first, end);
  // used instead of the model above wherever present.
  std::map<std::pair<int, int>, double> measured_segment_ms;
  // Plans for batches (`batch` > 1; every cost is per row of a batch of
  // that size): a segment's time on a batch of b rows is modelled as
  // fixed + b x per-row, from timings at two batch sizes. Then
  // measured_segment_ms holds the per-row part, which a row pays when it
  // passes the segment, and segment_shared_ms the fixed part over `batch`,
  // which every row of the batch pays while any row still runs the segment
  // (rows that hit leave the batch; the rest run on). The whole model
  // [0, stages) is kept whole in measured_segment_ms. A lookup's in-situ
  // costs beyond its own time (lookup_overhead_ms, lookup_ms_per_mb) are
  // shared the same way. A batch plan's quantiles are those of a batch's
  // time divided by `batch` (a row's latency is at most the batch's time),
  // over batches drawn from the planning split, normal by the central
  // limit theorem; the tail budget holds its p99 against the whole model's
  // time per row on the same batch. Its miss_ms is a batch in which no row
  // hits, per row.
  int batch = 1;
  std::map<std::pair<int, int>, double> segment_shared_ms;
  // What a lookup on a request's path costs beyond its isolated lookup_ms
  // when the engine runs it between segments: a constant per lookup (the
  // boundary's handling beyond the measured segments) plus a cost per MB of
  // the cache's memory (between requests its weights leave the CPU caches,
  // so a lookup reads them cold and evicts the next segment's). Calibrated
  // at build time by timing a plan's all-miss path as the engine runs it,
  // with and without its lookups, against the whole model (TimeMissPath);
  // 0 = not calibrated.
  double lookup_overhead_ms = 0;
  double lookup_ms_per_mb = 0;
  // Parallel mode only: what a request pays beyond the model above (its
  // handoffs to a worker and back, and the contention of a worker that
  // finishes a segment after a hit answered), per request. Calibrated at
  // build time by timing the engine in both modes on the planning split
  // (runtime::TimeModes); 0 = not calibrated.
  double parallel_request_ms = 0;
};

// A cache's lookup as a request on the engine pays it: isolated time plus
// the calibrated in-situ costs above.
double PathLookupMs(const PlanningProblem& problem, const CandidateCache& cache);

// Checks sizes and values; InvalidArgument naming the first problem.
absl::Status ValidateProblem(const PlanningProblem& problem);

struct PlanOptions {
  int64_t memory_budget_bytes = 4 << 20;  // Sum over chosen caches.
  // Bound on the share of all answers that differ from the base model, as a
  // one-sided Clopper-Pearson upper bound at `confidence` on the split.
  double epsilon = 0.01;
  double confidence = 0.95;
  LookupMode mode = LookupMode::kSequential;
  int max_taps = 0;  // 0 = no limit.
  // Tail constraint: the plan's p99 latency on the planning split must stay
  // within this multiple of the base model's (whose latency is the same for
  // every sample); with more than 1% misses that is the miss path: every
  // boundary and lookup a request passes before the base model answers.
  // 0 = no constraint.
  double tail_budget = 1.05;
};

// One chosen cache: indices into problem.caches and its thresholds.
struct PlanChoice {
  int cache = 0;
  int threshold = 0;
  bool operator==(const PlanChoice& o) const {
    return cache == o.cache && threshold == o.threshold;
  }
};

struct PlanEvaluation {
  double mean_ms = 0;
  double p50_ms = 0;
  double p95_ms = 0;
  double p99_ms = 0;
  // The slowest path: a request that misses every chosen cache.
  double miss_ms = 0;
  int64_t false_answers = 0;
  double disagreement = 0;        // false_answers / samples.
  double disagreement_bound = 0;  // Clopper-Pearson upper bound.
  int64_t memory_bytes = 0;
  // Share of samples answered at each chosen cache (plan order), then by
  // the base model (last element).
  std::vector<double> exit_share;
  // Latency of a request answered at each chosen cache, then of a miss.
  std::vector<double> exit_ms;
  bool feasible = false;  // Memory, taps, tail and bound all hold.
};

struct Plan {
  std::vector<PlanChoice> choices;  // Sorted by tap; at most one per tap.
  PlanEvaluation evaluation;
  double base_ms = 0;          // The whole model, fused.
  double oracle_mean_ms = 0;   // See OracleMeanMs.
  int evaluations = 0;         // Plans replayed by the search.
  std::string note;            // Why the plan is empty, when it is.
};

// Mean latencies (ms) of one run of the engine in each mode and of the
// whole base model over the same inputs, and where each input left the
// plan: its index among the plan's taps, or the tap count for the base
// model.
struct ModeTiming {
  double sequential_ms = 0;
  double parallel_ms = 0;
  double base_ms = 0;
  std::vector<int> exit_slot;
};

// Sets problem->parallel_request_ms to what `timing` shows parallel mode
// pays per request beyond `plan`'s parallel pricing, relative to its
// sequential pricing (both measured in one run, scaled to plan.base_ms by
// the run's base-model time). REQUIRES: plan has choices, and timing one
// exit per timed input.
absl::Status CalibrateParallelCost(const Plan& plan, const PlanOptions& options,
                                   const ModeTiming& timing, PlanningProblem* problem);

// Fused latency of stages [first, end) as one segment: measured when
// problem.measured_segment_ms has it, else modelled as the stage times
// scaled to the fused whole model plus one cut's overhead when the segment
// does not start at stage 0.
double SegmentMs(const PlanningProblem& problem, int first, int end);

// A batch plan's segment_shared_ms for [first, end) (0 when absent), and a
// row's share of the segment on a full batch: SegmentMs plus that.
double SegmentSharedMs(const PlanningProblem& problem, int first, int end);
double SegmentRowMs(const PlanningProblem& problem, int first, int end);

// Replays the planning split under `choices` (sorted by tap).
PlanEvaluation EvaluatePlan(const PlanningProblem& problem,
                            const std::vector<PlanChoice>& choices,
                            const PlanOptions& options);

// The same, with each cache's hits per threshold precomputed as bit masks,
// so that one replay costs O(choices x samples / 64). Keeps a reference to
// `problem`, which must outlive it. Not thread-safe (it memoizes bounds).
class PlanEvaluator {
 public:
  explicit PlanEvaluator(const PlanningProblem& problem);
  // `segment_ms`, when given (choices.size() + 1 values), replaces the cost
  // model's segment latencies, e.g. by measured ones of the fused segments.
  PlanEvaluation Evaluate(const std::vector<PlanChoice>& choices,
                          const PlanOptions& options,
                          const std::vector<double>* segment_ms = nullptr) const;

 private:
  double Bound(int64_t false_answers, double confidence) const;
  mutable std::vector<double> bounds_;  // By false-answer count; -1 = unknown.
  mutable double bound_confidence_ = -1;
  const PlanningProblem& problem_;
  size_t words_ = 0;
  // [cache][threshold] -> samples whose score reaches it; [cache] -> samples
  // whose predictor class differs from the base model's.
  std::vector<std::vector<std::vector<uint64_t>>> hit_masks_;
  std::vector<std::vector<uint64_t>> wrong_masks_;
};

// Greedy forward selection with exact replay, then local improvement (add,
// drop, swap variant, move threshold) until no move lowers the mean latency.
// Never fails: with no feasible cache the plan is empty (the base model) and
// `note` says why.
Plan SearchPlan(const PlanningProblem& problem, const PlanOptions& options);

// Every plan, for tests on small instances (exponential).
Plan BruteForcePlan(const PlanningProblem& problem, const PlanOptions& options);

// Mean latency if every sample left at the earliest tap where some cache's
// predictor matches the base model, with free lookups and no cut overhead.
double OracleMeanMs(const PlanningProblem& problem);

}  // namespace gati

#endif  // GATI_PLAN_H_
