// The safetensors file format (huggingface/safetensors) for float32 tensors:
// an 8-byte little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//    "__metadata__": {"key": "value", ...}}
// then the tensors' bytes back to back. Readable by Python's safetensors and
// by numpy with a few lines; used for learned-cache weights.
#ifndef GATI_DATA_SAFETENSORS_H_
#define GATI_DATA_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "gati/status.h"

namespace gati {

struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;  // C order; size = product of shape.
};

struct TensorFile {
  std::map<std::string, FloatTensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Serializes `file`. Fails when a tensor's data size does not match its shape.
absl::StatusOr<std::string> SerializeSafetensors(const TensorFile& file);

// Parses safetensors bytes; `source` names the file in errors. Fails with
// DataLoss when the file is truncated or longer than its header says, and
// with InvalidArgument for a malformed header, a dtype other than F32,
// offsets that overlap, leave gaps or do not match the shape.
absl::StatusOr<TensorFile> ParseSafetensors(std::string_view bytes,
                                            const std::string& source);

}  // namespace gati

#endif  // GATI_DATA_SAFETENSORS_H_
