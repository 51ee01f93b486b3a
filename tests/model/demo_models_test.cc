// The committed demo models (models/*.pt) load, are staged as documented and
// are trained: never retrained here, only evaluated on part of the test split.
#include <torch/script.h>

#include <gtest/gtest.h>

#include "data/fashion_mnist.h"
#include "gati/model.h"
#include "model/input.h"
#include "testutil.h"

namespace gati {
namespace {

// ctest runs the tests in the project root.
std::string DemoModelPath(const std::string& name) { return "models/" + name; }

struct DemoCase {
  const char* file;
  int stages;
  double min_accuracy;  // On the first 1,000 test images.
  const char* first_stage = "stem";
  const char* second_stage = "group1.block0";
  // Shape of the first tap's activation, batch 1.
  std::vector<int64_t> first_tap_shape = {};
};

void PrintTo(const DemoCase& demo, std::ostream* out) { *out << demo.file; }

class DemoModelsTest : public ::testing::TestWithParam<DemoCase> {};

TEST_P(DemoModelsTest, IsStagedPerBlockAndAccurate) {
  const DemoCase& demo = GetParam();
  auto model = StagedModel::Load(DemoModelPath(demo.file));
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelMetadata& metadata = (*model)->metadata();
  EXPECT_EQ((*model)->num_stages(), demo.stages);
  EXPECT_EQ((*model)->stages().front().name, demo.first_stage);
  EXPECT_EQ((*model)->stages()[1].name, demo.second_stage);
  if (!demo.first_tap_shape.empty()) {
    EXPECT_EQ((*model)->stage_output_shape(0), demo.first_tap_shape);
  }
  EXPECT_EQ((*model)->stages().back().name, "head");
  EXPECT_EQ(metadata.input_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(metadata.class_names.front(), "T-shirt/top");
  EXPECT_EQ(metadata.class_names.back(), "Ankle boot");
  // Fashion-MNIST's pixel statistics over the train split.
  EXPECT_NEAR(metadata.mean[0], 0.286, 0.002);
  EXPECT_NEAR(metadata.std[0], 0.353, 0.002);

  auto test = LoadFashionMnist(Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  const int64_t count = 1000;
  auto input = ImagesToInput(test->image(0), count, metadata);
  ASSERT_TRUE(input.ok());
  auto whole = (*model)->Segment({});
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto logits = (*whole)->Run(*input);
  ASSERT_TRUE(logits.ok()) << logits.status();
  at::Tensor predicted = logits->argmax(1);
  int64_t correct = 0;
  for (int64_t i = 0; i < count; ++i) {
    correct += predicted[i].item<int64_t>() == test->labels[i];
  }
  EXPECT_GE(static_cast<double>(correct) / count, demo.min_accuracy);

  // Cutting at three taps changes nothing.
  const int taps = (*model)->num_taps();
  auto cut = (*model)->Segment({taps / 4, taps / 2, 3 * taps / 4});
  ASSERT_TRUE(cut.ok()) << cut.status();
  auto cut_logits = (*cut)->Run(input->slice(0, 0, 64));
  ASSERT_TRUE(cut_logits.ok());
  EXPECT_TRUE(torch::allclose(*cut_logits, logits->slice(0, 0, 64), 1e-5,
                              1e-5));
}

INSTANTIATE_TEST_SUITE_P(Committed, DemoModelsTest,
                         ::testing::Values(DemoCase{"resnet20.pt", 11, 0.89},
                                           DemoCase{"resnet56.pt", 29, 0.90},
                                           // The ViT: token taps [1, 50, 64].
                                           DemoCase{"vit6.pt", 8, 0.84, "embed", "block0",
                                                    {1, 50, 64}}),
                         [](const auto& info) {
                           std::string name = info.param.file;
                           return name.substr(0, name.find('.'));
                         });

}  // namespace
}  // namespace gati
