// The engine's request path, feedback, monitor, exact-match cache and hot
// swap on a fake model (no LibTorch). The concurrency tests also run under
// ThreadSanitizer (`make tsan`).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <chrono>
#include <thread>

#include "runtime/engine_internal.h"
#include "runtime/runtime_testutil.h"

namespace gati {
namespace {

using testing::FakeBaseClass;
using testing::FakeCacheWeights;
using testing::FakeInputs;
using testing::FakeParts;
using testing::kAlwaysHit;
using testing::kFakeClasses;
using testing::FakeClock;
using testing::kNeverHit;
using testing::TimedFakeParts;

// Options for tests of the answer path with deliberately wrong caches, which
// the live monitor would otherwise switch off, and with thresholds that
// recalibration (asynchronous) would otherwise move.
EngineOptions MonitorOff() {
  EngineOptions options;
  options.epsilon = 0.999;
  options.live_tightening = false;
  options.recalibration = false;
  options.false_hit_cooldown_requests = 0;
  return options;
}

std::unique_ptr<Engine> MakeEngine(const std::vector<CacheWeights>& caches,
                                   EngineOptions options = {}) {
  auto engine = runtime::CreateEngine(FakeParts(caches), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

InferResult MustInfer(Engine& engine, const std::vector<float>& input,
                      const InferOptions& options = {}) {
  auto result = engine.Infer(input.data(), static_cast<int64_t>(input.size()), options);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : InferResult{};
}

// Tap 2 always hits and is always wrong (a shift the caches were not
// calibrated for); tap 6 always hits and is right.
std::vector<CacheWeights> WrongTapThenRightTap() {
  return {FakeCacheWeights(2, 1, kAlwaysHit), FakeCacheWeights(6, 0, kAlwaysHit)};
}

// The learner on, with rounds only on UpdateNow.
void LearnOnlyOnUpdateNow(EngineOptions* options) {
  options->learner.enabled = true;
  options->learner.min_rows = 100;
  options->learner.trigger_rows = int64_t{1} << 40;
  options->learner.trigger_seconds = 1e9;
}

TEST(EngineCoreTest, HitAnswersWithThePredictorsClass) {
  // Tap 3's predictor is deliberately off by one class and always hits.
  auto engine = MakeEngine({FakeCacheWeights(3, /*shift=*/1, kAlwaysHit)}, MonitorOff());
  for (const auto& input : FakeInputs(50, 1)) {
    InferResult result = MustInfer(*engine, input, {.want_scores = true});
    EXPECT_TRUE(result.cache_hit);
    EXPECT_EQ(result.exit_tap, 3);
    EXPECT_EQ(result.label, (FakeBaseClass(input) + 1) % kFakeClasses);
    ASSERT_EQ(result.scores.size(), static_cast<size_t>(kFakeClasses));
    EXPECT_EQ(std::max_element(result.scores.begin(), result.scores.end()) -
                  result.scores.begin(),
              result.label);
  }
}

TEST(EngineCoreTest, MissAnswersWithTheBaseModelsClass) {
  auto engine = MakeEngine({FakeCacheWeights(0, 1, kNeverHit), FakeCacheWeights(4, 2, kNeverHit)});
  for (const auto& input : FakeInputs(50, 2)) {
    InferResult result = MustInfer(*engine, input);
    EXPECT_FALSE(result.cache_hit);
    EXPECT_EQ(result.exit_tap, kBaseExit);
    EXPECT_EQ(result.label, FakeBaseClass(input));
  }
  EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.base_answers, 50);
  EXPECT_EQ(stats.taps[0].lookups, 50);
  EXPECT_EQ(stats.taps[1].hits, 0);
}

TEST(EngineCoreTest, FirstHitInTapOrderAnswers) {
  // Both taps always hit; tap 1 must win although tap 5 hits too.
  auto engine = MakeEngine({FakeCacheWeights(1, 1, kAlwaysHit), FakeCacheWeights(5, 2, kAlwaysHit)},
                           MonitorOff());
  for (const auto& input : FakeInputs(30, 3)) {
    EXPECT_EQ(MustInfer(*engine, input).exit_tap, 1);
  }
}

TEST(EngineCoreTest, ParallelAndSequentialAnswerIdentically) {
  // Selectors that hit on confident inputs only, at different margins, and
  // predictors that differ, so every exit shows in the answer.
  std::vector<CacheWeights> caches = {FakeCacheWeights(0, 1, 0.85f),
                                      FakeCacheWeights(2, 2, 0.6f),
                                      FakeCacheWeights(7, 0, 0.3f)};
  EngineOptions sequential = MonitorOff();
  sequential.mode = LookupMode::kSequential;
  sequential.feedback_rate = 0.3;
  auto b = MakeEngine(caches, sequential);
  // Parallel with every lookup handed to the executor (threshold 0), with
  // the fake's tiny lookups inline on the worker (the default), and without
  // spinning (every wait sleeps).
  for (const auto& [inline_us, spin_us] :
       std::vector<std::pair<double, double>>{{0, 100}, {20, 100}, {0, 0}}) {
    SCOPED_TRACE(::testing::Message() << "inline_lookup_us " << inline_us << ", spin_us " << spin_us);
    EngineOptions parallel = sequential;
    parallel.mode = LookupMode::kParallel;
    parallel.lookup_threads = 2;
    parallel.inline_lookup_us = inline_us;
    parallel.spin_us = spin_us;
    auto a = MakeEngine(caches, parallel);
    std::map<int, int> exits;
    for (const auto& input : FakeInputs(400, 4)) {
      InferResult x = MustInfer(*a, input);
      InferResult y = MustInfer(*b, input);
      EXPECT_EQ(x.label, y.label);
      EXPECT_EQ(x.exit_tap, y.exit_tap);
      ++exits[x.exit_tap];
    }
    // The inputs exercise every exit, or the comparison proves little.
    EXPECT_EQ(exits.size(), 4u);
    for (const auto& [tap, n] : exits) EXPECT_GT(n, 10) << "tap " << tap;
    a->WaitForFeedback();
    // Every looked-up tap counted its lookup, on whichever thread it ran.
    EXPECT_GT(a->Stats().taps[2].lookups, 0);
  }
}

// An engine over FakeParts(caches) and its runner, whose rows_run() the
// batch tests read (the engine owns it).
std::unique_ptr<Engine> MakeEngineWithRunner(const std::vector<CacheWeights>& caches,
                                             const EngineOptions& options,
                                             const testing::FakeRunner** runner) {
  runtime::EngineParts parts = FakeParts(caches);
  *runner = static_cast<const testing::FakeRunner*>(parts.runner.get());
  auto engine = runtime::CreateEngine(std::move(parts), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

// Rows of `inputs` as InferBatch takes them.
std::vector<const float*> RowPointers(const std::vector<std::vector<float>>& inputs,
                                      size_t begin, size_t end) {
  std::vector<const float*> rows;
  for (size_t i = begin; i < end; ++i) rows.push_back(inputs[i].data());
  return rows;
}

TEST(EngineCoreTest, ABatchAnswersEachRowAsInferDoesAloneAndHitsLeaveTheBatch) {
  // The caches of ParallelAndSequentialAnswerIdentically: every exit shows.
  std::vector<CacheWeights> caches = {FakeCacheWeights(0, 1, 0.85f),
                                      FakeCacheWeights(2, 2, 0.6f),
                                      FakeCacheWeights(7, 0, 0.3f)};
  const std::vector<std::vector<float>> inputs = FakeInputs(400, 4);
  for (LookupMode mode : {LookupMode::kSequential, LookupMode::kParallel}) {
    SCOPED_TRACE(LookupModeName(mode));
    EngineOptions options = MonitorOff();
    options.mode = mode;
    options.feedback_rate = 0;
    // Lookups inline in parallel mode too (not decided by a timing at
    // start-up), so that a single request stops at the tap that answers.
    options.inline_lookup_us = 1e9;
    auto alone = MakeEngine(caches, options);
    const testing::FakeRunner* runner = nullptr;
    auto batched = MakeEngineWithRunner(caches, options, &runner);
    const int64_t warm_rows = runner->rows_run();  // The engine's start-up runs.
    std::map<int, int> exits;
    int64_t expected_rows = 0;  // Rows each segment should run on.
    size_t begin = 0;
    for (size_t size : {size_t{1}, size_t{7}, size_t{32}, size_t{360}}) {
      const std::vector<const float*> rows = RowPointers(inputs, begin, begin + size);
      auto results = batched->InferBatch(rows.data(), static_cast<int64_t>(size), kFakeClasses,
                                         {/*want_scores=*/true});
      ASSERT_EQ(results.size(), size);
      for (size_t j = 0; j < size; ++j) {
        ASSERT_TRUE(results[j].ok()) << results[j].status();
        InferResult want = MustInfer(*alone, inputs[begin + j], {/*want_scores=*/true});
        EXPECT_EQ(results[j]->label, want.label) << "row " << j;
        EXPECT_EQ(results[j]->exit_tap, want.exit_tap) << "row " << j;
        EXPECT_EQ(results[j]->cache_hit, want.cache_hit) << "row " << j;
        EXPECT_EQ(results[j]->scores, want.scores) << "row " << j;
        ++exits[want.exit_tap];
        // A row that exits at slot s ran segments 0..s; a miss ran all 4.
        const int slot = want.exit_tap == 0 ? 0 : want.exit_tap == 2 ? 1 : want.exit_tap == 7 ? 2 : 3;
        expected_rows += slot + 1;
      }
      begin += size;
    }
    EXPECT_EQ(exits.size(), 4u);
    for (const auto& [tap, n] : exits) EXPECT_GT(n, 10) << "tap " << tap;
    // The rows that hit left the batch: later segments ran on fewer rows.
    EXPECT_EQ(runner->rows_run() - warm_rows, expected_rows);
    EXPECT_LT(expected_rows, 400 * 4);
    const EngineStats stats = batched->Stats();
    EXPECT_EQ(stats.requests, 400);
    EXPECT_EQ(stats.cache_hits + stats.base_answers, 400);
  }
}

TEST(EngineCoreTest, ABatchHandsEachRowOverOnceAndAHitBeforeTheLaterSegmentsRun) {
  std::vector<CacheWeights> caches = {FakeCacheWeights(0, 1, 0.85f),
                                      FakeCacheWeights(2, 2, 0.6f)};
  EngineOptions options = MonitorOff();
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 0;
  const testing::FakeRunner* runner = nullptr;
  auto engine = MakeEngineWithRunner(caches, options, &runner);
  std::vector<std::vector<float>> inputs = FakeInputs(64, 12);
  inputs[5][0] = NAN;  // A bad row is handed over too.
  const std::vector<const float*> rows = RowPointers(inputs, 0, 64);
  const int64_t before = runner->rows_run();
  std::vector<int> calls(64, 0);
  std::vector<int64_t> rows_run_then(64, -1);
  std::vector<int> exit_then(64, -2);
  auto results = engine->InferBatch(
      rows.data(), 64, kFakeClasses, {},
      [&](int64_t row, const absl::StatusOr<InferResult>& result) {
        ++calls[row];
        rows_run_then[row] = runner->rows_run() - before;
        exit_then[row] = result.ok() ? result->exit_tap : -3;
      });
  int tap0 = 0;
  for (int j = 0; j < 64; ++j) {
    EXPECT_EQ(calls[j], 1) << "row " << j;
    EXPECT_EQ(exit_then[j], results[j].ok() ? results[j]->exit_tap : -3) << "row " << j;
    if (results[j].ok() && results[j]->exit_tap == 0) {
      ++tap0;
      // Handed over when only segment 0 had run, on the 63 valid rows.
      EXPECT_EQ(rows_run_then[j], 63) << "row " << j;
    }
  }
  EXPECT_GT(tap0, 5);
  EXPECT_FALSE(results[5].ok());
}

TEST(EngineCoreTest, ARowsInputIsNotReadAfterItIsHandedOver) {
  // A caller may free a row's input once the row is handed over: here the
  // callback overwrites it with NaN. The exact cache and the feedback of
  // every row (all sampled) must have been fed from the input as it was.
  std::vector<CacheWeights> caches = {FakeCacheWeights(0, 0, 0.85f),
                                      FakeCacheWeights(2, 0, 0.6f)};
  EngineOptions options = MonitorOff();
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 1.0;
  options.exact_cache_bytes = 1 << 20;
  auto engine = MakeEngine(caches, options);
  const std::vector<std::vector<float>> original = FakeInputs(32, 13);
  std::vector<std::vector<float>> inputs = original;
  const std::vector<const float*> rows = RowPointers(inputs, 0, 32);
  int calls = 0;
  auto first = engine->InferBatch(rows.data(), 32, kFakeClasses, {},
                                  [&](int64_t row, const absl::StatusOr<InferResult>&) {
                                    ++calls;
                                    std::fill(inputs[row].begin(), inputs[row].end(), NAN);
                                  });
  EXPECT_EQ(calls, 32);
  engine->WaitForFeedback();
  EXPECT_EQ(engine->Stats().feedback_requests, 32);
  EXPECT_EQ(engine->Stats().live_disagreements, 0);  // Both taps agree here.
  // The same inputs again: every row an exact hit, each handed over too.
  const std::vector<const float*> again = RowPointers(original, 0, 32);
  calls = 0;
  auto second = engine->InferBatch(again.data(), 32, kFakeClasses, {},
                                   [&](int64_t, const absl::StatusOr<InferResult>&) { ++calls; });
  EXPECT_EQ(calls, 32);
  for (int j = 0; j < 32; ++j) {
    ASSERT_TRUE(first[j].ok() && second[j].ok()) << "row " << j;
    EXPECT_TRUE(second[j]->exact_hit) << "row " << j;
    EXPECT_EQ(second[j]->label, first[j]->label) << "row " << j;
    EXPECT_EQ(second[j]->label, testing::FakeBaseClass(original[j])) << "row " << j;
  }
}

TEST(EngineCoreTest, ABatchRowWithABadValueFailsAloneAndTheOthersAreAnswered) {
  auto engine = MakeEngine({FakeCacheWeights(0, 0, 0.5f)}, MonitorOff());
  std::vector<std::vector<float>> inputs = FakeInputs(5, 8);
  inputs[2][1] = NAN;
  const std::vector<const float*> rows = RowPointers(inputs, 0, 5);
  auto results = engine->InferBatch(rows.data(), 5, kFakeClasses);
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(results[2].status().message().find("value 1"), std::string::npos)
      << results[2].status();
  for (int j : {0, 1, 3, 4}) {
    ASSERT_TRUE(results[j].ok()) << results[j].status();
    EXPECT_EQ(results[j]->label, MustInfer(*engine, inputs[j]).label);
  }
  // A wrong row size fails every row.
  auto wrong = engine->InferBatch(rows.data(), 2, kFakeClasses - 1);
  ASSERT_EQ(wrong.size(), 2u);
  EXPECT_FALSE(wrong[0].ok());
  EXPECT_FALSE(wrong[1].ok());
  EXPECT_EQ(engine->Stats().errors, 3);
}

TEST(EngineCoreTest, ABatchsSampledRowsFeedBackLikeSingleRequests) {
  // Tap 0 hits confident rows, tap 1 is wrong on every row it answers: the
  // sampled rows' checks must find tap 1's false hits and none at tap 0.
  EngineOptions options = MonitorOff();
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 1.0;
  auto engine = MakeEngine({FakeCacheWeights(0, 0, 0.6f), FakeCacheWeights(3, 1, kAlwaysHit)},
                           options);
  const std::vector<std::vector<float>> inputs = FakeInputs(64, 9);
  const std::vector<const float*> rows = RowPointers(inputs, 0, 64);
  auto results = engine->InferBatch(rows.data(), 64, kFakeClasses);
  int tap0 = 0, tap3 = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok());
    tap0 += result->exit_tap == 0;
    tap3 += result->exit_tap == 3;
  }
  ASSERT_GT(tap0, 0);
  ASSERT_GT(tap3, 0);
  engine->WaitForFeedback();
  const EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.feedback_requests, 64);
  EXPECT_EQ(stats.live_checked, 64);
  EXPECT_EQ(stats.taps[0].feedback_hits, tap0);
  EXPECT_EQ(stats.taps[0].feedback_false_hits, 0);
  EXPECT_EQ(stats.taps[1].feedback_hits, tap3);
  EXPECT_EQ(stats.taps[1].feedback_false_hits, tap3);
  EXPECT_EQ(stats.live_disagreements, tap3);
}

TEST(EngineCoreTest, ABatchThatMeetsACoolDownIsCooledWhole) {
  // Tap 2 always hits and is always wrong; every answer is checked.
  EngineOptions options = MonitorOff();
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 1.0;
  options.false_hit_cooldown_requests = 10;
  auto engine = MakeEngine({FakeCacheWeights(2, 1, kAlwaysHit)}, options);
  const std::vector<std::vector<float>> inputs = FakeInputs(20, 11);
  const std::vector<const float*> first = RowPointers(inputs, 0, 4);
  for (const auto& result : engine->InferBatch(first.data(), 4, kFakeClasses)) {
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->exit_tap, 2);
  }
  engine->WaitForFeedback();  // The checks find the false hits: cool-down.
  ASSERT_GE(engine->Stats().false_hit_cooldowns, 1);
  // A batch longer than the cool-down: judged at its first row, it is
  // answered whole by the base model.
  const std::vector<const float*> second = RowPointers(inputs, 4, 20);
  auto results = engine->InferBatch(second.data(), 16, kFakeClasses);
  for (size_t j = 0; j < results.size(); ++j) {
    ASSERT_TRUE(results[j].ok());
    EXPECT_EQ(results[j]->exit_tap, kBaseExit) << "row " << j;
    EXPECT_EQ(results[j]->label, testing::FakeBaseClass(inputs[4 + j]));
  }
}

TEST(EngineCoreTest, ABatchOfTheBaseModelAloneAnswersWithItsClasses) {
  // Auto mode without taps serves the base model alone.
  auto engine = MakeEngine({});
  ASSERT_TRUE(engine->serving_base());
  const std::vector<std::vector<float>> inputs = FakeInputs(20, 10);
  const std::vector<const float*> rows = RowPointers(inputs, 0, 20);
  auto results = engine->InferBatch(rows.data(), 20, kFakeClasses, {/*want_scores=*/true});
  for (size_t j = 0; j < 20; ++j) {
    ASSERT_TRUE(results[j].ok());
    EXPECT_EQ(results[j]->label, testing::FakeBaseClass(inputs[j]));
    EXPECT_EQ(results[j]->exit_tap, kBaseExit);
    EXPECT_EQ(results[j]->scores.size(), static_cast<size_t>(kFakeClasses));
  }
  EXPECT_EQ(engine->Stats().base_answers, 20);
}

TEST(EngineCoreTest, NoTapsServesLikeTheBaseModel) {
  auto engine = MakeEngine({});
  for (const auto& input : FakeInputs(20, 5)) {
    InferResult result = MustInfer(*engine, input);
    auto base = engine->InferBase(input.data(), kFakeClasses);
    ASSERT_TRUE(base.ok());
    EXPECT_EQ(result.label, base->label);
    EXPECT_EQ(result.exit_tap, kBaseExit);
  }
}

TEST(EngineCoreTest, BadInputIsAnErrorAndTheEngineKeepsServing) {
  auto engine = MakeEngine({FakeCacheWeights(0, 0, 0.5f)});
  std::vector<float> short_input(kFakeClasses - 1, 0.5f);
  auto wrong_size = engine->Infer(short_input.data(), short_input.size());
  EXPECT_EQ(wrong_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_size.status().message().find("takes 4"), std::string::npos);
  std::vector<float> nan_input = {0.1f, NAN, 0.2f, 0.3f};
  auto nan = engine->Infer(nan_input.data(), nan_input.size());
  EXPECT_EQ(nan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(nan.status().message().find("value 1"), std::string::npos);
  std::vector<float> inf_input = {0.1f, 0.2f, INFINITY, 0.3f};
  EXPECT_FALSE(engine->InferBase(inf_input.data(), inf_input.size()).ok());
  EXPECT_FALSE(engine->Infer(nullptr, kFakeClasses).ok());
  std::vector<float> good = {0.1f, 0.9f, 0.2f, 0.3f};
  EXPECT_EQ(MustInfer(*engine, good).label, 1);
  EXPECT_EQ(engine->Stats().errors, 3);
}

TEST(EngineCoreTest, RejectsBadOptions) {
  EngineOptions options;
  options.feedback_rate = 1.5;
  auto engine = runtime::CreateEngine(FakeParts({}), options);
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(engine.status().message().find("feedback_rate"), std::string::npos);
  options = {};
  options.workers = 0;
  EXPECT_FALSE(runtime::CreateEngine(FakeParts({}), options).ok());
}

TEST(EngineCoreTest, MonitorSwitchesOffATapFedWithFalseHits) {
  // Tap 2 always hits and is always wrong; every hit is checked. In
  // parallel mode a request's check finishes on its worker before that
  // worker takes the next request, so the monitor lags by one per worker.
  EngineOptions options;
  options.mode = LookupMode::kParallel;
  options.feedback_rate = 1.0;
  options.epsilon = 0.01;
  options.live_tightening = false;  // The per-tap monitor alone.
  options.false_hit_cooldown_requests = 0;
  auto engine = MakeEngine(WrongTapThenRightTap(), options);
  auto inputs = FakeInputs(80, 6);
  for (const auto& input : inputs) MustInfer(*engine, input);
  engine->WaitForFeedback();
  EngineStats stats = engine->Stats();
  EXPECT_TRUE(stats.taps[0].disabled);
  // Judged after 50 checks; requests that started while the last checks
  // were still running (one per worker) may hit too.
  EXPECT_GE(stats.taps[0].hits, options.monitor_min_checks);
  EXPECT_LE(stats.taps[0].hits, options.monitor_min_checks + options.workers);
  EXPECT_EQ(stats.taps[0].times_disabled, 1);
  EXPECT_GT(stats.taps[0].live_false_hit_lower, 0.01);
  EXPECT_FALSE(stats.taps[1].disabled);
  // From now on the switched-off tap answers nothing; tap 6 (right) does.
  for (const auto& input : FakeInputs(20, 7)) {
    InferResult result = MustInfer(*engine, input);
    EXPECT_EQ(result.exit_tap, 6);
    EXPECT_EQ(result.label, FakeBaseClass(input));
  }
}

// A checked false hit sends the next false_hit_cooldown_requests requests
// to the whole model: with every answer checked before the next request, a
// tap that is always wrong answers once per cool-down.
TEST(EngineCoreTest, AFalseHitCoolsEveryTapDown) {
  for (LookupMode mode : {LookupMode::kSequential, LookupMode::kParallel}) {
    EngineOptions options = MonitorOff();
    options.mode = mode;
    options.feedback_rate = 1.0;
    options.false_hit_cooldown_requests = 100;
    auto engine = MakeEngine(WrongTapThenRightTap(), options);
    int wrong = 0;
    int base = 0;
    for (const auto& input : FakeInputs(505, 15)) {
      InferResult result = MustInfer(*engine, input);
      wrong += result.label != FakeBaseClass(input);
      base += result.exit_tap == kBaseExit;
      engine->WaitForFeedback();
    }
    // Requests 1, 102, 203, 304, 405 hit tap 2 wrongly; the 100 after each
    // go to the whole model.
    EngineStats stats = engine->Stats();
    EXPECT_EQ(wrong, 5);
    EXPECT_EQ(base, 500);
    EXPECT_EQ(stats.false_hit_cooldowns, 5);
    // The live sequence tests the policy's own answers: the cool-downs'
    // are left out.
    EXPECT_EQ(stats.live_checked, 5);
    EXPECT_EQ(stats.live_disagreements, 5);
  }
}

// The live bound on all answers, without recalibration: a tap that starts
// answering wrongly (a shift the caches were not calibrated for) is
// switched off within a few sampled answers, long before the per-tap
// monitor's 50 checks; then the bound certifies the remaining policy.
TEST(EngineCoreTest, LiveBoundSwitchesOffTheTapThatBreaksIt) {
  for (LookupMode mode : {LookupMode::kSequential, LookupMode::kParallel}) {
    EngineOptions options;
    options.mode = mode;
    options.feedback_rate = 1.0;
    options.answer_epsilon = 0.01;
    options.recalibration = false;
    options.false_hit_cooldown_requests = 0;  // The live bound's own mechanics.
    auto engine = MakeEngine(WrongTapThenRightTap(), options);
    int wrong = 0;
    for (const auto& input : FakeInputs(700, 8)) {
      InferResult result = MustInfer(*engine, input);
      wrong += result.label != FakeBaseClass(input);
      engine->WaitForFeedback();  // Each check lands before the next request.
    }
    EngineStats stats = engine->Stats();
    EXPECT_EQ(stats.answer_epsilon, 0.01);
    EXPECT_EQ(stats.live_tightenings, 1);
    EXPECT_TRUE(stats.taps[0].disabled);
    EXPECT_FALSE(stats.taps[1].disabled);
    EXPECT_LE(wrong, 3) << "wrong answers before the bound acted";
    EXPECT_EQ(stats.taps[0].times_disabled, 0) << "the per-tap monitor did not need to act";
    // Since the tightening every sampled answer agreed: the sequence
    // started over and now certifies the bound.
    EXPECT_EQ(stats.live_disagreements, 0);
    EXPECT_EQ(stats.live_checked, 700 - wrong);
    EXPECT_LT(stats.live_disagreement_upper, 0.01);
  }
}

// Checks land after their answers; those of answers given before a
// restart belong to the old policy and must not count in the new sequence
// (one stale false hit would already look like a breach).
TEST(EngineCoreTest, LiveBoundDropsChecksOfAnswersBeforeARestart) {
  EngineOptions options;
  options.mode = LookupMode::kParallel;
  options.feedback_rate = 1.0;
  options.answer_epsilon = 0.01;
  options.recalibration = false;
  auto engine = MakeEngine(WrongTapThenRightTap(), options);
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c) {
    callers.emplace_back([&, c] {
      for (const auto& input : FakeInputs(200, 20 + c)) MustInfer(*engine, input);
    });
  }
  for (auto& caller : callers) caller.join();
  engine->WaitForFeedback();
  EngineStats stats = engine->Stats();
  EXPECT_TRUE(stats.taps[0].disabled);
  EXPECT_EQ(stats.live_tightenings, 1);
  EXPECT_EQ(stats.live_disagreements, 0) << "a check of an answer from before the restart counted";
}

// Feedback where the bound is in doubt: after the bound switched a tap
// off, requests are sampled at the higher rate until it certifies the
// remaining policy, then at the base rate again.
TEST(EngineCoreTest, FeedbackRisesWhileTheLiveBoundIsInDoubt) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 0.05;
  options.feedback_rate_in_doubt = 0.5;
  options.answer_epsilon = 0.01;
  options.recalibration = false;
  auto engine = MakeEngine(WrongTapThenRightTap(), options);
  bool doubted = false;
  for (const auto& input : FakeInputs(3000, 13)) {
    MustInfer(*engine, input);
    engine->WaitForFeedback();
    doubted = doubted || engine->Stats().feedback_in_doubt;
  }
  EngineStats stats = engine->Stats();
  EXPECT_TRUE(doubted);
  EXPECT_EQ(stats.live_tightenings, 1);
  EXPECT_TRUE(stats.taps[0].disabled);
  EXPECT_FALSE(stats.feedback_in_doubt) << "certified again by the end";
  EXPECT_LT(stats.live_disagreement_upper, 0.01);
  // About 540 boosted checks certify the bound; the rest at 5 %.
  EXPECT_GT(stats.feedback_boosted_requests, 450);
  EXPECT_LT(stats.feedback_boosted_requests, 700);
  EXPECT_LT(stats.feedback_requests, stats.feedback_boosted_requests + 0.1 * 3000);
}

TEST(EngineCoreTest, AValidatedUpdateStartsTheLiveBoundOver) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 1.0;
  options.answer_epsilon = 0.01;
  options.recalibration = false;
  options.epsilon = 0.05;
  options.false_hit_cooldown_requests = 0;
  LearnOnlyOnUpdateNow(&options);
  auto engine = MakeEngine(WrongTapThenRightTap(), options);
  for (const auto& input : FakeInputs(300, 12)) {
    MustInfer(*engine, input);
    engine->WaitForFeedback();
  }
  EngineStats before = engine->Stats();
  ASSERT_EQ(before.live_tightenings, 1);
  ASSERT_GT(before.live_checked, 250);
  // Tap 6 (right) passes the gate; tap 2 (always wrong) cannot.
  auto installed = engine->UpdateNow();
  ASSERT_TRUE(installed.ok()) << installed.status();
  ASSERT_EQ(*installed, 1);
  EngineStats after = engine->Stats();
  EXPECT_EQ(after.live_checked, 0) << "the answers after an update come from another policy";
  EXPECT_EQ(after.live_disagreement_upper, 1.0);
  EXPECT_TRUE(after.taps[0].disabled);
  EXPECT_EQ(after.taps[1].updates_accepted, 1);
}

// With recalibration (the default), a breach withdraws every threshold:
// the whole model answers while sampled requests, cut on a worker, fill the
// window; once it certifies a policy (the wrong tap off, the right one on)
// the caches answer again.
TEST(EngineCoreTest, LiveBoundWithdrawsThresholdsUntilTheWindowCertifiesNewOnes) {
  for (LookupMode mode : {LookupMode::kSequential, LookupMode::kParallel}) {
    EngineOptions options;
    options.mode = mode;
    options.feedback_rate = 1.0;
    options.answer_epsilon = 0.01;
    auto engine = MakeEngine(WrongTapThenRightTap(), options);
    int wrong = 0;
    int base_answers_withdrawn = 0;
    int withdrawn_requests = 0;
    std::vector<int> exits;
    for (const auto& input : FakeInputs(1200, 8)) {
      InferResult result = MustInfer(*engine, input);
      wrong += result.label != FakeBaseClass(input);
      exits.push_back(result.exit_tap);
      engine->WaitForFeedback();
      if (engine->Stats().threshold_source == "none") {
        ++withdrawn_requests;
        base_answers_withdrawn += result.exit_tap == kBaseExit;
      }
    }
    EngineStats stats = engine->Stats();
    EXPECT_EQ(stats.live_tightenings, 1);
    EXPECT_LE(wrong, 3) << "wrong answers before the bound acted";
    // Two chains at 0.95 / 2 each: 368 clean samples certify the first;
    // recalibration runs every 50.
    EXPECT_GE(withdrawn_requests, 368);
    EXPECT_LE(withdrawn_requests, 450);
    EXPECT_GE(base_answers_withdrawn, withdrawn_requests - 1);
    EXPECT_EQ(stats.threshold_source, "live");
    EXPECT_GT(stats.taps[0].threshold, 1.0f) << "the wrong tap stays off";
    EXPECT_LE(stats.taps[1].threshold, 1.0f);
    EXPECT_FALSE(stats.taps[0].disabled) << "recalibration, not the per-tap monitor";
    EXPECT_LT(stats.recalibration_upper, 0.01);
    EXPECT_GE(stats.recalibrations, 1);
    // The right tap answers every request from the certification on.
    for (size_t i = exits.size() - 500; i < exits.size(); ++i) EXPECT_EQ(exits[i], 6);
  }
}

// While thresholds are withdrawn, feedback_rate_withdrawn of the requests
// run cut on a worker: the answers come from the whole model.
TEST(EngineCoreTest, WithdrawnThresholdsSampleAtTheirOwnRate) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 0.2;
  options.feedback_rate_in_doubt = 1.0;  // A quick breach.
  options.feedback_rate_withdrawn = 0.5;
  options.answer_epsilon = 0.01;
  auto engine = MakeEngine(WrongTapThenRightTap(), options);
  auto inputs = FakeInputs(1000, 31);
  size_t i = 0;
  for (; i < inputs.size() && engine->Stats().threshold_source != "none"; ++i) {
    MustInfer(*engine, inputs[i]);
    engine->WaitForFeedback();
  }
  ASSERT_LT(i, 100u) << "no breach";
  const EngineStats before = engine->Stats();
  for (int k = 0; k < 400; ++k, ++i) {
    InferResult result = MustInfer(*engine, inputs[i]);
    EXPECT_EQ(result.exit_tap, kBaseExit);
    EXPECT_EQ(result.label, FakeBaseClass(inputs[i]));
    engine->WaitForFeedback();
  }
  const EngineStats after = engine->Stats();
  ASSERT_EQ(after.threshold_source, "none") << "400 at 0.5 cannot certify yet";
  const int64_t sampled = after.feedback_requests - before.feedback_requests;
  EXPECT_GT(sampled, 150);
  EXPECT_LT(sampled, 250);
  EXPECT_EQ(after.feedback_boosted_requests - before.feedback_boosted_requests, sampled);
}

// Thresholds stricter than the stream needs: once the window certifies a
// looser policy that saves more, it replaces the plan's.
TEST(EngineCoreTest, RecalibrationLoosensWhenTheWindowCertifiesIt) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 1.0;
  options.answer_epsilon = 0.01;
  // Always right; hits only when the margin is above 0.5 at threshold 0.5.
  auto engine = MakeEngine({FakeCacheWeights(2, 0, 0.5f, 8.0f)}, options);
  auto inputs = FakeInputs(1000, 41);
  int early_hits = 0;
  int late_hits = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    InferResult result = MustInfer(*engine, inputs[i]);
    EXPECT_EQ(result.label, FakeBaseClass(inputs[i]));
    if (i < 250) early_hits += result.cache_hit;
    if (i >= 750) late_hits += result.cache_hit;
    engine->WaitForFeedback();
  }
  EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.threshold_source, "live");
  EXPECT_EQ(stats.live_tightenings, 0);
  EXPECT_LT(stats.taps[0].threshold, stats.taps[0].plan_threshold);
  EXPECT_EQ(stats.taps[0].plan_threshold, 0.5f);
  EXPECT_GT(late_hits, early_hits + 25) << "the looser threshold answers more";
}

// Label-free drift: exits far from the plan's shares raise the feedback
// rate before any sampled answer disagrees.
TEST(EngineCoreTest, ExitSharesUnlikeThePlansRaiseFeedback) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 0.05;
  options.feedback_rate_in_doubt = 0.5;
  runtime::EngineParts parts = FakeParts({FakeCacheWeights(2, 0, kNeverHit)});
  parts.exit_share = {0.7, 0.3};  // The plan expected 70% answers at tap 2.
  parts.exit_share_samples = 3000;
  auto made = runtime::CreateEngine(std::move(parts), options);
  ASSERT_TRUE(made.ok()) << made.status();
  Engine& engine = **made;
  bool drift_at_100 = false;
  int i = 0;
  for (const auto& input : FakeInputs(600, 51)) {
    MustInfer(engine, input);
    engine.WaitForFeedback();
    if (++i == 100) drift_at_100 = engine.Stats().exit_drift;
  }
  EngineStats stats = engine.Stats();
  EXPECT_TRUE(drift_at_100) << "judged after the first 100 answers";
  EXPECT_EQ(stats.exit_drift_alarms, 1);
  EXPECT_TRUE(stats.feedback_in_doubt);
  EXPECT_GT(stats.feedback_boosted_requests, 150) << "about half of the last 500";
}

// The same shares as the plan's: no alarm.
TEST(EngineCoreTest, ExitSharesLikeThePlansRaiseNothing) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 0.05;
  runtime::EngineParts parts = FakeParts({FakeCacheWeights(2, 0, 0.0f)});
  // Random inputs: the margin p1 - p2 of a confident predictor's softmax is
  // above 0 for every input, so tap 2 answers all of them.
  parts.exit_share = {1.0, 0.0};
  parts.exit_share_samples = 3000;
  auto made = runtime::CreateEngine(std::move(parts), options);
  ASSERT_TRUE(made.ok()) << made.status();
  for (const auto& input : FakeInputs(1000, 52)) MustInfer(**made, input);
  (*made)->WaitForFeedback();
  EngineStats stats = (*made)->Stats();
  EXPECT_EQ(stats.cache_hits, 1000);
  EXPECT_EQ(stats.exit_drift_alarms, 0);
  EXPECT_EQ(stats.feedback_boosted_requests, 0);
}

// A validated update while thresholds are withdrawn keeps them withdrawn:
// the update's gate certified its own cache, not the breached policy of
// the others; the window starts over on the new caches and certifies again.
TEST(EngineCoreTest, AnUpdateWhileWithdrawnKeepsTheThresholdsWithdrawn) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 1.0;
  options.answer_epsilon = 0.01;
  options.epsilon = 0.05;
  LearnOnlyOnUpdateNow(&options);
  auto engine = MakeEngine(WrongTapThenRightTap(), options);
  auto inputs = FakeInputs(1000, 14);
  for (int i = 0; i < 300; ++i) {
    MustInfer(*engine, inputs[i]);
    engine->WaitForFeedback();
  }
  ASSERT_EQ(engine->Stats().threshold_source, "none");
  auto installed = engine->UpdateNow();
  ASSERT_TRUE(installed.ok()) << installed.status();
  ASSERT_EQ(*installed, 1);  // Tap 6's; tap 2 (always wrong) cannot pass.
  EngineStats after = engine->Stats();
  EXPECT_EQ(after.threshold_source, "none");
  EXPECT_GT(after.taps[0].threshold, 1.0f);
  EXPECT_GT(after.taps[1].threshold, 1.0f) << "the update's own tap waits for the window too";
  EXPECT_EQ(after.cache_version, 2);
  for (int i = 300; i < 1000; ++i) {
    InferResult result = MustInfer(*engine, inputs[i]);
    EXPECT_EQ(result.label, FakeBaseClass(inputs[i]));
    engine->WaitForFeedback();
  }
  EngineStats end = engine->Stats();
  EXPECT_EQ(end.threshold_source, "live");
  EXPECT_GT(end.taps[0].threshold, 1.0f);
  EXPECT_LE(end.taps[1].threshold, 1.0f);
  EXPECT_EQ(end.live_tightenings, 1);
}

TEST(EngineCoreTest, LiveBoundLeavesRightCachesAlone) {
  EngineOptions options;
  options.feedback_rate = 0.5;
  options.recalibration = false;  // Not waited for between requests here.
  auto engine = MakeEngine(
      {FakeCacheWeights(2, 0, 0.3f), FakeCacheWeights(6, 0, kAlwaysHit)}, options);
  for (const auto& input : FakeInputs(400, 9)) MustInfer(*engine, input);
  engine->WaitForFeedback();
  EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.live_tightenings, 0);
  EXPECT_EQ(stats.live_disagreements, 0);
  EXPECT_GT(stats.live_checked, 150);
  EXPECT_LT(stats.live_checked, 250);
  EXPECT_FALSE(stats.taps[0].disabled);
  EXPECT_EQ(stats.live_disagreement_lower, 0.0);
  EXPECT_GT(stats.live_disagreement_upper, 0.01) << "200 checks cannot certify 0.01 yet";
  EXPECT_EQ(stats.feedback_boosted_requests, 0) << "no answer disagreed: no doubt";
}

TEST(EngineCoreTest, FeedbackBuffersStayUnderTheirCap) {
  EngineOptions options;
  options.feedback_rate = 1.0;
  options.recalibration = false;
  // Rows are (4 features + 4 logits) * 4 bytes = 32 bytes; 2 taps share 2 KB.
  options.feedback_memory_bytes = 2048;
  auto engine = MakeEngine({FakeCacheWeights(0, 0, 0.5f), FakeCacheWeights(3, 0, 0.2f)}, options);
  for (const auto& input : FakeInputs(300, 8)) MustInfer(*engine, input);
  engine->WaitForFeedback();
  EngineStats stats = engine->Stats();
  EXPECT_GT(stats.feedback_requests, 100);
  EXPECT_LE(stats.feedback_bytes, 2048);
  EXPECT_EQ(stats.feedback_bytes, stats.feedback_capacity_bytes);
  EXPECT_EQ(stats.taps[0].feedback_rows, 32);  // 1024 bytes / 32 bytes.
}

TEST(EngineCoreTest, ExactMatchCacheAnswersRepeatsWithinItsCap) {
  EngineOptions options;
  options.exact_cache_bytes = 4096;
  auto engine = MakeEngine({FakeCacheWeights(0, 0, 0.5f)}, options);
  auto inputs = FakeInputs(10, 9);
  InferResult first = MustInfer(*engine, inputs[0]);
  InferResult again = MustInfer(*engine, inputs[0]);
  EXPECT_FALSE(first.exact_hit);
  EXPECT_TRUE(again.exact_hit);
  EXPECT_EQ(again.label, first.label);
  // A different input with the same size is no hit.
  EXPECT_FALSE(MustInfer(*engine, inputs[1]).exact_hit);
  // An answer stored without scores cannot serve a request for them; the
  // computed one, with scores, then serves both kinds.
  EXPECT_FALSE(MustInfer(*engine, inputs[0], {.want_scores = true}).exact_hit);
  InferResult with_scores = MustInfer(*engine, inputs[0], {.want_scores = true});
  EXPECT_TRUE(with_scores.exact_hit);
  EXPECT_EQ(with_scores.scores.size(), static_cast<size_t>(kFakeClasses));
  InferResult without = MustInfer(*engine, inputs[0]);
  EXPECT_TRUE(without.exact_hit);
  EXPECT_TRUE(without.scores.empty());
  for (const auto& input : FakeInputs(500, 10)) MustInfer(*engine, input);
  EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.exact_hits, 3);
  EXPECT_EQ(stats.exact_misses, 503);
  EXPECT_LE(stats.exact_bytes, 4096);
  EXPECT_GT(stats.exact_bytes, 0);
}

TEST(EngineCoreTest, UpdateNeedsTheLearner) {
  auto engine = MakeEngine({FakeCacheWeights(0, 0, 0.5f)});
  EXPECT_EQ(engine->UpdateNow().status().code(), absl::StatusCode::kFailedPrecondition);
}

// Many callers while the learner installs 100 new versions (swaps): no error, every
// answer right, versions never go backwards for a caller.
void InferWhileTheLearnerSwapsCaches(LookupMode mode) {
  EngineOptions options;
  options.mode = mode;
  options.feedback_rate = 1.0;
  options.epsilon = 0.05;
  options.workers = 3;
  options.lookup_threads = 2;
  options.inline_lookup_us = 0;  // Parallel: every lookup on the executor.
  LearnOnlyOnUpdateNow(&options);
  auto engine = MakeEngine({FakeCacheWeights(0, 0, 0.3f), FakeCacheWeights(4, 0, kAlwaysHit)},
                           options);
  auto inputs = FakeInputs(200, 11);
  for (const auto& input : inputs) MustInfer(*engine, input);
  engine->WaitForFeedback();

  std::atomic<bool> stop{false};
  std::atomic<int64_t> wrong{0}, failed{0}, backwards{0}, served{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&, c] {
      int64_t last_version = 0;
      for (size_t i = c; !stop; i = (i + 7) % inputs.size()) {
        auto result = engine->Infer(inputs[i].data(), kFakeClasses);
        if (!result.ok()) {
          ++failed;
          continue;
        }
        wrong += result->label != FakeBaseClass(inputs[i]);
        backwards += result->cache_version < last_version;
        last_version = result->cache_version;
        ++served;
      }
    });
  }
  // Rounds until 100 swaps happened; the gate may reject an update now and
  // then (its thresholds come from small, shifting samples).
  int installed = 0, swaps = 0, rounds = 0;
  while (swaps < 100 && rounds < 400) {
    auto n = engine->UpdateNow();
    ASSERT_TRUE(n.ok()) << n.status();
    installed += *n;
    swaps += *n > 0;
    ++rounds;
  }
  stop = true;
  for (std::thread& t : callers) t.join();
  engine->WaitForFeedback();
  EngineStats stats = engine->Stats();
  EXPECT_EQ(swaps, 100);
  EXPECT_EQ(stats.cache_version, 101);
  EXPECT_EQ(stats.updates_accepted, installed);
  EXPECT_GE(installed, 190);  // Nearly every update of an equal cache passes.
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(backwards, 0);
  EXPECT_GT(served, 0);
}

TEST(EngineCoreTest, ConcurrentInferWhileTheLearnerSwapsCaches) {
  InferWhileTheLearnerSwapsCaches(LookupMode::kParallel);
}

TEST(EngineCoreTest, ConcurrentSequentialInferWhileTheLearnerSwapsCaches) {
  InferWhileTheLearnerSwapsCaches(LookupMode::kSequential);
}

TEST(EngineCoreTest, AutoModeServesInACacheModeWhenTheCachesBeatTheBaseModel) {
  // Tap 0 always hits after one 100 us segment; the whole model takes 1 ms.
  FakeClock clock;
  auto engine = runtime::CreateEngine(
      TimedFakeParts({FakeCacheWeights(0, 0, kAlwaysHit)}, &clock, 100, 1000, 20), MonitorOff());
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_FALSE((*engine)->serving_base());
  // Fake time charges nothing for the handoff, so parallel can at best tie,
  // and a tie goes to sequential.
  EXPECT_EQ((*engine)->mode(), LookupMode::kSequential);
  EXPECT_NE((*engine)->mode_report().find("auto: sequential"), std::string::npos)
      << (*engine)->mode_report();
  EXPECT_NE((*engine)->mode_report().find("base model 1.000 ms"), std::string::npos)
      << (*engine)->mode_report();
  // The timing runs are not counted as served requests.
  EXPECT_EQ((*engine)->Stats().requests, 0);
  EXPECT_EQ((*engine)->Stats().taps[0].lookups, 0);
  for (const auto& input : FakeInputs(10, 30)) {
    InferResult result = MustInfer(**engine, input);
    EXPECT_TRUE(result.cache_hit);
    EXPECT_DOUBLE_EQ(result.timings.total_us, 100);
  }
  EXPECT_EQ((*engine)->Stats().requests, 10);
}

TEST(EngineCoreTest, AutoModeServesTheBaseModelWhenTheCachesAreSlower) {
  // Caches never hit, and the cut model (2 x 600 us) is slower than the
  // whole one (1 ms): every request is better off without the caches.
  FakeClock clock;
  auto engine = runtime::CreateEngine(
      TimedFakeParts({FakeCacheWeights(0, 0, kNeverHit)}, &clock, 600, 1000, 20), {});
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_TRUE((*engine)->serving_base());
  EXPECT_NE((*engine)->mode_report().find("the base model alone"), std::string::npos)
      << (*engine)->mode_report();
  for (const auto& input : FakeInputs(10, 31)) {
    InferResult result = MustInfer(**engine, input);
    EXPECT_FALSE(result.cache_hit);
    EXPECT_EQ(result.label, FakeBaseClass(input));
    EXPECT_DOUBLE_EQ(result.timings.total_us, 1000);
  }
  EngineStats stats = (*engine)->Stats();
  EXPECT_EQ(stats.base_answers, 10);
  EXPECT_EQ(stats.taps[0].lookups, 0);
}

// Share of `inputs` that `weights` answers (a cache alone at its tap).
double HitShare(const CacheWeights& weights, const std::vector<std::vector<float>>& inputs) {
  std::shared_ptr<const LearnedCache> cache = testing::MakeCache(weights);
  int hits = 0;
  for (const auto& input : inputs) hits += cache->Lookup(input.data()).score >= weights.threshold;
  return static_cast<double>(hits) / inputs.size();
}

// `inputs` as one InferBatch call, every row answered.
std::vector<InferResult> InferAll(Engine& engine, const std::vector<std::vector<float>>& inputs) {
  const std::vector<const float*> rows = RowPointers(inputs, 0, inputs.size());
  std::vector<InferResult> answers;
  for (auto& result :
       engine.InferBatch(rows.data(), static_cast<int64_t>(rows.size()), kFakeClasses, {})) {
    EXPECT_TRUE(result.ok()) << result.status();
    answers.push_back(result.ok() ? *result : InferResult{});
  }
  EXPECT_EQ(answers.size(), inputs.size());
  return answers;
}

TEST(EngineCoreTest, AutoModeTimesBatchesApartFromSingleRequests) {
  // Tap 0 answers part of the inputs; taps 1-3 never answer.
  const CacheWeights some = FakeCacheWeights(0, 0, 0.6f);
  const double share = HitShare(some, FakeInputs(400, 40));
  ASSERT_GT(share, 0.2);
  ASSERT_LT(share, 0.75);
  const std::vector<CacheWeights> caches = {some, FakeCacheWeights(1, 0, kNeverHit),
                                            FakeCacheWeights(2, 0, kNeverHit),
                                            FakeCacheWeights(3, 0, kNeverHit)};
  {
    // 20 us per segment run, 100 us per run of the whole model, whatever
    // the rows: a single request that hits at tap 0 costs 20 us, one that
    // misses 100 us, so the caches win; a batch runs every segment as long
    // as one row misses (100 us), so batches go to the whole model.
    FakeClock clock;
    auto engine = runtime::CreateEngine(TimedFakeParts(caches, &clock, 20, 100, 48), {});
    ASSERT_TRUE(engine.ok()) << engine.status();
    const std::string& report = (*engine)->mode_report();
    EXPECT_FALSE((*engine)->serving_base()) << report;
    EXPECT_TRUE((*engine)->batches_serving_base()) << report;
    EXPECT_NE(report.find("batches of 16: the base model alone"), std::string::npos) << report;
    const std::vector<std::vector<float>> inputs = FakeInputs(40, 41);
    const std::vector<InferResult> results = InferAll(**engine, inputs);
    for (size_t j = 0; j < results.size(); ++j) {
      EXPECT_FALSE(results[j].cache_hit) << "row " << j;
      EXPECT_EQ(results[j].label, FakeBaseClass(inputs[j]));
    }
    int hits = 0;
    for (const auto& input : inputs) hits += MustInfer(**engine, input).cache_hit;
    EXPECT_GT(hits, 0);  // Single requests still use the caches.
  }
  {
    // One tap. A run costs a fixed part and a part per row: segments 40 us
    // + 10 us a row, the whole model 20 us + 40 us a row. Alone, a request
    // pays 50 us at tap 0 and 100 us on a miss against 60 us: the whole
    // model wins. In batches of 16 the fixed parts are shared and the
    // cut rows that hit leave: about 25 us a row against 41 us.
    FakeClock clock;
    auto engine = runtime::CreateEngine(
        TimedFakeParts({some}, &clock, 40, 20, 48, /*segment_row_us=*/10,
                       /*whole_row_us=*/40),
        {});
    ASSERT_TRUE(engine.ok()) << engine.status();
    const std::string& report = (*engine)->mode_report();
    EXPECT_TRUE((*engine)->serving_base()) << report;
    EXPECT_FALSE((*engine)->batches_serving_base()) << report;
    EXPECT_NE(report.find("batches of 16: the caches"), std::string::npos) << report;
    const std::vector<std::vector<float>> inputs = FakeInputs(40, 42);
    int hits = 0;
    for (const InferResult& result : InferAll(**engine, inputs)) hits += result.cache_hit;
    EXPECT_GT(hits, 0);  // Batches use the caches ...
    for (const auto& input : inputs) {
      EXPECT_FALSE(MustInfer(**engine, input).cache_hit);  // ... single requests do not.
    }
    // The probe's runs are not counted.
    EXPECT_EQ((*engine)->Stats().requests, 80);
  }
}

TEST(EngineCoreTest, AutoModeTimesBatchesOfThePlansBatchSize) {
  FakeClock clock;
  runtime::EngineParts parts =
      TimedFakeParts({FakeCacheWeights(0, 0, 0.6f)}, &clock, 40, 20, 64, 10, 40);
  parts.plan_batch = 32;
  auto engine = runtime::CreateEngine(std::move(parts), {});
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->plan_batch(), 32);
  EXPECT_NE((*engine)->mode_report().find("batches of 32: the caches"), std::string::npos)
      << (*engine)->mode_report();
}

TEST(EngineCoreTest, AutoModeNeedsAClearWinToServeTheCaches) {
  // The cut model (2 x 490 us) beats the whole one (1 ms) by 2%: within the
  // probe's noise, so the better tail (the base model) wins.
  FakeClock clock;
  auto engine = runtime::CreateEngine(
      TimedFakeParts({FakeCacheWeights(0, 0, kNeverHit)}, &clock, 490, 1000, 20), {});
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_TRUE((*engine)->serving_base()) << (*engine)->mode_report();
  // At 2 x 480 us (4% faster) the caches serve.
  auto faster = runtime::CreateEngine(
      TimedFakeParts({FakeCacheWeights(0, 0, kNeverHit)}, &clock, 480, 1000, 20), {});
  ASSERT_TRUE(faster.ok()) << faster.status();
  EXPECT_FALSE((*faster)->serving_base()) << (*faster)->mode_report();
  EXPECT_EQ((*faster)->mode(), LookupMode::kSequential);
}

TEST(EngineCoreTest, AutoModeWithoutAReplaySampleIsSequentialUntimed) {
  auto engine = MakeEngine({FakeCacheWeights(0, 0, 0.5f)});
  EXPECT_EQ(engine->mode(), LookupMode::kSequential);
  EXPECT_FALSE(engine->serving_base());
  EXPECT_NE(engine->mode_report().find("untimed"), std::string::npos) << engine->mode_report();
  EngineOptions parallel;
  parallel.mode = LookupMode::kParallel;
  auto configured = MakeEngine({FakeCacheWeights(0, 0, 0.5f)}, parallel);
  EXPECT_EQ(configured->mode(), LookupMode::kParallel);
  EXPECT_EQ(configured->mode_report(), "parallel (as configured)");
}

TEST(EngineCoreTest, UnsampledMissesRecordNoFeedback) {
  // Feedback is sampled for misses as for hits: at rate 0 nothing is kept.
  EngineOptions options;
  options.feedback_rate = 0;
  for (LookupMode mode : {LookupMode::kSequential, LookupMode::kParallel}) {
    options.mode = mode;
    auto engine = MakeEngine({FakeCacheWeights(0, 0, kNeverHit)}, options);
    for (const auto& input : FakeInputs(50, 32)) MustInfer(*engine, input);
    engine->WaitForFeedback();
    EXPECT_EQ(engine->Stats().feedback_requests, 0) << LookupModeName(mode);
    EXPECT_EQ(engine->Stats().taps[0].feedback_rows, 0) << LookupModeName(mode);
  }
}

TEST(EngineCoreTest, FeedbackSamplingFollowsEachEnginesSeed) {
  // Two engines with one seed, called in turn from one thread, sample the
  // same requests; another seed samples others. (A generator shared per
  // thread would hand each engine every other draw.)
  auto sampled = [](uint64_t seed, int engines) {
    EngineOptions options;
    options.mode = LookupMode::kSequential;
    options.feedback_rate = 0.5;
    options.seed = seed;
    std::vector<std::unique_ptr<Engine>> running;
    for (int e = 0; e < engines; ++e) {
      running.push_back(MakeEngine({FakeCacheWeights(0, 0, kNeverHit)}, options));
    }
    std::vector<int64_t> counts;
    for (const auto& input : FakeInputs(200, 33)) {
      for (auto& engine : running) MustInfer(*engine, input);
    }
    for (auto& engine : running) {
      engine->WaitForFeedback();
      counts.push_back(engine->Stats().feedback_requests);
    }
    return counts;
  };
  std::vector<int64_t> pair = sampled(7, 2);
  EXPECT_EQ(pair[0], pair[1]);
  EXPECT_EQ(sampled(7, 1)[0], pair[0]);
  EXPECT_GT(pair[0], 60);
  EXPECT_LT(pair[0], 140);
  EXPECT_NE(sampled(8, 1)[0], pair[0]);
}

// A trainer whose training takes 1 s of fake time before it yields.
class SlowFakeTrainer final : public runtime::CacheTrainer {
 public:
  explicit SlowFakeTrainer(FakeClock* clock) : clock_(clock) {}
  absl::StatusOr<CacheWeights> Train(const CacheWeights& current,
                                     const runtime::TrainingRows& predictor_rows,
                                     const runtime::TrainingRows& selector_rows,
                                     const LearnerOptions& options, uint64_t seed,
                                     const std::function<void()>& yield) override {
    clock_->Advance(1e6);
    if (yield) yield();
    return current;
  }

 private:
  FakeClock* clock_;
};

TEST(EngineCoreTest, LearnerTimeTriggerAndSleepsRunOnTheEnginesEnv) {
  // No row trigger can fire; only 30 s of fake time can. The learner's
  // CPU-share sleep (1% share: 99 s after 1 s of training) passes on fake
  // time too; a real sleep would outlast the test's deadline.
  FakeClock clock;
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 1.0;
  options.learner.enabled = true;
  options.learner.trigger_rows = int64_t{1} << 40;
  options.learner.trigger_seconds = 30;
  options.learner.min_rows = 10;
  options.learner.max_cpu_share = 0.01;
  runtime::EngineParts parts = TimedFakeParts({FakeCacheWeights(0, 0, 0.5f)}, &clock, 0, 0, 0);
  parts.trainer = std::make_unique<SlowFakeTrainer>(&clock);
  auto engine = runtime::CreateEngine(std::move(parts), options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (const auto& input : FakeInputs(40, 34)) MustInfer(**engine, input);
  (*engine)->WaitForFeedback();
  // The learner polls every 100 ms of real time; give it three polls.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ((*engine)->Stats().learner_rounds, 0);
  clock.Advance(31e6);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (((*engine)->Stats().learner_rounds == 0 || (*engine)->learner_busy()) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ((*engine)->Stats().learner_rounds, 1);
  EXPECT_FALSE((*engine)->learner_busy());
  // 31 s advanced, 1 s of training, then 99 s of CPU-share sleep.
  EXPECT_GE(clock.Now(), 31e6 + 1e6 + 99e6 - 1);
  EXPECT_NEAR((*engine)->Stats().learner_busy_seconds, 1.0, 1e-6);
}

}  // namespace
}  // namespace gati
