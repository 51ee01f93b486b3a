#include "model/input.h"

#include <torch/script.h>

#include <gtest/gtest.h>

#include "testutil.h"

namespace gati {
namespace {

TEST(ImagesToInputTest, NormalizesPerChannelAsTheMetadataSays) {
  ModelMetadata metadata;
  metadata.input_shape = {2, 1, 2};
  metadata.mean = {0.5f, 0.0f};
  metadata.std = {0.5f, 2.0f};
  // Two images of 2 channels x 1 x 2 pixels.
  std::vector<uint8_t> pixels = {0, 255, 51, 102, 255, 0, 0, 255};
  auto input = ImagesToInput(pixels.data(), 2, metadata);
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ(input->sizes(), (c10::IntArrayRef{2, 2, 1, 2}));
  EXPECT_EQ(input->scalar_type(), at::kFloat);
  auto values = input->contiguous();
  const float* v = values.data_ptr<float>();
  EXPECT_FLOAT_EQ(v[0], -1.0f);         // (0 - 0.5) / 0.5
  EXPECT_FLOAT_EQ(v[1], 1.0f);          // (1 - 0.5) / 0.5
  EXPECT_FLOAT_EQ(v[2], 0.2f / 2.0f);   // channel 1: (0.2 - 0) / 2
  EXPECT_FLOAT_EQ(v[3], 0.4f / 2.0f);
  EXPECT_FLOAT_EQ(v[4], 1.0f);
  EXPECT_FLOAT_EQ(v[7], 0.5f);
}

TEST(ImagesToInputTest, NeedsAtLeastOneImage) {
  ModelMetadata metadata;
  metadata.input_shape = {1, 2, 2};
  metadata.mean = {0};
  metadata.std = {1};
  uint8_t pixel = 0;
  EXPECT_ERROR(ImagesToInput(&pixel, 0, metadata).status(),
               absl::StatusCode::kInvalidArgument, "at least one image");
}

}  // namespace
}  // namespace gati
