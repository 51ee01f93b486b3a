// Image folders (PNG and JPEG through libpng and libjpeg-turbo): class
// subdirectories and flat folders, channel conversion, the resize rule,
// and every bad file named with its sample index.
#include "data/image_folder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "testutil.h"

namespace gati {
namespace {

using testing::FixturePath;

std::string Folder(const std::string& name) { return FixturePath("images/" + name); }

TEST(ImageFolderTest, ClassSubdirectoriesGiveLabelsInSortedOrder) {
  ImageFolderOptions options;
  options.channels = 3;
  options.height = options.width = 8;
  std::vector<std::string> classes;
  auto data = OpenImageFolder(Folder("classes"), options, &classes);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(classes, (std::vector<std::string>{"bird", "cat", "dog"}));
  // bird: gradient, notes.txt.png; cat: solid, solid_rgba; dog: 3 random,
  // solid.jpg. readme.txt is not an image.
  ASSERT_EQ((*data)->count(), 8);
  EXPECT_EQ((*data)->sample_shape(), (std::vector<int64_t>{3, 8, 8}));
  const std::vector<int64_t> want = {0, 0, 1, 1, 2, 2, 2, 2};
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ((*data)->label(i), want[i]) << "sample " << i;
  EXPECT_TRUE((*data)->unit_range());
  EXPECT_NE((*data)->description().find("8 images in 3 classes"), std::string::npos);
  // The solid colour, PNG with and without alpha: exact after any resize.
  std::vector<float> sample(3 * 64);
  for (int64_t i : {2, 3}) {
    ASSERT_TRUE((*data)->Read(i, sample.data()).ok());
    for (int k = 0; k < 64; ++k) {
      ASSERT_FLOAT_EQ(sample[k], 200 / 255.0f);
      ASSERT_FLOAT_EQ(sample[64 + k], 100 / 255.0f);
      ASSERT_FLOAT_EQ(sample[128 + k], 50 / 255.0f);
    }
  }
  // The JPEG is lossy: within a few levels.
  ASSERT_TRUE((*data)->Read(7, sample.data()).ok());
  for (int k = 0; k < 64; ++k) {
    ASSERT_NEAR(sample[k] * 255, 200, 4);
    ASSERT_NEAR(sample[128 + k] * 255, 50, 4);
  }
}

TEST(ImageFolderTest, ShorterSideThenCenterCropWithAreaAveraging) {
  // The 60 x 40 gradient (pixel = 4 x), shorter side 40 -> 8: scale 1/5, so
  // 12 columns of which the center 8 (2..9) are kept; output column j
  // averages source columns 5 (j + 2) .. 5 (j + 2) + 4, i.e. 4 (5 j + 12).
  ImageFolderOptions options;
  options.channels = 1;  // Grey stays grey.
  options.height = options.width = 8;
  auto data = OpenImageFolder(Folder("classes"), options);
  ASSERT_TRUE(data.ok()) << data.status();
  std::vector<float> sample(64);
  ASSERT_TRUE((*data)->Read(0, sample.data()).ok());
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 8; ++x) {
      ASSERT_NEAR(sample[y * 8 + x] * 255, 4 * (5 * x + 12), 0.51) << y << "," << x;
    }
  }
  // RGB to grey: BT.601 luma of (200, 100, 50) = 124.2.
  ASSERT_TRUE((*data)->Read(2, sample.data()).ok());
  EXPECT_FLOAT_EQ(sample[0], 124 / 255.0f);
  // A larger shorter side crops more: 40 -> 80 scales 2x (bilinear) to
  // 120 x 80, whose center 8 x 8 starts at column 56: source column
  // (56 + x + 0.5) / 2 - 0.5 = 27.75 + x / 2.
  options.shorter_side = 80;
  auto zoomed = OpenImageFolder(Folder("classes"), options);
  ASSERT_TRUE(zoomed.ok());
  ASSERT_TRUE((*zoomed)->Read(0, sample.data()).ok());
  for (int x = 0; x < 8; ++x) {
    ASSERT_NEAR(sample[x] * 255, 4 * (27.75 + 0.5 * x), 0.51) << x;
  }
}

TEST(ImageFolderTest, FlatFoldersHaveNoLabels) {
  ImageFolderOptions options;
  options.height = options.width = 16;
  auto data = OpenImageFolder(Folder("flat"), options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->count(), 4);
  EXPECT_FALSE((*data)->has_labels());
  EXPECT_EQ((*data)->label(0), -1);
  EXPECT_NE((*data)->description().find("unlabelled"), std::string::npos);
}

TEST(ImageFolderTest, BadFilesAndFoldersAreNamed) {
  ImageFolderOptions options;
  options.height = options.width = 8;
  auto error = [&](const std::string& folder) {
    auto data = OpenImageFolder(Folder(folder), options);
    EXPECT_FALSE(data.ok()) << folder;
    return std::string(data.status().message());
  };
  EXPECT_NE(error("truncated_png").find("sample 1: "), std::string::npos);
  EXPECT_NE(error("truncated_png").find("b_bad.png: corrupt or truncated PNG"), std::string::npos)
      << error("truncated_png");
  // libjpeg reports a cut stream as a bad marker or as premature end.
  EXPECT_TRUE(error("truncated_jpg").find("sample 1: ") != std::string::npos &&
              error("truncated_jpg").find("b_bad.jpg: ") != std::string::npos &&
              error("truncated_jpg").find(" JPEG") != std::string::npos)
      << error("truncated_jpg");
  EXPECT_NE(error("not_image").find("x.png: neither a PNG nor a JPEG"), std::string::npos);
  EXPECT_NE(error("mixed").find("holds both images (loose.jpg) and class subdirectories (sub)"),
            std::string::npos);
  EXPECT_NE(error("empty").find("holds no .png or .jpg images"), std::string::npos);
  EXPECT_NE(error("absent").find("no such image folder"), std::string::npos);
  options.channels = 2;
  EXPECT_FALSE(OpenImageFolder(Folder("flat"), options).ok());
}

}  // namespace
}  // namespace gati
