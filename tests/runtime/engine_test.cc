// The engine on a real bundle: ResNet-20 with gap:linear caches at taps 3
// and 9 built from real validation images, served on test images.
#include "gati/engine.h"

#include <gtest/gtest.h>

#include <torch/script.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "gati/build.h"
#include "data/fashion_mnist.h"
#include "gati/bundle.h"
#include "gati/model.h"
#include "model/input.h"
#include "runtime/mode_timing.h"

namespace gati {
namespace {

constexpr char kModel[] = "models/resnet20.pt";

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     ("gati_engine_test_" + std::to_string(::getpid())));
    std::filesystem::remove_all(*dir_);
    std::filesystem::create_directories(*dir_);
    auto validation = LoadFashionMnist(Split::kValidation);
    ASSERT_TRUE(validation.ok()) << validation.status();
    validation->count = 2000;
    validation->pixels.resize(validation->count * 28 * 28);
    validation->labels.resize(validation->count);
    BuildOptions options;
    options.model_path = kModel;
    options.taps = {3, 9};
    options.variants = {"gap:linear"};
    options.threads = 2;
    options.epochs = 10;
    options.profile_repetitions = 3;
    options.lookup_repetitions = 10;
    options.plan = false;
    options.replay_samples = 100;
    bundle_dir_ = (*dir_ / "bundle").string();
    auto report = BuildBundle(options, *validation, bundle_dir_);
    ASSERT_TRUE(report.ok()) << report.status();
    // A hand-made plan whose thresholds let each cache answer part of the
    // traffic (score quantiles of the planning records), so that every exit
    // occurs.
    auto built = Bundle::Load(bundle_dir_);
    ASSERT_TRUE(built.ok()) << built.status();
    BundleManifest manifest = (*built)->manifest();
    manifest.has_plan = true;
    manifest.plan.caches.clear();
    const double keep_above[] = {0.6, 0.5};  // Tap 3 hits ~40%, tap 9 ~50%.
    for (size_t c = 0; c < manifest.caches.size(); ++c) {
      std::vector<float> scores = (*built)->records().caches[c].scores;
      std::sort(scores.begin(), scores.end());
      const float threshold = scores[static_cast<size_t>(keep_above[c] * scores.size())];
      manifest.plan.caches.push_back({manifest.caches[c].tap, manifest.caches[c].variant,
                                      threshold});
    }
    manifest.plan.mean_ms = 1.0;
    ASSERT_TRUE(Bundle::WriteManifest(bundle_dir_, manifest).ok());

    auto test = LoadFashionMnist(Split::kTest);
    ASSERT_TRUE(test.ok()) << test.status();
    auto model = StagedModel::Load(kModel);
    ASSERT_TRUE(model.ok());
    auto input = ImagesToInput(test->pixels.data(), kImages, (*model)->metadata());
    ASSERT_TRUE(input.ok());
    at::Tensor x = input->contiguous();
    inputs_ = new std::vector<float>(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
  }
  static void TearDownTestSuite() {
    delete inputs_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static const float* Image(int i) { return inputs_->data() + i * kImageSize; }

  static std::unique_ptr<Engine> Make(EngineOptions options) {
    auto engine = Engine::Create(bundle_dir_, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(*engine) : nullptr;
  }

  static constexpr int kImages = 300;
  static constexpr int64_t kImageSize = 28 * 28;
  static std::filesystem::path* dir_;
  static std::string bundle_dir_;
  static std::vector<float>* inputs_;
};

std::filesystem::path* EngineTest::dir_ = nullptr;
std::string EngineTest::bundle_dir_;
std::vector<float>* EngineTest::inputs_ = nullptr;

// Tests of what the caches answer pin a cache mode: auto's choice is timed,
// and on a loaded machine it may serve the base model alone.
TEST_F(EngineTest, AnswersAreTheFirstHitOrTheBaseModel) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 0;
  auto engine = Make(options);
  ASSERT_NE(engine, nullptr);
  ASSERT_EQ(engine->planned_taps(), (std::vector<int>{3, 9}));
  // Reference: the bundle's caches on activations of the model cut at the
  // same taps, at the plan's thresholds.
  auto bundle = Bundle::Load(bundle_dir_);
  ASSERT_TRUE(bundle.ok());
  auto model = StagedModel::Load((*bundle)->model_path());
  ASSERT_TRUE(model.ok());
  auto segments = (*model)->Segment({3, 9});
  ASSERT_TRUE(segments.ok());
  std::vector<std::unique_ptr<LearnedCache>> caches;
  for (const PlannedCache& planned : (*bundle)->manifest().plan.caches) {
    CacheWeights weights = (*bundle)->Find(planned.tap, planned.variant)->weights();
    weights.enabled = true;
    weights.threshold = planned.threshold;
    caches.push_back(*LearnedCache::Create(weights));
  }
  std::map<int, int> exits;
  for (int i = 0; i < kImages; ++i) {
    auto result = engine->Infer(Image(i), kImageSize);
    ASSERT_TRUE(result.ok()) << result.status();
    at::Tensor x = at::from_blob(const_cast<float*>(Image(i)), {1, 1, 28, 28}).clone();
    int want_label = -1, want_exit = kBaseExit;
    for (int s = 0; s < 3; ++s) {
      x = *(*segments)->RunSegment(s, x);
      if (s < 2 && want_label < 0) {
        at::Tensor a = x.contiguous();
        LookupResult lookup = caches[s]->Lookup(a.data_ptr<float>());
        if (lookup.hit) {
          want_label = lookup.label;
          want_exit = s == 0 ? 3 : 9;
        }
      }
    }
    if (want_label < 0) want_label = static_cast<int>(x.argmax(1).item<int64_t>());
    EXPECT_EQ(result->label, want_label) << "image " << i;
    EXPECT_EQ(result->exit_tap, want_exit) << "image " << i;
    ++exits[result->exit_tap];
  }
  // Each tap's bound comes from the planning records at its threshold:
  // tap 3 is forced to answer 40% of requests and errs often, tap 9 barely.
  EngineStats stats = engine->Stats();
  EXPECT_GT(stats.taps[1].epsilon, 0);
  EXPECT_LT(stats.taps[1].epsilon, 0.1);
  EXPECT_GT(stats.taps[0].epsilon, stats.taps[1].epsilon);
  EXPECT_LT(stats.taps[0].epsilon, 1);
  // Both caches and the base model answered some requests.
  EXPECT_EQ(exits.size(), 3u) << "exits: tap3 " << exits[3] << ", tap9 " << exits[9];
}

TEST_F(EngineTest, ParallelAndSequentialAnswerIdentically) {
  EngineOptions parallel;
  parallel.mode = LookupMode::kParallel;
  parallel.feedback_rate = 0.2;
  // Tap 3 errs often on purpose; the live bound, recalibration and the
  // false-hit cool-down would each act at a moment that depends on when
  // each engine's feedback lands.
  parallel.live_tightening = false;
  parallel.recalibration = false;
  parallel.false_hit_cooldown_requests = 0;  // Starts when a check lands, too.
  EngineOptions sequential = parallel;
  sequential.mode = LookupMode::kSequential;
  auto a = Make(parallel);
  auto b = Make(sequential);
  ASSERT_TRUE(a && b);
  for (int i = 0; i < kImages; ++i) {
    auto x = a->Infer(Image(i), kImageSize);
    auto y = b->Infer(Image(i), kImageSize);
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x->label, y->label) << "image " << i;
    EXPECT_EQ(x->exit_tap, y->exit_tap) << "image " << i;
  }
}

// Batches run on [B, ...] and shrink as rows hit; each row's answer is the
// one a request of its own gets.
TEST_F(EngineTest, ABatchAnswersEachImageAsASingleRequestDoes) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 0;
  auto batched = Make(options);
  auto alone = Make(options);
  ASSERT_TRUE(batched && alone);
  std::map<int, int> exits;
  int begin = 0;
  for (int size : {1, 16, 64, kImages - 81}) {
    std::vector<const float*> rows;
    for (int i = begin; i < begin + size; ++i) rows.push_back(Image(i));
    auto results = batched->InferBatch(rows.data(), size, kImageSize, {.want_scores = true});
    ASSERT_EQ(results.size(), static_cast<size_t>(size));
    for (int j = 0; j < size; ++j) {
      ASSERT_TRUE(results[j].ok()) << results[j].status();
      auto want = alone->Infer(Image(begin + j), kImageSize, {.want_scores = true});
      ASSERT_TRUE(want.ok());
      EXPECT_EQ(results[j]->label, want->label) << "image " << begin + j;
      EXPECT_EQ(results[j]->exit_tap, want->exit_tap) << "image " << begin + j;
      ASSERT_EQ(results[j]->scores.size(), want->scores.size());
      for (size_t k = 0; k < want->scores.size(); ++k) {
        EXPECT_NEAR(results[j]->scores[k], want->scores[k], 1e-4) << "image " << begin + j;
      }
      ++exits[want->exit_tap];
    }
    begin += size;
  }
  EXPECT_EQ(exits.size(), 3u);
  // The base model alone, batched.
  EngineOptions base = options;
  base.use_caches = false;
  auto plain = Make(base);
  ASSERT_NE(plain, nullptr);
  std::vector<const float*> rows;
  for (int i = 0; i < 40; ++i) rows.push_back(Image(i));
  auto results = plain->InferBatch(rows.data(), 40, kImageSize);
  for (int i = 0; i < 40; ++i) {
    auto want = plain->InferBase(Image(i), kImageSize);
    ASSERT_TRUE(results[i].ok() && want.ok());
    EXPECT_EQ(results[i]->label, want->label) << "image " << i;
    EXPECT_EQ(results[i]->exit_tap, kBaseExit);
  }
}

TEST_F(EngineTest, CachesOffServesExactlyTheBaseModel) {
  EngineOptions options;
  options.use_caches = false;
  auto engine = Make(options);
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(engine->planned_taps().empty());
  for (int i = 0; i < 50; ++i) {
    auto result = engine->Infer(Image(i), kImageSize, {.want_scores = true});
    auto base = engine->InferBase(Image(i), kImageSize);
    ASSERT_TRUE(result.ok() && base.ok());
    EXPECT_EQ(result->label, base->label);
    EXPECT_EQ(result->exit_tap, kBaseExit);
    ASSERT_EQ(result->scores.size(), 10u);
    float total = 0;
    for (float p : result->scores) total += p;
    EXPECT_NEAR(total, 1.0f, 1e-4);
  }
}

TEST_F(EngineTest, OnlineLearnerFineTunesOnRealFeedback) {
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 1.0;  // Every request's base answer becomes a row.
  options.epsilon = 0.05;
  options.learner.enabled = true;
  options.learner.min_rows = 200;
  options.learner.epochs = 2;
  options.learner.trigger_rows = int64_t{1} << 40;
  options.learner.trigger_seconds = 1e9;
  auto engine = Make(options);
  ASSERT_NE(engine, nullptr);
  for (int i = 0; i < kImages; ++i) ASSERT_TRUE(engine->Infer(Image(i), kImageSize).ok());
  engine->WaitForFeedback();
  EngineStats before = engine->Stats();
  EXPECT_EQ(before.feedback_requests, kImages);
  EXPECT_EQ(before.taps[0].feedback_rows, kImages);
  auto installed = engine->UpdateNow();
  ASSERT_TRUE(installed.ok()) << installed.status();
  EngineStats after = engine->Stats();
  EXPECT_EQ(after.learner_rounds, 1);
  for (const TapStats& tap : after.taps) EXPECT_EQ(tap.epsilon, 0.05);  // The option wins.
  // Both taps were retrained and judged; accepted ones form one new version.
  EXPECT_EQ(after.updates_accepted + after.updates_rejected, 2);
  EXPECT_EQ(after.updates_accepted, *installed);
  // On this stream (the build's own distribution, every answer fed back) an
  // update should pass the gate: a learner that never passes one fails here.
  EXPECT_GE(after.updates_accepted, 1);
  EXPECT_EQ(after.cache_version, *installed > 0 ? 2 : 1);
  for (int i = 0; i < 20; ++i) {
    auto result = engine->Infer(Image(i), kImageSize);
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->cache_version, after.cache_version);
  }
}

TEST_F(EngineTest, BadInputsAreErrorsAndServingGoesOn) {
  auto engine = Make({});
  ASSERT_NE(engine, nullptr);
  std::vector<float> wrong(27 * 28, 0.0f);
  auto short_input = engine->Infer(wrong.data(), wrong.size());
  EXPECT_EQ(short_input.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(short_input.status().message().find("1x28x28"), std::string::npos)
      << short_input.status();
  std::vector<float> nan(Image(0), Image(0) + kImageSize);
  nan[100] = std::nanf("");
  EXPECT_EQ(engine->Infer(nan.data(), nan.size()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine->Infer(Image(1), kImageSize).ok());
  EXPECT_EQ(engine->Stats().errors, 2);
}

TEST_F(EngineTest, TimeModesTimesBothModesAndRecordsEachExit) {
  constexpr int64_t kTimed = 64;
  auto timing = runtime::TimeModes(bundle_dir_, Image(0), kTimed);
  ASSERT_TRUE(timing.ok()) << timing.status();
  EXPECT_GT(timing->sequential_ms, 0);
  EXPECT_GT(timing->parallel_ms, 0);
  EXPECT_GT(timing->base_ms, 0);
  // The exits are the engine's: the same as a sequential engine answers.
  EngineOptions options;
  options.mode = LookupMode::kSequential;
  options.feedback_rate = 0;
  auto engine = Make(options);
  ASSERT_NE(engine, nullptr);
  ASSERT_EQ(timing->exit_slot.size(), static_cast<size_t>(kTimed));
  std::map<int, int> exits;
  for (int64_t i = 0; i < kTimed; ++i) {
    auto result = engine->Infer(Image(static_cast<int>(i)), kImageSize);
    ASSERT_TRUE(result.ok());
    const int slot = result->exit_tap == 3 ? 0 : result->exit_tap == 9 ? 1 : 2;
    EXPECT_EQ(timing->exit_slot[i], slot) << "input " << i;
    ++exits[slot];
  }
  EXPECT_EQ(exits.size(), 3u);  // Every exit occurs, or this proves little.
  EXPECT_FALSE(runtime::TimeModes("/nonexistent/bundle", Image(0), 4).ok());
  EXPECT_FALSE(runtime::TimeModes(bundle_dir_, Image(0), 0).ok());
}

TEST_F(EngineTest, BuildCalibratesParallelModeAndTheEngineReportsItsModesPrediction) {
  auto validation = LoadFashionMnist(Split::kValidation);
  ASSERT_TRUE(validation.ok()) << validation.status();
  validation->count = 1500;
  validation->pixels.resize(validation->count * 28 * 28);
  validation->labels.resize(validation->count);
  BuildOptions options;
  options.model_path = kModel;
  options.taps = {3, 9};
  options.variants = {"gap:linear"};
  options.threads = 2;
  options.epochs = 5;
  options.profile_repetitions = 3;
  options.lookup_repetitions = 10;
  options.replay_samples = 50;
  options.plan_options.tail_budget = 0;   // A plan with caches, whatever the tail.
  options.plan_options.epsilon = 0.2;
  options.mode_timing_samples = 48;
  int timed = 0;
  options.time_modes = [&](const std::string& dir, const float* x, int64_t n) {
    ++timed;
    EXPECT_EQ(n, 48);
    return runtime::TimeModes(dir, x, n);
  };
  const std::string dir = (*dir_ / "calibrated").string();
  auto report = BuildBundle(options, *validation, dir);
  ASSERT_TRUE(report.ok()) << report.status();
  auto bundle = Bundle::Load(dir);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  const BundleManifest& manifest = (*bundle)->manifest();
  // Whether a plan beats the base model rests on timings (on a loaded
  // machine it may not); the modes are timed exactly when it has caches.
  if (manifest.plan.caches.empty()) {
    EXPECT_EQ(timed, 0) << manifest.plan.note;
    EXPECT_EQ(manifest.parallel_request_ms, 0);
    EXPECT_EQ(manifest.plan.other_mode_mean_ms, 0);
    return;
  }
  EXPECT_EQ(timed, 1);
  EXPECT_NE(manifest.parallel_request_ms, 0);
  EXPECT_GT(manifest.plan.other_mode_mean_ms, 0);
  EXPECT_GT(manifest.plan.other_mode_p99_ms, 0);
  for (LookupMode mode : {LookupMode::kSequential, LookupMode::kParallel}) {
    EngineOptions engine_options;
    engine_options.mode = mode;
    auto engine = Engine::Create(dir, engine_options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    EXPECT_DOUBLE_EQ((*engine)->predicted_mean_ms(), mode == LookupMode::kParallel
                                                         ? manifest.plan.other_mode_mean_ms
                                                         : manifest.plan.mean_ms);
  }
}

TEST(EngineCreateTest, MissingBundleIsAnError) {
  auto engine = Engine::Create("/nonexistent/bundle", {});
  EXPECT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("/nonexistent/bundle"), std::string::npos);
}

}  // namespace
}  // namespace gati
