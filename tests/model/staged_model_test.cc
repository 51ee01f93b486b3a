#include <torch/script.h>

#include <gtest/gtest.h>
#include <omp.h>

#include <thread>

#include "gati/model.h"
#include "testutil.h"

namespace gati {
namespace {

using testing::FixturePath;

TEST(StagedModelTest, LoadsTheExportedMetadataAndStages) {
  auto model = StagedModel::Load(FixturePath("tiny_cnn.pt"));
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelMetadata& metadata = (*model)->metadata();
  EXPECT_EQ(metadata.name, "tiny_cnn");
  EXPECT_EQ(metadata.input_shape, (std::vector<int64_t>{1, 8, 8}));
  EXPECT_FLOAT_EQ(metadata.mean[0], 0.5f);
  EXPECT_FLOAT_EQ(metadata.std[0], 0.25f);
  EXPECT_EQ((*model)->num_stages(), 4);
  EXPECT_EQ((*model)->num_taps(), 3);
  EXPECT_EQ((*model)->num_classes(), 3);
  const auto& stages = (*model)->stages();
  EXPECT_EQ(stages[0].name, "conv_a");
  EXPECT_EQ(stages[3].name, "head");
  // conv 1->4 3x3 with bias (40) + batch-norm weight and bias (8).
  EXPECT_EQ(stages[0].parameter_count, 48);
  // Parameters plus running mean/var (8 floats) and the batch counter (int64).
  EXPECT_EQ(stages[0].parameter_bytes, 48 * 4 + 8 * 4 + 8);
  EXPECT_EQ(stages[3].parameter_count, 8 * 3 + 3);
  // Shapes recorded at load by one input through the stages.
  EXPECT_EQ((*model)->stage_output_shape(0),
            (std::vector<int64_t>{1, 4, 8, 8}));
  EXPECT_EQ((*model)->stage_output_shape(1),
            (std::vector<int64_t>{1, 8, 4, 4}));
  EXPECT_EQ((*model)->stage_output_shape(3), (std::vector<int64_t>{1, 3}));
}

TEST(StagedModelTest, LoadsATorchvisionResNetExport) {
  auto model = StagedModel::Load(FixturePath("resnet18.pt"));
  ASSERT_TRUE(model.ok()) << model.status();
  // stem, 8 BasicBlocks, head.
  EXPECT_EQ((*model)->num_stages(), 10);
  EXPECT_EQ((*model)->stages()[1].name, "layer1.0");
  EXPECT_EQ((*model)->metadata().input_shape,
            (std::vector<int64_t>{3, 32, 32}));
  int64_t params = 0;
  for (const StageInfo& stage : (*model)->stages()) {
    params += stage.parameter_count;
  }
  EXPECT_EQ(params, 11181642);  // torchvision resnet18(num_classes=10).
}

struct LoadErrorCase {
  const char* fixture;
  absl::StatusCode code;
  const char* message;
};

TEST(StagedModelTest, InvalidArchivesFailWithTheFileAndTheProblem) {
  const std::vector<LoadErrorCase> cases = {
      {"missing.pt", absl::StatusCode::kNotFound, "no such file"},
      {"not_an_archive.pt", absl::StatusCode::kInvalidArgument,
       "not a TorchScript archive"},
      {"not_sequential.pt", absl::StatusCode::kInvalidArgument,
       "top-level module is __torch__.NotSequential, expected an "
       "nn.Sequential"},
      {"one_stage.pt", absl::StatusCode::kInvalidArgument,
       "has 1 stage(s); a staged model needs at least 2"},
      {"tuple_stage.pt", absl::StatusCode::kInvalidArgument,
       "stage 0 does not map one tensor to one tensor"},
      {"no_metadata.pt", absl::StatusCode::kInvalidArgument,
       "no gati.json metadata"},
      {"bad_json.pt", absl::StatusCode::kInvalidArgument,
       "invalid gati.json: not valid JSON"},
      {"bad_version.pt", absl::StatusCode::kInvalidArgument,
       "format_version 99 is not supported"},
      {"wrong_stage_count.pt", absl::StatusCode::kInvalidArgument,
       "names 2 stages but the Sequential has 4"},
  };
  for (const LoadErrorCase& c : cases) {
    SCOPED_TRACE(c.fixture);
    auto model = StagedModel::Load(FixturePath(c.fixture));
    EXPECT_ERROR(model.status(), c.code, c.message);
    EXPECT_ERROR(model.status(), c.code, FixturePath(c.fixture));
  }
}

TEST(StagedModelTest, BadOptionsAreRejected) {
  ModelOptions options;
  options.intra_op_threads = 0;
  EXPECT_ERROR(StagedModel::Load(FixturePath("tiny_cnn.pt"), options).status(),
               absl::StatusCode::kInvalidArgument,
               "intra-op threads must be >= 1");
  options.intra_op_threads = 1;
  options.device = "gpu7";
  EXPECT_ERROR(StagedModel::Load(FixturePath("tiny_cnn.pt"), options).status(),
               absl::StatusCode::kInvalidArgument, "invalid device 'gpu7'");
}

TEST(StagedModelTest, AppliesTheIntraOpThreadOption) {
  ModelOptions options;
  options.intra_op_threads = 2;
  ASSERT_TRUE(StagedModel::Load(FixturePath("tiny_cnn.pt"), options).ok());
  EXPECT_EQ(GetIntraOpThreads(), 2);
  options.intra_op_threads = 1;
  ASSERT_TRUE(StagedModel::Load(FixturePath("tiny_cnn.pt"), options).ok());
  EXPECT_EQ(GetIntraOpThreads(), 1);
}

// OpenMP keeps its thread count per thread, and oneDNN's convolutions read
// it directly: threads other than the one that set the option ran segments
// on every core until segment runs applied the process-wide count.
TEST(StagedModelTest, SegmentsRunWithTheIntraOpThreadCountOnAnyThread) {
  ModelOptions options;
  options.intra_op_threads = 1;
  auto model = StagedModel::Load(FixturePath("tiny_cnn.pt"), options);
  ASSERT_TRUE(model.ok());
  auto segments = (*model)->Segment({0});
  ASSERT_TRUE(segments.ok());
  const std::vector<int64_t>& shape = (*model)->metadata().input_shape;
  std::vector<int64_t> batch = {1};
  batch.insert(batch.end(), shape.begin(), shape.end());
  int threads_seen = -1;
  std::thread worker([&] {
    at::Tensor input = at::zeros(batch);
    ASSERT_TRUE((*segments)->RunSegment(0, input).ok());
    threads_seen = omp_get_max_threads();
  });
  worker.join();
  EXPECT_EQ(threads_seen, 1);
}

TEST(StagedModelTest, InputOfTheWrongShapeOrTypeIsRejected) {
  auto model = StagedModel::Load(FixturePath("tiny_cnn.pt"));
  ASSERT_TRUE(model.ok());
  EXPECT_ERROR((*model)->ValidateInput(torch::zeros({2, 1, 8, 9})),
               absl::StatusCode::kInvalidArgument,
               "input shape is [2, 1, 8, 9], the model takes [batch, 1, 8, 8]");
  EXPECT_ERROR((*model)->ValidateInput(torch::zeros({1, 8, 8})),
               absl::StatusCode::kInvalidArgument, "input shape is [1, 8, 8]");
  EXPECT_ERROR((*model)->ValidateInput(torch::zeros({0, 1, 8, 8})),
               absl::StatusCode::kInvalidArgument, "input shape is [0, 1, 8, 8]");
  EXPECT_ERROR((*model)->ValidateInput(torch::zeros({1, 1, 8, 8}, torch::kInt)),
               absl::StatusCode::kInvalidArgument,
               "input dtype is Int, the model takes float32");
  EXPECT_ERROR((*model)->ValidateInput(at::Tensor()),
               absl::StatusCode::kInvalidArgument, "input is empty");
  EXPECT_TRUE((*model)->ValidateInput(torch::zeros({3, 1, 8, 8})).ok());
  auto reference = (*model)->RunReference(torch::zeros({1, 2, 8, 8}));
  EXPECT_FALSE(reference.ok());
}

}  // namespace
}  // namespace gati
