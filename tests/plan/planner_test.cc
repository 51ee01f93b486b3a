#include "gati/plan.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "testutil.h"

namespace gati {
namespace {

// A random instance: `taps` taps, `variants` variants per tap, `thresholds`
// candidate thresholds each, `samples` planning records. Later taps and
// bigger variants predict the base class more often; the selector score is
// informative but noisy.
PlanningProblem RandomProblem(int taps, int variants, int thresholds, int samples,
                              uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  PlanningProblem problem;
  const int stages = taps + 1;
  for (int s = 0; s < stages; ++s) problem.stage_ms.push_back(0.2 + 0.2 * uniform(rng));
  double sum = 0;
  for (double ms : problem.stage_ms) sum += ms;
  problem.whole_ms = 0.8 * sum;
  problem.cut_overhead_ms = 0.01;
  for (int i = 0; i < samples; ++i) problem.base_classes.push_back(rng() % 10);
  for (int tap = 0; tap < taps; ++tap) {
    for (int v = 0; v < variants; ++v) {
      CandidateCache cache;
      cache.tap = tap;
      cache.variant = "v" + std::to_string(v);
      cache.lookup_ms = 0.01 + 0.05 * v * uniform(rng);
      cache.memory_bytes = 1000 * (1 + v) * (1 + (rng() % 4));
      const double skill = 0.3 + 0.65 * (tap + 1.0) / taps * (0.8 + 0.2 * v / std::max(1, variants - 1));
      for (int i = 0; i < samples; ++i) {
        bool right = uniform(rng) < skill;
        cache.classes.push_back(right ? problem.base_classes[i] : (problem.base_classes[i] + 1) % 10);
        double score = right ? 0.5 + 0.5 * uniform(rng) : 0.7 * uniform(rng);
        cache.scores.push_back(static_cast<float>(score));
      }
      for (int t = 0; t < thresholds; ++t) {
        cache.thresholds.push_back(static_cast<float>(0.98 - 0.1 * t));
      }
      problem.caches.push_back(cache);
    }
  }
  return problem;
}

TEST(PlannerTest, SearchIsWithinOnePercentOfBruteForce) {
  int compared = 0;
  for (uint32_t seed = 0; seed < 30; ++seed) {
    PlanningProblem problem = RandomProblem(6 + seed % 3, 1 + seed % 3, 1 + (seed / 3) % 3, 400, seed);
    ASSERT_TRUE(ValidateProblem(problem).ok());
    PlanOptions options;
    options.epsilon = 0.03 + 0.01 * (seed % 3);
    options.memory_budget_bytes = 3000 + 2000 * (seed % 4);
    options.max_taps = 3;
    Plan searched = SearchPlan(problem, options);
    Plan best = BruteForcePlan(problem, options);
    ASSERT_TRUE(best.evaluation.feasible);
    ASSERT_TRUE(searched.evaluation.feasible);
    EXPECT_LE(searched.evaluation.mean_ms, best.evaluation.mean_ms * 1.01)
        << "seed " << seed << ": brute force evaluated " << best.evaluations;
    EXPECT_GE(searched.evaluation.mean_ms, best.evaluation.mean_ms - 1e-9);
    compared += !best.choices.empty();
  }
  EXPECT_GE(compared, 20) << "most instances should admit a non-empty plan";
}

// Without a tap limit, on instances small enough to enumerate every plan.
TEST(PlannerTest, SearchMatchesBruteForceWithoutATapLimit) {
  for (uint32_t seed = 50; seed < 60; ++seed) {
    PlanningProblem problem = RandomProblem(6, 2, 2, 300, seed);
    PlanOptions options;
    options.epsilon = 0.03;
    options.memory_budget_bytes = 4000 + 1000 * (seed % 5);
    Plan searched = SearchPlan(problem, options);
    Plan best = BruteForcePlan(problem, options);
    EXPECT_EQ(best.evaluations, 15625);  // (1 + 2 x 2)^6 plans.
    EXPECT_LE(searched.evaluation.mean_ms, best.evaluation.mean_ms * 1.01) << "seed " << seed;
  }
}

TEST(PlannerTest, PlansKeepMemoryEpsilonAndTapLimits) {
  for (uint32_t seed = 100; seed < 130; ++seed) {
    PlanningProblem problem = RandomProblem(10, 3, 3, 600, seed);
    PlanOptions options;
    options.epsilon = 0.01 + 0.01 * (seed % 5);
    options.memory_budget_bytes = 2000 + 1500 * (seed % 7);
    options.max_taps = seed % 4;
    Plan plan = SearchPlan(problem, options);
    const PlanEvaluation& e = plan.evaluation;
    EXPECT_TRUE(e.feasible);
    EXPECT_LE(e.memory_bytes, options.memory_budget_bytes);
    if (options.max_taps > 0) EXPECT_LE(static_cast<int>(plan.choices.size()), options.max_taps);
    if (!plan.choices.empty()) EXPECT_LE(e.disagreement_bound, options.epsilon);
    EXPECT_LE(e.p99_ms, options.tail_budget * plan.base_ms + 1e-9);
    EXPECT_LE(e.mean_ms, plan.base_ms + 1e-9);
    EXPECT_LE(plan.oracle_mean_ms, e.mean_ms + 1e-9);
    for (size_t j = 1; j < plan.choices.size(); ++j) {
      EXPECT_LT(problem.caches[plan.choices[j - 1].cache].tap,
                problem.caches[plan.choices[j].cache].tap);
    }
    double shares = 0;
    for (double share : e.exit_share) shares += share;
    EXPECT_NEAR(shares, 1.0, 1e-9);
  }
}

TEST(PlannerTest, LargerBudgetOrEpsilonIsNeverSlower) {
  for (uint32_t seed = 200; seed < 210; ++seed) {
    PlanningProblem problem = RandomProblem(8, 3, 3, 500, seed);
    PlanOptions options;
    double previous = 1e9;
    for (int64_t budget : {1000, 3000, 6000, 12000, 50000, 1000000}) {
      options.memory_budget_bytes = budget;
      double mean = SearchPlan(problem, options).evaluation.mean_ms;
      EXPECT_LE(mean, previous + 1e-9) << "seed " << seed << " budget " << budget;
      previous = mean;
    }
    previous = 1e9;
    for (double epsilon : {0.001, 0.01, 0.03, 0.1}) {
      options.epsilon = epsilon;
      double mean = SearchPlan(problem, options).evaluation.mean_ms;
      EXPECT_LE(mean, previous + 1e-9) << "seed " << seed << " epsilon " << epsilon;
      previous = mean;
    }
  }
}

TEST(PlannerTest, InfeasibleConstraintsGiveTheBaseModelAndSayWhy) {
  PlanningProblem problem = RandomProblem(5, 2, 2, 300, 7);
  PlanOptions options;
  options.memory_budget_bytes = 10;
  Plan plan = SearchPlan(problem, options);
  EXPECT_TRUE(plan.choices.empty());
  EXPECT_NE(plan.note.find("memory budget"), std::string::npos) << plan.note;
  EXPECT_NEAR(plan.evaluation.mean_ms, problem.whole_ms, 1e-12);
  EXPECT_DOUBLE_EQ(plan.evaluation.exit_share.back(), 1.0);

  options.memory_budget_bytes = 1 << 30;
  options.epsilon = 1e-6;
  plan = SearchPlan(problem, options);
  EXPECT_TRUE(plan.choices.empty());
  EXPECT_NE(plan.note.find("disagreement bound"), std::string::npos) << plan.note;
}

// A cache at tap 0 with one candidate threshold, 0.5.
CandidateCache TapZeroCache(const std::string& variant, double lookup_ms, int64_t memory_bytes,
                            std::vector<float> scores, std::vector<int32_t> classes) {
  CandidateCache cache;
  cache.tap = 0;
  cache.variant = variant;
  cache.lookup_ms = lookup_ms;
  cache.memory_bytes = memory_bytes;
  cache.thresholds = {0.5f};
  cache.scores = std::move(scores);
  cache.classes = std::move(classes);
  return cache;
}

TEST(PlannerTest, ReplayFollowsTheCostModel) {
  // Two stages around one tap; two samples: one hits, one misses.
  PlanningProblem problem;
  problem.stage_ms = {1.0, 3.0};
  problem.whole_ms = 3.2;  // Fusion factor 0.8.
  problem.cut_overhead_ms = 0.1;
  problem.base_classes = {4, 5};
  problem.caches = {TapZeroCache("v", 0.5, 100, {0.9f, 0.1f}, {4, 4})};
  PlanOptions options;
  options.epsilon = 0.99;
  options.tail_budget = 0;
  options.mode = LookupMode::kParallel;
  // Segments: stage 0 fused = 0.8; stage 1 = 2.4 + 0.1 cut overhead.
  EXPECT_DOUBLE_EQ(SegmentMs(problem, 0, 1), 0.8);
  EXPECT_DOUBLE_EQ(SegmentMs(problem, 1, 2), 2.5);
  PlanEvaluation parallel = EvaluatePlan(problem, {{0, 0}}, options);
  // Hit: 0.8 + 0.5; miss: 0.8 + max(0, 0.5 - 2.5) + 2.5.
  EXPECT_DOUBLE_EQ(parallel.mean_ms, (1.3 + 3.3) / 2);
  EXPECT_EQ(parallel.false_answers, 0);
  options.mode = LookupMode::kSequential;
  PlanEvaluation sequential = EvaluatePlan(problem, {{0, 0}}, options);
  EXPECT_DOUBLE_EQ(sequential.mean_ms, (1.3 + 3.8) / 2);
  EXPECT_EQ(sequential.exit_share, (std::vector<double>{0.5, 0.5}));
  // Half the samples miss, so p95 and p99 are the miss path.
  EXPECT_DOUBLE_EQ(sequential.miss_ms, 3.8);
  EXPECT_DOUBLE_EQ(sequential.p99_ms, 3.8);
  EXPECT_DOUBLE_EQ(sequential.p95_ms, 3.8);
  // The miss path is 3.8 / 3.2 = 1.19x the base model: a tail budget of
  // 1.05 rules the plan out, one of 1.2 lets it through.
  EXPECT_TRUE(sequential.feasible);
  options.tail_budget = 1.05;
  EXPECT_FALSE(EvaluatePlan(problem, {{0, 0}}, options).feasible);
  options.tail_budget = 1.2;
  EXPECT_TRUE(EvaluatePlan(problem, {{0, 0}}, options).feasible);
  // Oracle: sample 0 leaves at tap 0 for free (0.8), sample 1 never (3.2).
  EXPECT_DOUBLE_EQ(OracleMeanMs(problem), 2.0);
}

TEST(PlannerTest, ABatchPlanSharesFixedCostsAndBoundsTheBatchsTime) {
  // A plan for batches of 4: per-row segment costs a row pays when it
  // passes a segment, fixed costs every row of the batch shares while any
  // row runs the segment. Four samples; two hit at tap 0.
  PlanningProblem problem;
  problem.stage_ms = {1.0, 3.0};
  problem.whole_ms = 3.2;
  problem.batch = 4;
  problem.measured_segment_ms = {{{0, 1}, 0.5}, {{1, 2}, 2.0}, {{0, 2}, 3.2}};
  problem.segment_shared_ms = {{{0, 1}, 0.3}, {{1, 2}, 0.5}};
  problem.base_classes = {4, 5, 6, 7};
  problem.caches = {TapZeroCache("v", 0.1, 100, {0.9f, 0.9f, 0.1f, 0.1f}, {4, 5, 6, 7})};
  ASSERT_TRUE(ValidateProblem(problem).ok());
  EXPECT_DOUBLE_EQ(SegmentRowMs(problem, 0, 1), 0.8);
  EXPECT_DOUBLE_EQ(SegmentRowMs(problem, 0, 2), 3.2);  // The whole model, whole.
  PlanOptions options;
  options.epsilon = 0.99;
  options.tail_budget = 0;
  PlanEvaluation e = EvaluatePlan(problem, {{0, 0}}, options);
  // Segment 0 always runs (0.3); segment 1 unless all 4 rows hit, which
  // with half of them hitting is 1/16 of batches: 0.5 x 15/16.
  const double shared = 0.3 + 0.5 * (1 - std::pow(0.5, 4));
  EXPECT_DOUBLE_EQ(e.exit_ms[0], 0.5 + 0.1 + shared);
  EXPECT_DOUBLE_EQ(e.exit_ms[1], 0.5 + 0.1 + 2.0 + shared);
  EXPECT_DOUBLE_EQ(e.mean_ms, 1.6 + shared);
  // A batch in which no row hits pays both fixed parts in full.
  EXPECT_DOUBLE_EQ(e.miss_ms, 2.6 + 0.8);
  // The quantiles are a batch's: its mean over 4 rows whose path costs
  // have a standard deviation of 1 ms, so 0.5 ms for the batch.
  EXPECT_DOUBLE_EQ(e.p50_ms, e.mean_ms);
  EXPECT_NEAR(e.p95_ms, e.mean_ms + 1.645 * 0.5, 1e-12);
  EXPECT_NEAR(e.p99_ms, e.mean_ms + 2.326 * 0.5, 1e-12);
  // The tail budget holds that p99 (3.53 ms) against the whole model (3.2).
  options.tail_budget = 1.05;
  EXPECT_FALSE(EvaluatePlan(problem, {{0, 0}}, options).feasible);
  options.tail_budget = 1.15;
  EXPECT_TRUE(EvaluatePlan(problem, {{0, 0}}, options).feasible);
  // The same problem for single requests: no shared costs, per-sample tail.
  problem.batch = 1;
  problem.segment_shared_ms.clear();
  options.tail_budget = 0;
  PlanEvaluation single = EvaluatePlan(problem, {{0, 0}}, options);
  EXPECT_DOUBLE_EQ(single.mean_ms, 1.6);
  EXPECT_DOUBLE_EQ(single.p99_ms, 2.6);
  // Bad batch figures are refused.
  problem.batch = 0;
  EXPECT_ERROR(ValidateProblem(problem), absl::StatusCode::kInvalidArgument, "batch size");
  problem.batch = 4;
  problem.segment_shared_ms = {{{0, 1}, -0.1}};
  EXPECT_ERROR(ValidateProblem(problem), absl::StatusCode::kInvalidArgument,
               "shared segment costs");
}

TEST(PlannerTest, TailBudgetTradesMeanForTheTail) {
  // Over random instances: with a tail budget every plan's predicted p99
  // stays within it, and dropping the budget never makes the mean worse.
  int constrained = 0;
  for (uint32_t seed = 400; seed < 420; ++seed) {
    PlanningProblem problem = RandomProblem(8, 2, 3, 500, seed);
    PlanOptions options;
    options.epsilon = 0.05;
    options.memory_budget_bytes = 20000;
    Plan tight = SearchPlan(problem, options);
    EXPECT_TRUE(tight.evaluation.feasible);
    EXPECT_LE(tight.evaluation.p99_ms, 1.05 * tight.base_ms + 1e-9) << "seed " << seed;
    options.tail_budget = 0;
    Plan loose = SearchPlan(problem, options);
    EXPECT_LE(loose.evaluation.mean_ms, tight.evaluation.mean_ms * 1.01 + 1e-9);
    constrained += loose.evaluation.p99_ms > 1.05 * loose.base_ms;
  }
  // The instances are ones where the budget binds, or this proves little.
  EXPECT_GT(constrained, 5);
}

TEST(PlannerTest, InSituLookupCostsFollowCacheMemory) {
  // One tap, two caches that answer the same samples: a big one (2 MB)
  // with the faster isolated lookup and a small one (10 KB).
  PlanningProblem problem;
  problem.stage_ms = {1.0, 3.0};
  problem.whole_ms = 4.0;
  problem.base_classes = {1, 1, 1, 1};
  const std::vector<float> scores = {0.9f, 0.9f, 0.1f, 0.1f};
  const CandidateCache big = TapZeroCache("big", 0.01, 2000000, scores, {1, 1, 1, 1});
  const CandidateCache small = TapZeroCache("small", 0.02, 10000, scores, {1, 1, 1, 1});
  problem.caches = {big, small};
  // 0.05 ms per lookup plus 0.1 ms per MB on the path.
  problem.lookup_overhead_ms = 0.05;
  problem.lookup_ms_per_mb = 0.1;
  EXPECT_DOUBLE_EQ(PathLookupMs(problem, big), 0.01 + 0.05 + 0.2);
  EXPECT_DOUBLE_EQ(PathLookupMs(problem, small), 0.02 + 0.05 + 0.001);
  PlanOptions options;
  options.epsilon = 0.99;
  options.tail_budget = 0;
  PlanEvaluation e = EvaluatePlan(problem, {{0, 0}}, options);
  // Misses pay the segments plus the whole in-situ lookup.
  EXPECT_DOUBLE_EQ(e.miss_ms, 1.0 + 0.26 + 3.0);
  // Isolated, the big cache looks cheaper; on the path the small one is.
  Plan plan = SearchPlan(problem, options);
  ASSERT_EQ(plan.choices.size(), 1u);
  EXPECT_EQ(problem.caches[plan.choices[0].cache].variant, "small");
  problem.lookup_ms_per_mb = -1;
  EXPECT_FALSE(ValidateProblem(problem).ok());
}

TEST(PlannerTest, ParallelCostIsCalibratedFromTimedModes) {
  // The two-stage problem of ReplayFollowsTheCostModel: parallel prices a
  // hit at 1.3 ms and a miss at 3.3, sequential at 1.3 and 3.8.
  PlanningProblem problem;
  problem.stage_ms = {1.0, 3.0};
  problem.whole_ms = 3.2;
  problem.cut_overhead_ms = 0.1;
  problem.base_classes = {4, 5};
  problem.caches = {TapZeroCache("v", 0.5, 100, {0.9f, 0.1f}, {4, 4})};
  PlanOptions options;
  options.epsilon = 0.99;
  options.tail_budget = 0;
  Plan plan;
  plan.choices = {{0, 0}};
  plan.base_ms = 3.2;
  // Timed at half the build's speed (base 6.4 ms): one hit and three misses,
  // parallel 0.8 ms slower than sequential per request (0.4 on the build's
  // scale), where the pricing says (0 - 3 x 0.5) / 4 = -0.375.
  ModeTiming timing;
  timing.base_ms = 6.4;
  timing.sequential_ms = 6.0;
  timing.parallel_ms = 6.8;
  timing.exit_slot = {0, 1, 1, 1};
  ASSERT_TRUE(CalibrateParallelCost(plan, options, timing, &problem).ok());
  EXPECT_NEAR(problem.parallel_request_ms, 0.4 + 0.375, 1e-12);
  // Parallel pricing now carries it per request; sequential is unchanged.
  options.mode = LookupMode::kParallel;
  PlanEvaluation parallel = EvaluatePlan(problem, plan.choices, options);
  EXPECT_NEAR(parallel.mean_ms, (1.3 + 3.3) / 2 + 0.775, 1e-12);
  EXPECT_EQ(parallel.exit_ms.size(), 2u);
  options.mode = LookupMode::kSequential;
  EXPECT_DOUBLE_EQ(EvaluatePlan(problem, plan.choices, options).mean_ms, (1.3 + 3.8) / 2);
  // Exits outside the plan, or nothing timed, are errors.
  timing.exit_slot = {2};
  EXPECT_FALSE(CalibrateParallelCost(plan, options, timing, &problem).ok());
  timing.exit_slot = {};
  EXPECT_FALSE(CalibrateParallelCost(plan, options, timing, &problem).ok());
  problem.parallel_request_ms = std::nan("");
  EXPECT_FALSE(ValidateProblem(problem).ok());
}

// The bit-mask replay against a plain per-sample replay written from the
// cost model's definition.
TEST(PlannerTest, BitMaskReplayEqualsPerSampleReplay) {
  for (uint32_t seed = 300; seed < 310; ++seed) {
    PlanningProblem problem = RandomProblem(7, 2, 3, 130 + seed, seed);
    std::mt19937 rng(seed);
    std::vector<PlanChoice> choices;
    for (int tap = 0; tap < 7; ++tap) {
      if (rng() % 2) choices.push_back({tap * 2 + static_cast<int>(rng() % 2), static_cast<int>(rng() % 3)});
    }
    for (LookupMode mode : {LookupMode::kParallel, LookupMode::kSequential}) {
      PlanOptions options;
      options.mode = mode;
      PlanEvaluation e = EvaluatePlan(problem, choices, options);
      double total = 0;
      int64_t false_answers = 0;
      const size_t n = problem.base_classes.size();
      for (size_t i = 0; i < n; ++i) {
        double t = 0;
        int first = 0;
        bool left = false;
        for (size_t j = 0; j < choices.size() && !left; ++j) {
          const CandidateCache& c = problem.caches[choices[j].cache];
          t += SegmentMs(problem, first, c.tap + 1);
          first = c.tap + 1;
          if (c.scores[i] >= c.thresholds[choices[j].threshold]) {
            t += c.lookup_ms;
            false_answers += c.classes[i] != problem.base_classes[i];
            left = true;
          } else {
            int next_end = j + 1 < choices.size() ? problem.caches[choices[j + 1].cache].tap + 1
                                                  : static_cast<int>(problem.stage_ms.size());
            double next = SegmentMs(problem, first, next_end);
            t += mode == LookupMode::kSequential ? c.lookup_ms
                                                 : std::max(0.0, c.lookup_ms - next);
          }
        }
        if (!left) {
          t += choices.empty() ? problem.whole_ms
                               : SegmentMs(problem, first, static_cast<int>(problem.stage_ms.size()));
        }
        total += t;
      }
      EXPECT_NEAR(e.mean_ms, total / n, 1e-9) << "seed " << seed;
      EXPECT_EQ(e.false_answers, false_answers) << "seed " << seed;
    }
  }
}

TEST(PlannerTest, FlagParsersRejectBadValues) {
  EXPECT_EQ(*ParseByteSize("4MB"), 4000000);
  EXPECT_EQ(*ParseByteSize("4MiB"), 4 << 20);
  EXPECT_EQ(*ParseByteSize("512k"), 512000);
  EXPECT_EQ(*ParseByteSize("1000"), 1000);
  EXPECT_EQ(*ParseByteSize("1.5KiB"), 1536);
  for (const char* bad : {"", "MB", "-4MB", "4XB", "4 M B", "nan"}) {
    EXPECT_ERROR(ParseByteSize(bad).status(), absl::StatusCode::kInvalidArgument,
                 "is not a size");
  }
  EXPECT_EQ(*ParseLookupMode("parallel"), LookupMode::kParallel);
  EXPECT_ERROR(ParseLookupMode("fast").status(), absl::StatusCode::kInvalidArgument,
               "parallel or sequential");
}

TEST(PlannerTest, ValidateProblemNamesTheProblem) {
  PlanningProblem problem = RandomProblem(4, 1, 1, 50, 3);
  problem.caches[2].scores.pop_back();
  EXPECT_ERROR(ValidateProblem(problem), absl::StatusCode::kInvalidArgument,
               "cache v0 at tap 2: has 49 records, the split has 50");
  problem = RandomProblem(4, 1, 1, 50, 3);
  problem.caches[0].thresholds.clear();
  EXPECT_ERROR(ValidateProblem(problem), absl::StatusCode::kInvalidArgument,
               "no candidate thresholds");
  problem.base_classes.clear();
  EXPECT_ERROR(ValidateProblem(problem), absl::StatusCode::kInvalidArgument, "empty");
}

}  // namespace
}  // namespace gati
