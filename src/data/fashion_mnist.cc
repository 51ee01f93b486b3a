#include "data/fashion_mnist.h"

#include "absl/strings/str_cat.h"
#include "data/idx.h"

namespace gati {
namespace {

constexpr int64_t kTrainFileCount = 60000;
constexpr int64_t kTestFileCount = 10000;
constexpr int64_t kTrainSplitEnd = 50000;
constexpr int64_t kSide = 28;

}  // namespace

const char* SplitName(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kValidation: return "validation";
    case Split::kTest: return "test";
  }
  return "unknown";
}

absl::StatusOr<Split> ParseSplit(const std::string& name) {
  for (Split split : {Split::kTrain, Split::kValidation, Split::kTest}) {
    if (name == SplitName(split)) return split;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown split '", name, "' (known: train, validation, test)"));
}

absl::StatusOr<ImageDataset> LoadFashionMnist(Split split,
                                              const std::string& dir) {
  const bool from_train_file = split != Split::kTest;
  const std::string prefix = from_train_file ? "train" : "t10k";
  const std::string images_path =
      absl::StrCat(dir, "/", prefix, "-images-idx3-ubyte.gz");
  const std::string labels_path =
      absl::StrCat(dir, "/", prefix, "-labels-idx1-ubyte.gz");
  const int64_t file_count = from_train_file ? kTrainFileCount : kTestFileCount;

  GATI_ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path));
  GATI_ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path));
  if (images.dims.size() != 3 || images.dims[1] != kSide ||
      images.dims[2] != kSide) {
    return absl::InvalidArgumentError(absl::StrCat(
        images_path, ": expected [N, 28, 28] images, found ",
        images.dims.size(), " dimensions"));
  }
  if (labels.dims.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(labels_path, ": expected a 1-D label array"));
  }
  if (images.dims[0] != labels.dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(
        images_path, " holds ", images.dims[0], " images but ", labels_path,
        " holds ", labels.dims[0], " labels"));
  }
  if (images.dims[0] != file_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        images_path, ": expected ", file_count, " images, found ",
        images.dims[0]));
  }

  int64_t begin = 0, end = file_count;
  if (split == Split::kTrain) end = kTrainSplitEnd;
  if (split == Split::kValidation) begin = kTrainSplitEnd;
  ImageDataset dataset;
  dataset.count = end - begin;
  dataset.rows = kSide;
  dataset.cols = kSide;
  dataset.first_index = begin;
  dataset.pixels.assign(images.data.begin() + begin * kSide * kSide,
                        images.data.begin() + end * kSide * kSide);
  dataset.labels.reserve(dataset.count);
  for (int64_t i = begin; i < end; ++i) {
    if (labels.data[i] >= kFashionMnistClasses) {
      return absl::InvalidArgumentError(absl::StrCat(
          labels_path, ": label ", int{labels.data[i]}, " of item ", i,
          " is out of range 0..", kFashionMnistClasses - 1));
    }
    dataset.labels.push_back(labels.data[i]);
  }
  return dataset;
}

}  // namespace gati
