// Where model inputs come from: a Dataset is `count()` samples of one shape,
// each read as float32 raw values (images as pixel / 255, in [0, 1]; other
// data as stored), before the model's normalization (model/preprocess.h),
// with an optional label per sample.
//
// Sources: Fashion-MNIST's IDX files (the built-in default, through
// ImageDataset) and NumPy .npy arrays (N, ...) of float32 or uint8, with an
// optional int64 labels .npy. Labels are optional everywhere: caches learn
// from the base model's answers; accuracy is reported only where labels
// exist.
#ifndef GATI_DATA_DATASET_H_
#define GATI_DATA_DATASET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/fashion_mnist.h"
#include "data/npy.h"
#include "gati/model.h"
#include "gati/status.h"

namespace gati {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t count() const = 0;
  // One sample's shape, without the batch dimension (e.g. {1, 28, 28}).
  virtual const std::vector<int64_t>& sample_shape() const = 0;
  int64_t sample_size() const;
  // Writes sample `i`'s sample_size() raw values to `out`. OutOfRange for
  // an index outside 0..count()-1.
  virtual absl::Status Read(int64_t i, float* out) const = 0;
  virtual bool has_labels() const = 0;
  // Sample `i`'s label, or -1 without labels.
  virtual int64_t label(int64_t i) const = 0;
  // What the data is, for manifests and messages ("train.npy (600 samples
  // of 3x32x32 uint8)").
  virtual std::string description() const = 0;
  // True when every raw value lies in [0, 1] (8-bit images, or float data
  // checked to be): what image-like transforms (trace frames) may clamp to.
  virtual bool unit_range() const = 0;
};

// A view of decoded 8-bit images (Fashion-MNIST's IDX files): samples
// 1 x rows x cols, pixel / 255. `images` must outlive the view.
std::unique_ptr<Dataset> ViewImages(const ImageDataset& images, std::string description);

// The same, owning the images.
std::unique_ptr<Dataset> OwnImages(ImageDataset images, std::string description);

// Opens a data source named on a command line: "fashion-mnist" (the
// built-in IDX files, split `split`), a directory of Fashion-MNIST gzip IDX
// files (split `split`), a .npy file (OpenNpyDataset, with `labels_path`),
// a recording (OpenRecording: a directory of shard-*.npy), or an image folder (OpenImageFolder, converted to `model`'s input shape
// and resize rule; needs `model`). A .npy or a folder is used whole,
// whatever `split` says: the user chooses which data builds and which
// evaluates. InvalidArgument for anything else; load errors name the file.
absl::StatusOr<std::unique_ptr<Dataset>> OpenDataSource(const std::string& spec,
                                                        const std::string& labels_path,
                                                        Split split,
                                                        const ModelMetadata* model = nullptr);

// `data` as it is, or, when its samples are `model`'s C x H x W images
// stored channels last ([H, W, C], as NumPy and PIL hold them), a view that
// reads them as C x H x W. A shape that already fits is never transposed.
std::unique_ptr<Dataset> ChannelsFirstFor(std::unique_ptr<Dataset> data,
                                          const ModelMetadata* model);

// Opens `data_path`, a .npy array (N, d1, ..., dk) with k in 1..3 of
// float32 or uint8 (uint8 is read as value / 255), and, when `labels_path`
// is not empty, an int64 .npy [N] of labels in 0..num_classes-1 (no upper
// check when num_classes is 0). Every value is checked when it opens.
// Errors name the file and, for a bad value, the sample index: missing,
// truncated or corrupt files, another dtype or rank, no samples, a float
// that is not finite, a label count that differs from N, a label out of
// range.
absl::StatusOr<std::unique_ptr<Dataset>> OpenNpyDataset(const std::string& data_path,
                                                        const std::string& labels_path,
                                                        int num_classes = 0);

// The same on an array already in memory, named `data_path` in errors;
// `description` empty: the default one.
absl::StatusOr<std::unique_ptr<Dataset>> FromNpyArray(NpyArray data, const std::string& data_path,
                                                      const std::string& labels_path,
                                                      int num_classes, std::string description);

// A recording of served traffic (gati serve --record DIR: DIR/MODEL holds
// shard-NNNNNN.npy files of raw float32 samples): every shard, in order,
// as one unlabelled dataset, checked like any .npy.
absl::StatusOr<std::unique_ptr<Dataset>> OpenRecording(const std::string& dir);

// The first `count` samples of `source` (all when count <= 0 or >= its
// count). `source` must outlive the view.
std::unique_ptr<Dataset> FirstSamples(const Dataset& source, int64_t count);

// The shape as "1x28x28".
std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace gati

#endif  // GATI_DATA_DATASET_H_
