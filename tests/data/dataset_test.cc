// Data sources (Dataset: NPY files, decoded images, prefixes, the command
// line's source names) and the one Preprocessor.
#include "data/dataset.h"

#include <gtest/gtest.h>

#include <cmath>

#include "data/preprocess.h"
#include "testutil.h"

namespace gati {
namespace {

using testing::TempDir;

void Save(const std::string& path, const NpyArray& array) {
  ASSERT_TRUE(WriteNpy(path, array).ok());
}

TEST(DatasetTest, NpyUint8IsReadAsPixelsOver255WithLabels) {
  TempDir dir;
  std::vector<uint8_t> bytes(2 * 3 * 2 * 2);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 10);
  Save(dir.File("x.npy"), NpyArray::Uint8({2, 3, 2, 2}, bytes));
  Save(dir.File("y.npy"), NpyArray::Int64({2}, {4, 1}));
  auto data = OpenNpyDataset(dir.File("x.npy"), dir.File("y.npy"), 5);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->count(), 2);
  EXPECT_EQ((*data)->sample_shape(), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ((*data)->sample_size(), 12);
  EXPECT_TRUE((*data)->unit_range());
  std::vector<float> sample(12);
  ASSERT_TRUE((*data)->Read(1, sample.data()).ok());
  for (int k = 0; k < 12; ++k) EXPECT_FLOAT_EQ(sample[k], (12 + k) * 10 / 255.0f);
  EXPECT_TRUE((*data)->has_labels());
  EXPECT_EQ((*data)->label(0), 4);
  EXPECT_EQ((*data)->label(1), 1);
  EXPECT_NE((*data)->description().find("2 samples of 3x2x2 uint8"), std::string::npos)
      << (*data)->description();
  EXPECT_EQ((*data)->Read(2, sample.data()).code(), absl::StatusCode::kOutOfRange);
}

TEST(DatasetTest, NpyFloatOfAnyRankWithoutLabels) {
  TempDir dir;
  // Feature vectors [D] with values outside [0, 1]: not an image.
  Save(dir.File("v.npy"), NpyArray::Float32({3, 4}, {-2, 0, 1, 5, 0, 0, 0, 0, 1, 2, 3, 4}));
  auto data = OpenNpyDataset(dir.File("v.npy"), "");
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->sample_shape(), (std::vector<int64_t>{4}));
  EXPECT_FALSE((*data)->has_labels());
  EXPECT_EQ((*data)->label(0), -1);
  EXPECT_FALSE((*data)->unit_range());
  std::vector<float> sample(4);
  ASSERT_TRUE((*data)->Read(0, sample.data()).ok());
  EXPECT_EQ(sample, (std::vector<float>{-2, 0, 1, 5}));
  // The first N samples only.
  auto first = FirstSamples(**data, 2);
  EXPECT_EQ(first->count(), 2);
  EXPECT_EQ(first->Read(2, sample.data()).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(FirstSamples(**data, 0)->count(), 3);
}

TEST(DatasetTest, BadNpyDataNamesTheFileAndTheSample) {
  TempDir dir;
  auto error = [&](const std::string& data, const std::string& labels, int classes = 0) {
    auto opened = OpenNpyDataset(data, labels, classes);
    EXPECT_FALSE(opened.ok());
    return std::string(opened.status().message());
  };
  std::vector<float> values(2 * 1 * 2 * 2, 0.5f);
  values[6] = std::nanf("");
  Save(dir.File("nan.npy"), NpyArray::Float32({2, 1, 2, 2}, values));
  EXPECT_NE(error(dir.File("nan.npy"), "").find("nan.npy: sample 1 holds a value that is not "
                                                "finite (nan at element 2)"),
            std::string::npos);
  Save(dir.File("ok.npy"), NpyArray::Float32({2, 1, 2, 2}, std::vector<float>(8, 0.5f)));
  Save(dir.File("three.npy"), NpyArray::Int64({3}, {0, 1, 2}));
  EXPECT_NE(error(dir.File("ok.npy"), dir.File("three.npy")).find("has 3 labels for the 2 samples"),
            std::string::npos);
  Save(dir.File("big.npy"), NpyArray::Int64({2}, {0, 7}));
  EXPECT_NE(error(dir.File("ok.npy"), dir.File("big.npy"), 5)
                .find("label 7 of sample 1 is outside the model's classes 0..4"),
            std::string::npos);
  Save(dir.File("negative.npy"), NpyArray::Int64({2}, {-1, 0}));
  EXPECT_NE(error(dir.File("ok.npy"), dir.File("negative.npy")).find("label -1 of sample 0 is negative"),
            std::string::npos);
  Save(dir.File("float_labels.npy"), NpyArray::Float32({2}, {0, 1}));
  EXPECT_NE(error(dir.File("ok.npy"), dir.File("float_labels.npy")).find("must be an int64 array"),
            std::string::npos);
  EXPECT_NE(error(dir.File("three.npy"), "").find("holds int64 values"), std::string::npos);
  Save(dir.File("rank1.npy"), NpyArray::Float32({4}, {0, 0, 0, 0}));
  EXPECT_NE(error(dir.File("rank1.npy"), "").find("want (N, ...)"), std::string::npos);
  Save(dir.File("rank5.npy"), NpyArray::Float32({1, 1, 1, 1, 1}, {0}));
  EXPECT_NE(error(dir.File("rank5.npy"), "").find("1 to 3 dimensions per sample"),
            std::string::npos);
  Save(dir.File("empty.npy"), NpyArray::Float32({0, 3}, {}));
  EXPECT_NE(error(dir.File("empty.npy"), "").find("holds no samples"), std::string::npos);
  // Truncated: the bytes of a good file, cut short.
  std::string bytes = testing::ReadFile(dir.File("ok.npy"));
  testing::WriteFile(dir.File("cut.npy"), bytes.substr(0, bytes.size() - 5));
  EXPECT_NE(error(dir.File("cut.npy"), "").find("cut.npy"), std::string::npos);
  EXPECT_NE(error(dir.File("absent.npy"), "").find("absent.npy"), std::string::npos);
}

TEST(DatasetTest, DataSourcesByName) {
  TempDir dir;
  auto bad = OpenDataSource(dir.File("nothing-here"), "", Split::kTest);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not fashion-mnist, a directory"), std::string::npos);
  auto labels_for_idx = OpenDataSource("fashion-mnist", dir.File("y.npy"), Split::kTest);
  ASSERT_FALSE(labels_for_idx.ok());
  EXPECT_NE(labels_for_idx.status().message().find("--labels goes with a .npy"),
            std::string::npos);
  auto test = OpenDataSource("fashion-mnist", "", Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ((*test)->count(), 10000);
  EXPECT_EQ((*test)->sample_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_TRUE((*test)->has_labels());
  EXPECT_NE((*test)->description().find("test split"), std::string::npos);
  Save(dir.File("x.npy"), NpyArray::Float32({1, 2}, {0.5f, 0.25f}));
  auto npy = OpenDataSource(dir.File("x.npy"), "", Split::kValidation);
  ASSERT_TRUE(npy.ok()) << npy.status();
  EXPECT_EQ((*npy)->count(), 1);
}

ModelMetadata Metadata(std::vector<int64_t> shape, std::vector<float> mean,
                       std::vector<float> std) {
  ModelMetadata metadata;
  metadata.input_shape = std::move(shape);
  metadata.mean = std::move(mean);
  metadata.std = std::move(std);
  return metadata;
}

TEST(PreprocessorTest, NormalizesPerChannelForAnyRank) {
  auto image = Preprocessor::Create(Metadata({3, 1, 2}, {0.5f, 0.0f, 1.0f}, {0.5f, 2.0f, 1.0f}));
  ASSERT_TRUE(image.ok()) << image.status();
  std::vector<float> raw = {1, 0, 1, 1, 1, 0, /* second sample */ 0, 0, 0, 0, 0, 0};
  std::vector<float> out(raw.size());
  image->Apply(raw.data(), 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{1, -1, 0.5f, 0.5f, 0, -1, -1, -1, 0, 0, -1, -1}));
  // A feature vector [D]: one statistic per feature.
  auto vector = Preprocessor::Create(Metadata({2}, {1, 2}, {1, 4}));
  ASSERT_TRUE(vector.ok());
  std::vector<float> v = {3, 10};
  vector->Apply(v.data(), 1, v.data());
  EXPECT_EQ(v, (std::vector<float>{2, 2}));
  EXPECT_FALSE(Preprocessor::Create(Metadata({3, 2, 2}, {0}, {1})).ok());
  EXPECT_FALSE(Preprocessor::Create(Metadata({1, 2, 2}, {0}, {0})).ok());
  EXPECT_FALSE(Preprocessor::Create(Metadata({}, {}, {})).ok());
}

TEST(PreprocessorTest, ReadsRowsOfADatasetAndChecksItsShape) {
  TempDir dir;
  Save(dir.File("x.npy"), NpyArray::Uint8({3, 1, 1, 2}, {0, 255, 51, 102, 255, 0}));
  auto data = OpenNpyDataset(dir.File("x.npy"), "");
  ASSERT_TRUE(data.ok());
  auto pre = Preprocessor::Create(Metadata({1, 1, 2}, {0.2f}, {0.5f}));
  ASSERT_TRUE(pre.ok());
  ASSERT_TRUE(pre->CheckShape(**data).ok());
  std::vector<float> out;
  ASSERT_TRUE(pre->ReadNormalized(**data, {2, 0}, &out).ok());
  ASSERT_EQ(out.size(), 4u);
  EXPECT_FLOAT_EQ(out[0], (1.0f - 0.2f) / 0.5f);
  EXPECT_FLOAT_EQ(out[1], (0.0f - 0.2f) / 0.5f);
  EXPECT_FLOAT_EQ(out[3], (1.0f - 0.2f) / 0.5f);
  auto other = Preprocessor::Create(Metadata({1, 2, 1}, {0}, {1}));
  ASSERT_TRUE(other.ok());
  absl::Status mismatch = other->CheckShape(**data);
  EXPECT_NE(mismatch.message().find("takes inputs of shape 1x2x1"), std::string::npos);
  EXPECT_NE(mismatch.message().find("has samples of 1x1x2"), std::string::npos);
}

}  // namespace
}  // namespace gati
