#include "data/npy.h"

#include <gtest/gtest.h>

#include "testutil.h"

namespace gati {
namespace {

using testing::FixturePath;
using testing::TempDir;

TEST(NpyTest, ReadsFloat32WrittenByNumpy) {
  auto array = ReadNpy(FixturePath("floats.npy"));
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->dtype, NpyDtype::kFloat32);
  EXPECT_EQ(array->shape, (std::vector<int64_t>{2, 3, 4}));
  ASSERT_EQ(array->f32.size(), 24u);
  for (int i = 0; i < 24; ++i) EXPECT_FLOAT_EQ(array->f32[i], i / 8.0f);
}

TEST(NpyTest, ReadsInt64WrittenByNumpy) {
  auto array = ReadNpy(FixturePath("ints.npy"));
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->dtype, NpyDtype::kInt64);
  EXPECT_EQ(array->shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(array->i64, (std::vector<int64_t>{-3, 0, 7, int64_t{1} << 40}));
}

TEST(NpyTest, ReadsAndWritesUint8AsNumpyDoes) {
  auto array = ReadNpy(FixturePath("bytes.npy"));
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->dtype, NpyDtype::kUint8);
  EXPECT_EQ(array->shape, (std::vector<int64_t>{2, 3, 4}));
  ASSERT_EQ(array->u8.size(), 24u);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(array->u8[i], i * 10);
  EXPECT_EQ(*SerializeNpy(*array), testing::ReadFile(FixturePath("bytes.npy")));
}

TEST(NpyTest, WritesBytesIdenticalToNumpy) {
  auto array = ReadNpy(FixturePath("floats.npy"));
  ASSERT_TRUE(array.ok());
  auto bytes = SerializeNpy(*array);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, testing::ReadFile(FixturePath("floats.npy")));
  auto ints = ReadNpy(FixturePath("ints.npy"));
  ASSERT_TRUE(ints.ok());
  EXPECT_EQ(*SerializeNpy(*ints), testing::ReadFile(FixturePath("ints.npy")));
}

TEST(NpyTest, RoundTripsThroughAFile) {
  TempDir dir;
  NpyArray labels = NpyArray::Int64({3, 2}, {1, 2, 3, 4, 5, 6});
  ASSERT_TRUE(WriteNpy(dir.File("labels.npy"), labels).ok());
  auto back = ReadNpy(dir.File("labels.npy"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->shape, labels.shape);
  EXPECT_EQ(back->i64, labels.i64);
  NpyArray scalar = NpyArray::Float32({}, {2.5f});
  ASSERT_TRUE(WriteNpy(dir.File("scalar.npy"), scalar).ok());
  auto scalar_back = ReadNpy(dir.File("scalar.npy"));
  ASSERT_TRUE(scalar_back.ok()) << scalar_back.status();
  EXPECT_TRUE(scalar_back->shape.empty());
  EXPECT_EQ(scalar_back->f32, std::vector<float>{2.5f});
}

TEST(NpyTest, RefusesToWriteDataThatDoesNotMatchTheShape) {
  TempDir dir;
  EXPECT_ERROR(WriteNpy(dir.File("x.npy"), NpyArray::Float32({2, 2}, {1})),
               absl::StatusCode::kInvalidArgument, "holds 1 elements");
  EXPECT_FALSE(std::filesystem::exists(dir.File("x.npy")));
}

TEST(NpyTest, RejectsUnsupportedDtypeAndOrder) {
  EXPECT_ERROR(ReadNpy(FixturePath("float64.npy")).status(),
               absl::StatusCode::kInvalidArgument, "dtype '<f8'");
  EXPECT_ERROR(ReadNpy(FixturePath("fortran.npy")).status(),
               absl::StatusCode::kInvalidArgument, "Fortran-order");
}

TEST(NpyTest, RejectsTruncatedAndOverlongData) {
  std::string bytes = testing::ReadFile(FixturePath("floats.npy"));
  EXPECT_ERROR(ParseNpy(bytes.substr(0, bytes.size() - 4), "t.npy").status(),
               absl::StatusCode::kDataLoss, "needs 96 data bytes, file has 92");
  EXPECT_ERROR(ParseNpy(bytes + "xxxx", "t.npy").status(),
               absl::StatusCode::kDataLoss, "file has 100");
  EXPECT_ERROR(ParseNpy(bytes.substr(0, 20), "t.npy").status(),
               absl::StatusCode::kDataLoss, "truncated NPY header");
}

TEST(NpyTest, RejectsBadMagicAndBadHeaders) {
  EXPECT_ERROR(ParseNpy("hello world, not npy", "h.npy").status(),
               absl::StatusCode::kInvalidArgument, "h.npy: not an NPY file");
  std::string bytes = testing::ReadFile(FixturePath("floats.npy"));
  std::string bad_shape = bytes;
  bad_shape.replace(bad_shape.find("(2, 3, 4)"), 9, "(2, x, 4)");
  EXPECT_ERROR(ParseNpy(bad_shape, "s.npy").status(),
               absl::StatusCode::kInvalidArgument, "bad dimension 'x'");
  std::string no_descr = bytes;
  no_descr.replace(no_descr.find("'descr'"), 7, "'dtype'");
  EXPECT_ERROR(ParseNpy(no_descr, "d.npy").status(),
               absl::StatusCode::kInvalidArgument, "no 'descr' key");
  std::string version = bytes;
  version[6] = 9;
  EXPECT_ERROR(ParseNpy(version, "v.npy").status(),
               absl::StatusCode::kInvalidArgument, "format version 9");
}

TEST(NpyTest, MissingFileIsNotFound) {
  EXPECT_ERROR(ReadNpy("/nonexistent/x.npy").status(),
               absl::StatusCode::kNotFound, "/nonexistent/x.npy");
}

}  // namespace
}  // namespace gati
