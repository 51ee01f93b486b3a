// Reader for IDX files (the MNIST family's format), plain or gzip-compressed.
//
// Layout: magic (2 zero bytes, a type byte, a dimension-count byte), then one
// big-endian uint32 per dimension, then the elements row-major. Only unsigned
// byte elements (type 0x08) are supported.
#ifndef GATI_DATA_IDX_H_
#define GATI_DATA_IDX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "gati/status.h"

namespace gati {

struct IdxArray {
  std::vector<int64_t> dims;
  // Element i of a [d0, d1, ...] array is at data[i0*d1*... + ...].
  std::vector<uint8_t> data;
};

// Reads `path` (gzip or plain; zlib detects which). Fails with NotFound when
// the file is missing, DataLoss when it is truncated, corrupt or has trailing
// bytes, and InvalidArgument for a bad magic or element type. Errors name
// `path`.
absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path);

}  // namespace gati

#endif  // GATI_DATA_IDX_H_
