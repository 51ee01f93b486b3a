// Turning raw 8-bit images into normalized model input.
#ifndef GATI_MODEL_INPUT_H_
#define GATI_MODEL_INPUT_H_

#include <cstdint>

#include "gati/model.h"

namespace gati {

// Converts `count` images of `metadata.input_shape` 8-bit pixels (row-major,
// channel-first, values 0..255, stored back to back in `pixels`) into a
// float32 [count, C, H, W] tensor on the CPU normalized as the metadata says:
// (pixel / 255 - mean[c]) / std[c]. Fails when count < 1.
absl::StatusOr<at::Tensor> ImagesToInput(const uint8_t* pixels, int64_t count,
                                         const ModelMetadata& metadata);

}  // namespace gati

#endif  // GATI_MODEL_INPUT_H_
