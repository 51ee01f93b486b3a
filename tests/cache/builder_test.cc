// BuildBundle end to end on the small ResNet-20 demo model and real
// Fashion-MNIST validation images.
#include "gati/build.h"

#include <gtest/gtest.h>

#include "build/measured_plan.h"
#include "data/file_io.h"
#include "gati/bundle.h"
#include "gati/model.h"
#include "plan/bundle_plan.h"
#include "testutil.h"

namespace gati {
namespace {

using testing::ReadFile;
using testing::TempDir;

constexpr char kModel[] = "models/resnet20.pt";
constexpr int kLastTap = 9;  // ResNet-20: 11 stages; the head is GAP + linear.

class BuilderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto images = LoadFashionMnist(Split::kValidation);
    ASSERT_TRUE(images.ok()) << images.status();
    images_ = new ImageDataset(std::move(*images));
    images_->count = 2000;
    images_->pixels.resize(images_->count * 28 * 28);
    images_->labels.resize(images_->count);
  }
  static void TearDownTestSuite() { delete images_; }

  BuildOptions SmallBuild() {
    BuildOptions options;
    options.model_path = kModel;
    options.taps = {kLastTap};
    options.variants = {"gap:linear"};
    options.threads = 2;
    options.profile_repetitions = 3;
    options.lookup_repetitions = 10;
    return options;
  }

  static ImageDataset* images_;
  TempDir dir_;
};

ImageDataset* BuilderTest::images_ = nullptr;

TEST_F(BuilderTest, LastTapCacheAgreesWithTheBaseModel) {
  auto report = BuildBundle(SmallBuild(), *images_, dir_.File("b"));
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->manifest.caches.size(), 1u);
  const CacheEntry& entry = report->manifest.caches[0];
  EXPECT_EQ(entry.tap, kLastTap);
  EXPECT_GE(entry.metrics.agreement, 0.99);
  EXPECT_TRUE(entry.enabled);
  EXPECT_GE(entry.metrics.hit_rate, 0.5);
  EXPECT_LE(entry.metrics.false_hit_upper_bound, 0.01);
  EXPECT_EQ(report->calibration, 600);
  EXPECT_EQ(entry.metrics.calibration_count, 600);
  EXPECT_GT(entry.metrics.lookup_us, 0);
  // The selector kept, and both AUROCs, are reported; the one kept is the
  // trained selector only where it beat the top probability held out.
  if (entry.metrics.agreement < 1) {  // Both classes present: AUROCs mean something.
    EXPECT_GT(entry.metrics.max_softmax_auroc, 0.5);
    EXPECT_GT(entry.metrics.selector_auroc, 0.5);
  }
  if (entry.metrics.selector == "max-softmax") {
    EXPECT_NEAR(entry.metrics.selector_auroc, entry.metrics.max_softmax_auroc, 1e-9)
        << "the same ranking";
  }
  EXPECT_EQ(report->manifest.stage_p50_ms.size(), 11u);
  // The bundle on disk is what the report describes.
  auto bundle = Bundle::Load(dir_.File("b"));
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ(ManifestToJson((*bundle)->manifest()), ManifestToJson(report->manifest));
  EXPECT_EQ((*bundle)->manifest().model_sha256, Sha256Hex(ReadFile(kModel)));
}

TEST_F(BuilderTest, DistillationLearnsTheBaseModelNotTheGroundTruth) {
  // Ground truth scrambled: a cache trained on it would agree with the base
  // model about 10% of the time.
  ImageDataset scrambled = *images_;
  for (int64_t& label : scrambled.labels) label = (label + 3) % 10;
  BuildOptions options = SmallBuild();
  options.distillation.alpha = 0;  // Cross-entropy only: labels decide.
  auto report = BuildBundle(options, scrambled, dir_.File("b"));
  ASSERT_TRUE(report.ok()) << report.status();
  const CacheMetrics& metrics = report->manifest.caches[0].metrics;
  EXPECT_GE(metrics.agreement, 0.97);
  EXPECT_LE(metrics.accuracy, 0.2);
}

TEST_F(BuilderTest, SameSeedGivesTheSameCaches) {
  BuildOptions options = SmallBuild();
  options.variants = {"pool2:mlp128", "conv1x1-8:pool4:linear"};
  options.taps = {5};
  options.epochs = 3;
  options.stream_epochs = 1;
  auto first = BuildBundle(options, *images_, dir_.File("a"));
  auto second = BuildBundle(options, *images_, dir_.File("b"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(first->manifest.caches.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(first->manifest.caches[i].sha256, second->manifest.caches[i].sha256)
        << first->manifest.caches[i].variant;
  }
  options.seed = 2;
  auto other = BuildBundle(options, *images_, dir_.File("c"));
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->manifest.caches[0].sha256, first->manifest.caches[0].sha256);
}

TEST_F(BuilderTest, APlanForBatchesIsProfiledPerRowAtItsBatchSize) {
  BuildOptions options = SmallBuild();
  options.taps = {1, 5, kLastTap};
  auto report = BuildBundle(options, *images_, dir_.File("b"));
  ASSERT_TRUE(report.ok()) << report.status();
  auto bundle = Bundle::Load(dir_.File("b"));
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  auto model = StagedModel::Load(kModel);
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<const LearnedCache*> caches;
  for (const auto& cache : (*bundle)->caches()) caches.push_back(cache.get());
  const ReplaySample& replay = (*bundle)->replay();
  auto problem = ProblemFromBundle(**bundle);
  ASSERT_TRUE(problem.ok()) << problem.status();
  PlanOptions plan_options;
  plan_options.tail_budget = 0;  // A plan with taps, whatever the timings.
  plan_options.epsilon = 0.2;
  // Bad batch sizes and caches that do not match the problem.
  for (int batch : {1, 0, kMaxPlanBatch + 1}) {
    PlanningProblem copy = *problem;
    EXPECT_ERROR(PlanForBatch(**model, caches, replay.inputs.data(), replay.count, &copy,
                              plan_options, batch, 3, nullptr)
                     .status(),
                 absl::StatusCode::kInvalidArgument, "batch size in [2, ");
  }
  PlanningProblem copy = *problem;
  EXPECT_ERROR(PlanForBatch(**model, {caches[0]}, replay.inputs.data(), replay.count, &copy,
                            plan_options, 8, 3, nullptr)
                   .status(),
               absl::StatusCode::kInvalidArgument, "one cache per candidate");

  auto plan = PlanForBatch(**model, caches, replay.inputs.data(), replay.count, &*problem,
                           plan_options, 8, 3, nullptr);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_FALSE(plan->choices.empty()) << plan->note;
  EXPECT_EQ(problem->batch, 8);
  EXPECT_EQ(problem->parallel_request_ms, 0);
  const int stages = (*model)->num_stages();
  // Every segment of the plan was measured, keyed as the evaluator reads it:
  // a per-row part, and a shared part that is >= 0 where present. The whole
  // model is kept whole, and is the plan's base.
  int first = 0;
  std::vector<std::pair<int, int>> ranges;
  for (const PlanChoice& choice : plan->choices) {
    const int tap = problem->caches[choice.cache].tap;
    ranges.push_back({first, tap + 1});
    first = tap + 1;
  }
  ranges.push_back({first, stages});
  double cut_ms = 0;
  for (const auto& range : ranges) {
    ASSERT_EQ(problem->measured_segment_ms.count(range), 1u)
        << "[" << range.first << ", " << range.second << ")";
    EXPECT_GE(problem->measured_segment_ms.at(range), 0);
    cut_ms += SegmentRowMs(*problem, range.first, range.second);
  }
  for (const auto& [range, ms] : problem->segment_shared_ms) EXPECT_GE(ms, 0);
  EXPECT_EQ(problem->segment_shared_ms.count({0, stages}), 0u);
  EXPECT_EQ(plan->base_ms, problem->measured_segment_ms.at({0, stages}));
  // Per row: the segments' costs are positive (their size against the whole
  // model is a timing, for gati_bench_batch, not for a test).
  EXPECT_GT(cut_ms, 0);
  EXPECT_GT(plan->base_ms, 0);
  // The stored prediction is the evaluation of the plan on the final
  // figures, and a batch plan's miss path pays every fixed part in full.
  PlanEvaluation again = EvaluatePlan(*problem, plan->choices, plan_options);
  EXPECT_DOUBLE_EQ(again.mean_ms, plan->evaluation.mean_ms);
  EXPECT_GE(again.miss_ms, again.exit_ms.back() - 1e-12);
  StoredPlan stored = ToStoredPlan(*plan, *problem, plan_options, 8);
  EXPECT_EQ(stored.batch, 8);
  EXPECT_EQ(stored.other_mode_mean_ms, 0);  // Batches are not priced in parallel mode.
}

TEST_F(BuilderTest, BadOptionsAreClearErrorsAndWriteNothing) {
  struct Case {
    std::function<void(BuildOptions&)> change;
    const char* message;
  };
  const Case cases[] = {
      {[](BuildOptions& o) { o.epsilon = 0; }, "--epsilon must lie in (0, 1)"},
      {[](BuildOptions& o) { o.epsilon = 1.5; }, "--epsilon must lie in (0, 1)"},
      {[](BuildOptions& o) { o.variants = {"pool9:huge"}; }, "unknown variant 'pool9:huge'"},
      {[](BuildOptions& o) { o.taps = {10}; }, "tap 10 does not exist"},
      {[](BuildOptions& o) { o.model_path = "/nonexistent/model.pt"; }, "/nonexistent/model.pt"},
      {[](BuildOptions& o) { o.distillation.temperature = 0; }, "--temperature"},
      {[](BuildOptions& o) { o.predictor_share = 0.9; }, "split shares"},
  };
  for (const Case& c : cases) {
    BuildOptions options = SmallBuild();
    c.change(options);
    auto report = BuildBundle(options, *images_, dir_.File("b"));
    EXPECT_FALSE(report.ok()) << c.message;
    EXPECT_NE(std::string(report.status().message()).find(c.message), std::string::npos)
        << report.status();
    EXPECT_FALSE(std::filesystem::exists(dir_.File("b")));
  }
  ImageDataset empty = *images_;
  empty.count = 0;
  EXPECT_ERROR(BuildBundle(SmallBuild(), empty, dir_.File("b")).status(),
               absl::StatusCode::kInvalidArgument, "holds no samples");
  ImageDataset few = *images_;
  few.count = 2;
  EXPECT_ERROR(BuildBundle(SmallBuild(), few, dir_.File("b")).status(),
               absl::StatusCode::kInvalidArgument, "too few to split");
  ImageDataset wrong_size = *images_;
  wrong_size.rows = 14;
  wrong_size.cols = 56;
  EXPECT_ERROR(BuildBundle(SmallBuild(), wrong_size, dir_.File("b")).status(),
               absl::StatusCode::kInvalidArgument, "takes inputs of shape 1x28x28, the data fashion-mnist validation has samples of 1x14x56");
}

TEST(TapListTest, ParsesAllAndLists) {
  EXPECT_TRUE(ParseTapList("all")->empty());
  EXPECT_EQ(*ParseTapList("9,0,5"), (std::vector<int>{0, 5, 9}));
  EXPECT_ERROR(ParseTapList("1,x").status(), absl::StatusCode::kInvalidArgument,
               "'x' is not a tap index");
  EXPECT_ERROR(ParseTapList("-1").status(), absl::StatusCode::kInvalidArgument,
               "not a tap index");
  EXPECT_ERROR(ParseTapList("3,3").status(), absl::StatusCode::kInvalidArgument,
               "listed twice");
}

}  // namespace
}  // namespace gati
