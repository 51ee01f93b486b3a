// Fashion-MNIST (60k train + 10k test 28x28 grey images, 10 classes), read
// from the gzip IDX files of Debian's dataset-fashion-mnist package, exposed
// as the splits of DESIGN.md's data discipline:
//   train      = train file images      0 .. 49,999  (base model training)
//   validation = train file images 50,000 .. 59,999  (building caches)
//   test       = test file images       0 ..  9,999  (evaluation, traces)
#ifndef GATI_DATA_FASHION_MNIST_H_
#define GATI_DATA_FASHION_MNIST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "gati/status.h"

namespace gati {

inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";
inline constexpr int kFashionMnistClasses = 10;

enum class Split { kTrain, kValidation, kTest };

// "train", "validation", "test".
const char* SplitName(Split split);
// Parses a split name; InvalidArgument listing the names otherwise.
absl::StatusOr<Split> ParseSplit(const std::string& name);

// Images and labels of one split.
struct ImageDataset {
  int64_t count = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  // Image i, pixel (r, c) is pixels[i * rows * cols + r * cols + c], 0..255.
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;  // 0 .. kFashionMnistClasses-1.
  // Index of image 0 in the file it came from (e.g. 50,000 for validation).
  int64_t first_index = 0;
  const uint8_t* image(int64_t i) const {
    return pixels.data() + i * rows * cols;
  }
};

// Loads `split` from `dir`. Fails, naming the file, when a file is missing,
// truncated or corrupt, when images and labels disagree in count, when the
// files do not hold 60,000 train / 10,000 test 28x28 images, or when a label
// is out of range.
absl::StatusOr<ImageDataset> LoadFashionMnist(
    Split split, const std::string& dir = kFashionMnistDir);

}  // namespace gati

#endif  // GATI_DATA_FASHION_MNIST_H_
