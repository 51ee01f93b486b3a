#include "data/fashion_mnist.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <array>

#include "data/idx.h"
#include "testutil.h"

namespace gati {
namespace {

using testing::TempDir;

// Writes a gzip IDX file of unsigned bytes with `dims` and `data`.
void WriteIdxGz(const std::string& path, std::vector<uint32_t> dims,
                const std::vector<uint8_t>& data, uint8_t magic_type = 0x08) {
  std::string bytes = {0, 0, static_cast<char>(magic_type),
                       static_cast<char>(dims.size())};
  for (uint32_t dim : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      bytes.push_back(static_cast<char>((dim >> shift) & 0xff));
    }
  }
  bytes.append(data.begin(), data.end());
  gzFile file = gzopen(path.c_str(), "wb");
  gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(file);
}

// A fake Fashion-MNIST test file pair with `count` images.
void WriteFakeTestFiles(const TempDir& dir, uint32_t count,
                        uint32_t label_count, uint8_t label_value = 3) {
  WriteIdxGz(dir.File("t10k-images-idx3-ubyte.gz"), {count, 28, 28},
             std::vector<uint8_t>(size_t{count} * 28 * 28, 7));
  WriteIdxGz(dir.File("t10k-labels-idx1-ubyte.gz"), {label_count},
             std::vector<uint8_t>(label_count, label_value));
}

TEST(FashionMnistTest, SplitsFollowTheDataDiscipline) {
  auto train = LoadFashionMnist(Split::kTrain);
  auto validation = LoadFashionMnist(Split::kValidation);
  auto test = LoadFashionMnist(Split::kTest);
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_TRUE(validation.ok()) << validation.status();
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(train->count, 50000);
  EXPECT_EQ(validation->count, 10000);
  EXPECT_EQ(test->count, 10000);
  EXPECT_EQ(train->first_index, 0);
  EXPECT_EQ(validation->first_index, 50000);
  EXPECT_EQ(validation->pixels.size(), 10000u * 28 * 28);
  // Both files start with an ankle boot (class 9), a known fact of the data.
  EXPECT_EQ(train->labels[0], 9);
  EXPECT_EQ(test->labels[0], 9);
  // The test split is balanced: 1,000 images per class.
  std::array<int, 10> per_class{};
  for (int64_t label : test->labels) per_class[label]++;
  for (int count : per_class) EXPECT_EQ(count, 1000);
  // Validation continues the train file where the train split stops.
  auto whole_file = ReadIdxFile(std::string(kFashionMnistDir) +
                                "/train-images-idx3-ubyte.gz");
  ASSERT_TRUE(whole_file.ok());
  EXPECT_TRUE(std::equal(validation->pixels.begin(),
                         validation->pixels.begin() + 784,
                         whole_file->data.begin() + 50000 * 784));
}

TEST(FashionMnistTest, ParsesSplitNames) {
  EXPECT_EQ(*ParseSplit("validation"), Split::kValidation);
  EXPECT_ERROR(ParseSplit("dev").status(), absl::StatusCode::kInvalidArgument,
               "unknown split 'dev' (known: train, validation, test)");
}

TEST(FashionMnistTest, MissingFileNamesThePath) {
  TempDir dir;
  EXPECT_ERROR(LoadFashionMnist(Split::kTest, dir.File("")).status(),
               absl::StatusCode::kNotFound, "t10k-images-idx3-ubyte.gz");
}

TEST(FashionMnistTest, MismatchedImageAndLabelCountsAreAnError) {
  TempDir dir;
  WriteFakeTestFiles(dir, 10000, 9999);
  EXPECT_ERROR(LoadFashionMnist(Split::kTest, dir.File("")).status(),
               absl::StatusCode::kInvalidArgument,
               "holds 10000 images but");
}

TEST(FashionMnistTest, WrongImageCountIsAnError) {
  TempDir dir;
  WriteFakeTestFiles(dir, 100, 100);
  EXPECT_ERROR(LoadFashionMnist(Split::kTest, dir.File("")).status(),
               absl::StatusCode::kInvalidArgument,
               "expected 10000 images, found 100");
}

TEST(FashionMnistTest, OutOfRangeLabelIsAnError) {
  TempDir dir;
  WriteFakeTestFiles(dir, 10000, 10000, /*label_value=*/12);
  EXPECT_ERROR(LoadFashionMnist(Split::kTest, dir.File("")).status(),
               absl::StatusCode::kInvalidArgument, "label 12 of item 0");
}

TEST(FashionMnistTest, FakeFilesWithTheRightShapeLoad) {
  TempDir dir;
  WriteFakeTestFiles(dir, 10000, 10000);
  auto test = LoadFashionMnist(Split::kTest, dir.File(""));
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->labels[9999], 3);
  EXPECT_EQ(test->image(5)[100], 7);
}

TEST(IdxTest, TruncatedDataIsDataLoss) {
  TempDir dir;
  WriteIdxGz(dir.File("a.gz"), {10, 28, 28}, std::vector<uint8_t>(5000, 1));
  EXPECT_ERROR(ReadIdxFile(dir.File("a.gz")).status(),
               absl::StatusCode::kDataLoss,
               "truncated: header says 7840 bytes of data, found 5000");
}

TEST(IdxTest, TruncatedGzipStreamIsDataLoss) {
  TempDir dir;
  WriteIdxGz(dir.File("a.gz"), {100, 28, 28},
             std::vector<uint8_t>(78400, 9));
  std::string bytes = testing::ReadFile(dir.File("a.gz"));
  testing::WriteFile(dir.File("cut.gz"), bytes.substr(0, bytes.size() / 2));
  auto result = ReadIdxFile(dir.File("cut.gz"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss)
      << result.status();
}

TEST(IdxTest, CorruptGzipIsDataLoss) {
  TempDir dir;
  WriteIdxGz(dir.File("a.gz"), {100, 28, 28},
             std::vector<uint8_t>(78400, 9));
  std::string bytes = testing::ReadFile(dir.File("a.gz"));
  for (size_t i = 20; i < 40; ++i) bytes[i] = static_cast<char>(~bytes[i]);
  testing::WriteFile(dir.File("bad.gz"), bytes);
  auto result = ReadIdxFile(dir.File("bad.gz"));
  EXPECT_FALSE(result.ok());
  EXPECT_NE(std::string(result.status().message()).find("bad.gz"),
            std::string::npos);
}

TEST(IdxTest, BadMagicAndElementTypeAreRejected) {
  TempDir dir;
  testing::WriteFile(dir.File("text"), "hello, this is not IDX");
  EXPECT_ERROR(ReadIdxFile(dir.File("text")).status(),
               absl::StatusCode::kInvalidArgument, "not an IDX file");
  WriteIdxGz(dir.File("f.gz"), {2}, {0, 0, 0, 0, 0, 0, 0, 0}, 0x0D);
  EXPECT_ERROR(ReadIdxFile(dir.File("f.gz")).status(),
               absl::StatusCode::kInvalidArgument, "element type 0xd");
}

TEST(IdxTest, TrailingBytesAreDataLoss) {
  TempDir dir;
  WriteIdxGz(dir.File("a.gz"), {4}, {1, 2, 3, 4, 5});
  EXPECT_ERROR(ReadIdxFile(dir.File("a.gz")).status(),
               absl::StatusCode::kDataLoss, "trailing bytes");
}

}  // namespace
}  // namespace gati
