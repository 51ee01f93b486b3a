// Turning raw 8-bit images into normalized model input.
#ifndef GATI_MODEL_INPUT_H_
#define GATI_MODEL_INPUT_H_

#include <cstdint>

#include <vector>

#include "data/dataset.h"
#include "data/preprocess.h"
#include "gati/model.h"

namespace gati {

// Converts `count` images of `metadata.input_shape` 8-bit pixels (row-major,
// channel-first, values 0..255, stored back to back in `pixels`) into a
// float32 [count, C, H, W] tensor on the CPU normalized as the metadata says:
// (pixel / 255 - mean[c]) / std[c]. Fails when count < 1.
absl::StatusOr<at::Tensor> ImagesToInput(const uint8_t* pixels, int64_t count,
                                         const ModelMetadata& metadata);

// Samples `rows` of `data`, normalized by `preprocessor`, as a float32
// [rows.size(), input shape...] tensor on the CPU. Fails when rows is empty,
// the data's shape is not the model's, or a read fails.
absl::StatusOr<at::Tensor> ReadInputs(const Dataset& data, const std::vector<int64_t>& rows,
                                      const Preprocessor& preprocessor);

}  // namespace gati

#endif  // GATI_MODEL_INPUT_H_
