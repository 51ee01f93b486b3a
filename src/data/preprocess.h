// The one place where raw inputs become model inputs: per-channel
// normalization as the model's metadata says, model input = (raw - mean[c])
// / std[c], where c is the index along the input shape's first dimension
// (the channel of a C x H x W image; the feature of a [D] vector). Build,
// trace checks, replay and eval all use it; the Python client applies the
// same metadata (gati.normalization in /config).
#ifndef GATI_DATA_PREPROCESS_H_
#define GATI_DATA_PREPROCESS_H_

#include <cstdint>
#include <vector>

#include "data/dataset.h"
#include "gati/model.h"
#include "gati/status.h"

namespace gati {

class Preprocessor {
 public:
  // InvalidArgument when the metadata's shape is empty or its mean / std do
  // not give one value per channel (std > 0).
  static absl::StatusOr<Preprocessor> Create(const ModelMetadata& metadata);

  const std::vector<int64_t>& input_shape() const { return shape_; }
  int64_t sample_size() const { return sample_size_; }

  // Normalizes `count` raw samples (row-major, input_shape() each) from
  // `raw` into `out` (which may be `raw`).
  void Apply(const float* raw, int64_t count, float* out) const;

  // InvalidArgument, naming both shapes and `data`'s description, when
  // `data`'s samples do not have the model's input shape.
  absl::Status CheckShape(const Dataset& data) const;

  // Reads samples `rows` of `data` and normalizes them into `out`
  // (rows.size() x sample_size() values). REQUIRES: CheckShape(data).
  absl::Status ReadNormalized(const Dataset& data, const std::vector<int64_t>& rows,
                              std::vector<float>* out) const;
  // The same into `out`, which holds rows.size() x sample_size() floats.
  absl::Status ReadNormalized(const Dataset& data, const std::vector<int64_t>& rows,
                              float* out) const;

 private:
  std::vector<int64_t> shape_;
  int64_t sample_size_ = 0;
  int64_t plane_ = 1;  // Values per channel.
  std::vector<float> mean_, std_;
};

}  // namespace gati

#endif  // GATI_DATA_PREPROCESS_H_
