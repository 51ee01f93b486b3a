#include "data/safetensors.h"

#include <gtest/gtest.h>

#include "data/file_io.h"
#include "testutil.h"

namespace gati {
namespace {

using testing::ReadFile;
using testing::TempDir;

TensorFile Sample() {
  TensorFile file;
  file.tensors["b"] = FloatTensor{{3}, {1.5f, -2.0f, 0.25f}};
  file.tensors["a.weight"] = FloatTensor{{2, 2}, {1, 2, 3, 4}};
  file.tensors["empty"] = FloatTensor{{0, 4}, {}};
  file.metadata["variant"] = "gap:linear";
  return file;
}

TEST(SafetensorsTest, RoundTrips) {
  auto bytes = SerializeSafetensors(Sample());
  ASSERT_TRUE(bytes.ok());
  auto parsed = ParseSafetensors(*bytes, "x.safetensors");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors.size(), 3u);
  EXPECT_EQ(parsed->tensors["a.weight"].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(parsed->tensors["b"].data, (std::vector<float>{1.5f, -2.0f, 0.25f}));
  EXPECT_EQ(parsed->metadata["variant"], "gap:linear");
  // Data starts 8-byte aligned.
  uint64_t header = 0;
  std::memcpy(&header, bytes->data(), 8);
  EXPECT_EQ(header % 8, 0u);
}

TEST(SafetensorsTest, TruncatedAndOverlongFilesAreDataLoss) {
  std::string bytes = *SerializeSafetensors(Sample());
  EXPECT_ERROR(ParseSafetensors(bytes.substr(0, bytes.size() - 4), "x").status(),
               absl::StatusCode::kDataLoss, "x: truncated");
  EXPECT_ERROR(ParseSafetensors(bytes.substr(0, 20), "x").status(),
               absl::StatusCode::kDataLoss, "truncated inside the header");
  EXPECT_ERROR(ParseSafetensors(bytes.substr(0, 5), "x").status(),
               absl::StatusCode::kDataLoss, "truncated");
  EXPECT_ERROR(ParseSafetensors(bytes + "junk", "x").status(),
               absl::StatusCode::kDataLoss, "after the last tensor");
}

TEST(SafetensorsTest, MalformedHeadersAreRejected) {
  auto with_header = [](const std::string& json) {
    std::string out(8, '\0');
    uint64_t size = json.size();
    std::memcpy(out.data(), &size, 8);
    return out + json;
  };
  EXPECT_ERROR(ParseSafetensors(with_header("[1,2]"), "x").status(),
               absl::StatusCode::kInvalidArgument, "not a JSON object");
  EXPECT_ERROR(
      ParseSafetensors(with_header(R"({"t":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})") + "ab",
                       "x")
          .status(),
      absl::StatusCode::kInvalidArgument, "is not F32");
  EXPECT_ERROR(
      ParseSafetensors(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})") + "abcd",
                       "x")
          .status(),
      absl::StatusCode::kInvalidArgument, "do not match the shape");
  EXPECT_ERROR(
      ParseSafetensors(
          with_header(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                      R"("u":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})") +
              "abcd",
          "x")
          .status(),
      absl::StatusCode::kInvalidArgument, "overlaps");
  EXPECT_ERROR(
      ParseSafetensors(with_header(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})") + "abcd",
                       "x")
          .status(),
      absl::StatusCode::kInvalidArgument, "bad dimension");
  TensorFile wrong;
  wrong.tensors["t"] = FloatTensor{{2, 2}, {1, 2, 3}};
  EXPECT_FALSE(SerializeSafetensors(wrong).ok());
}

TEST(FileIoTest, Sha256MatchesTheStandardVector) {
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(FileIoTest, AtomicWriteReplacesTheWholeFile) {
  TempDir dir;
  const std::string path = dir.File("f.bin");
  ASSERT_TRUE(WriteFileAtomic(path, "first version, longer").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  EXPECT_EQ(ReadFile(path), "second");
  auto read = ReadFileBytes(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, "second");
  EXPECT_ERROR(ReadFileBytes(dir.File("missing")).status(),
               absl::StatusCode::kNotFound, "missing: cannot open");
  EXPECT_ERROR(WriteFileAtomic(dir.File("no/such/dir/f"), "x"),
               absl::StatusCode::kPermissionDenied, "cannot create");
}

}  // namespace
}  // namespace gati
