#include <torch/script.h>

#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "gati/model.h"
#include "testutil.h"

namespace gati {
namespace {

using testing::FixturePath;

class SegmentedModelTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    auto model = StagedModel::Load(FixturePath(GetParam()));
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    std::vector<int64_t> shape = {3};
    for (int64_t dim : model_->metadata().input_shape) shape.push_back(dim);
    torch::manual_seed(7);
    input_ = torch::randn(shape);
  }

  std::vector<std::vector<int>> CutSets() const {
    const int taps = model_->num_taps();
    std::vector<int> all(taps);
    for (int t = 0; t < taps; ++t) all[t] = t;
    std::vector<std::vector<int>> sets = {{}, all, {0}, {taps - 1}};
    std::mt19937 rng(3);
    for (int trial = 0; trial < 3; ++trial) {
      std::vector<int> some;
      for (int t = 0; t < taps; ++t) {
        if (rng() % 2) some.push_back(t);
      }
      sets.push_back(some);
    }
    return sets;
  }

  std::unique_ptr<StagedModel> model_;
  torch::Tensor input_;
};

TEST_P(SegmentedModelTest, EveryCutSetMatchesTheWholeModel) {
  auto reference = model_->RunReference(input_);
  ASSERT_TRUE(reference.ok()) << reference.status();
  for (const std::vector<int>& cuts : CutSets()) {
    SCOPED_TRACE(::testing::PrintToString(cuts));
    auto segmented = model_->Segment(cuts);
    ASSERT_TRUE(segmented.ok()) << segmented.status();
    EXPECT_EQ((*segmented)->num_segments(), static_cast<int>(cuts.size()) + 1);
    auto out = (*segmented)->Run(input_);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(torch::allclose(*out, *reference, 1e-5, 1e-5))
        << "max abs diff " << (*out - *reference).abs().max().item<float>();
  }
}

TEST_P(SegmentedModelTest, SegmentBoundariesFollowTheCuts) {
  const int taps = model_->num_taps();
  auto segmented = model_->Segment({0, taps - 1});
  ASSERT_TRUE(segmented.ok()) << segmented.status();
  ASSERT_EQ((*segmented)->num_segments(), taps > 1 ? 3 : 2);
  EXPECT_EQ((*segmented)->first_stage(0), 0);
  EXPECT_EQ((*segmented)->end_stage(0), 1);
  EXPECT_EQ((*segmented)->first_stage(1), 1);
  int last = (*segmented)->num_segments() - 1;
  EXPECT_EQ((*segmented)->first_stage(last), model_->num_stages() - 1);
  EXPECT_EQ((*segmented)->end_stage(last), model_->num_stages());
  // Running segment by segment gives the same as Run.
  torch::Tensor activation = input_;
  for (int k = 0; k < (*segmented)->num_segments(); ++k) {
    auto next = (*segmented)->RunSegment(k, activation);
    ASSERT_TRUE(next.ok()) << next.status();
    activation = *next;
  }
  EXPECT_TRUE(torch::allclose(activation, *(*segmented)->Run(input_)));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SegmentedModelTest,
                         ::testing::Values("tiny_cnn.pt", "tiny_resnet.pt",
                                           "resnet18.pt"));

TEST(SegmentTest, InvalidCutSetsAreRejected) {
  auto model = StagedModel::Load(FixturePath("tiny_cnn.pt"));
  ASSERT_TRUE(model.ok());
  EXPECT_ERROR((*model)->Segment({3}).status(),
               absl::StatusCode::kInvalidArgument,
               "cut tap 3 out of range");
  EXPECT_ERROR((*model)->Segment({-1}).status(),
               absl::StatusCode::kInvalidArgument, "cut tap -1 out of range");
  EXPECT_ERROR((*model)->Segment({1, 1}).status(),
               absl::StatusCode::kInvalidArgument, "strictly increasing");
  EXPECT_ERROR((*model)->Segment({2, 0}).status(),
               absl::StatusCode::kInvalidArgument, "strictly increasing");
}

TEST(SegmentTest, BadSegmentIndexOrActivationIsAnErrorNotACrash) {
  auto model = StagedModel::Load(FixturePath("tiny_cnn.pt"));
  ASSERT_TRUE(model.ok());
  auto segmented = (*model)->Segment({1});
  ASSERT_TRUE(segmented.ok());
  EXPECT_ERROR((*segmented)->RunSegment(2, torch::zeros({1, 1, 8, 8})).status(),
               absl::StatusCode::kInvalidArgument, "segment 2 out of range");
  // Segment 1 expects 4 channels; a 1-channel activation makes LibTorch throw.
  EXPECT_ERROR((*segmented)->RunSegment(1, torch::zeros({1, 1, 8, 8})).status(),
               absl::StatusCode::kInvalidArgument, "segment 1 (stages 2..3)");
  EXPECT_ERROR((*segmented)->Run(torch::zeros({1, 1, 9, 9})).status(),
               absl::StatusCode::kInvalidArgument, "input shape is");
}

TEST(SegmentTest, ConcurrentCallersGetTheSameAnswers) {
  auto model = StagedModel::Load(FixturePath("tiny_resnet.pt"));
  ASSERT_TRUE(model.ok());
  auto segmented = (*model)->Segment({1, 2});
  ASSERT_TRUE(segmented.ok());
  torch::manual_seed(1);
  std::vector<torch::Tensor> inputs, expected;
  for (int i = 0; i < 4; ++i) {
    inputs.push_back(torch::randn({1, 1, 28, 28}));
    expected.push_back(*(*segmented)->Run(inputs.back()));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        auto out = (*segmented)->Run(inputs[t]);
        if (!out.ok() || !torch::equal(*out, expected[t])) ++mismatches[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace gati
