// NPY (NumPy's .npy, format 1.0-3.0) reader and writer for float32, int64
// and uint8 arrays: traces, labels and user data (images as uint8).
#ifndef GATI_DATA_NPY_H_
#define GATI_DATA_NPY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gati/status.h"

namespace gati {

enum class NpyDtype { kFloat32, kInt64, kUint8 };

// Bytes per element of `dtype`.
int NpyElementSize(NpyDtype dtype);

// A C-order (row-major) array: element (i, j) of a [n, m] array is at
// index i * m + j of f32 or i64, whichever the dtype says.
struct NpyArray {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<int64_t> shape;  // Empty shape = a scalar (one element).
  std::vector<float> f32;      // Holds the data when dtype == kFloat32.
  std::vector<int64_t> i64;    // Holds the data when dtype == kInt64.
  std::vector<uint8_t> u8;     // Holds the data when dtype == kUint8.

  int64_t num_elements() const;
  static NpyArray Float32(std::vector<int64_t> shape, std::vector<float> data);
  static NpyArray Int64(std::vector<int64_t> shape, std::vector<int64_t> data);
  static NpyArray Uint8(std::vector<int64_t> shape, std::vector<uint8_t> data);
  // Elements held by the vector of the array's dtype.
  size_t held() const;
  const char* raw_data() const;
};

// Parses the bytes of a .npy file. `source` names it in errors. Fails with
// InvalidArgument for a bad magic or header, an unsupported dtype (only
// little-endian float32 '<f4', int64 '<i8' and uint8 '|u1') or Fortran
// order, and with
// DataLoss when the data is shorter or longer than the shape says.
absl::StatusOr<NpyArray> ParseNpy(std::string_view bytes,
                                  const std::string& source);

// Reads and parses `path`; NotFound when it does not exist.
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// Serializes to .npy format 1.0 (2.0 when the header needs it). Fails when
// the data size does not match the shape.
absl::StatusOr<std::string> SerializeNpy(const NpyArray& array);

// Writes atomically: to a temporary file beside `path`, then renamed.
absl::Status WriteNpy(const std::string& path, const NpyArray& array);

}  // namespace gati

#endif  // GATI_DATA_NPY_H_
