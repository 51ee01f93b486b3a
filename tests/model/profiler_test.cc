#include <gtest/gtest.h>

#include "gati/profile.h"
#include "testutil.h"

namespace gati {
namespace {

using testing::FixturePath;

TEST(PercentileTest, NearestRank) {
  EXPECT_EQ(Percentile({}, 0.5), 0);
  EXPECT_EQ(Percentile({5}, 0.9), 5);
  EXPECT_EQ(Percentile({4, 1, 3, 2}, 0.5), 2);
  EXPECT_EQ(Percentile({4, 1, 3, 2}, 0.75), 3);
  EXPECT_EQ(Percentile({4, 1, 3, 2}, 1.0), 4);
  EXPECT_EQ(Percentile({4, 1, 3, 2}, 0.0), 1);
  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i);
  EXPECT_EQ(Percentile(hundred, 0.9), 90);
  EXPECT_EQ(Percentile(hundred, 0.99), 99);
}

class ProfilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = StagedModel::Load(FixturePath("tiny_cnn.pt"));
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  std::unique_ptr<StagedModel> model_;
};

TEST_F(ProfilerTest, ProfilesEveryStageWithShapesAndShares) {
  ProfileOptions options;
  options.warmup = 2;
  options.repetitions = 10;
  auto profile = ProfileModel(*model_, options);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ASSERT_EQ(profile->stages.size(), 4u);
  EXPECT_EQ(profile->stages[0].output_shape,
            (std::vector<int64_t>{1, 4, 8, 8}));
  EXPECT_EQ(profile->stages[1].output_shape,
            (std::vector<int64_t>{1, 8, 4, 4}));
  EXPECT_EQ(profile->stages[3].output_shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(profile->stages[2].name, "conv_c");
  EXPECT_EQ(profile->stages[0].parameter_count, 48);
  double share_sum = 0;
  for (const StageProfile& stage : profile->stages) {
    EXPECT_GT(stage.p50_ms, 0);
    EXPECT_GE(stage.p90_ms, stage.p50_ms);
    share_sum += stage.share;
  }
  EXPECT_NEAR(share_sum, 1.0, 1e-9);
  EXPECT_NEAR(profile->stages.back().cumulative_share, 1.0, 1e-9);
  EXPECT_GT(profile->whole_p50_ms, 0);
  EXPECT_GE(profile->whole_p90_ms, profile->whole_p50_ms);
  EXPECT_GT(profile->staged_p50_ms, 0);
  EXPECT_EQ(profile->intra_op_threads, 1);
  EXPECT_EQ(profile->repetitions, 10);
}

TEST_F(ProfilerTest, BatchSizeShowsInTheOutputShapes) {
  ProfileOptions options;
  options.warmup = 0;
  options.repetitions = 2;
  options.batch = 5;
  auto profile = ProfileModel(*model_, options);
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->stages[3].output_shape, (std::vector<int64_t>{5, 3}));
}

TEST_F(ProfilerTest, ComparesCutSetsAgainstTheFirst) {
  ProfileOptions options;
  options.warmup = 2;
  options.repetitions = 10;
  auto timings = CompareCutSets(*model_, {{}, {0, 1, 2}, {1}}, options);
  ASSERT_TRUE(timings.ok()) << timings.status();
  ASSERT_EQ(timings->size(), 3u);
  EXPECT_EQ((*timings)[0].ratio_p50, 1.0);
  EXPECT_EQ((*timings)[1].cut_taps, (std::vector<int>{0, 1, 2}));
  for (const CutSetTiming& timing : *timings) {
    EXPECT_GT(timing.p50_ms, 0);
    EXPECT_GE(timing.p99_ms, timing.p90_ms);
    EXPECT_GE(timing.p90_ms, timing.p50_ms);
    EXPECT_GT(timing.ratio_p50, 0);
  }
}

TEST_F(ProfilerTest, InvalidOptionsAndCutsAreErrors) {
  ProfileOptions options;
  options.repetitions = 0;
  EXPECT_ERROR(ProfileModel(*model_, options).status(),
               absl::StatusCode::kInvalidArgument, "repetitions >= 1");
  options.repetitions = 1;
  EXPECT_ERROR(CompareCutSets(*model_, {}, options).status(),
               absl::StatusCode::kInvalidArgument, "no cut sets");
  EXPECT_ERROR(CompareCutSets(*model_, {{}, {7}}, options).status(),
               absl::StatusCode::kInvalidArgument, "cut tap 7 out of range");
}

}  // namespace
}  // namespace gati
