#include "data/npy.h"

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "data/file_io.h"

namespace gati {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr int64_t kMaxElements = int64_t{1} << 34;

absl::Status BadHeader(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": invalid NPY header: ", what));
}

// Returns the text of the value of `key` in the header dict, up to the
// next top-level ',' or '}' (parentheses are kept whole).
absl::StatusOr<absl::string_view> DictValue(absl::string_view header,
                                           absl::string_view key,
                                           const std::string& source) {
  std::string quoted = absl::StrCat("'", key, "'");
  size_t at = header.find(quoted);
  if (at == absl::string_view::npos) {
    return BadHeader(source, absl::StrCat("no ", quoted, " key"));
  }
  size_t colon = header.find(':', at + quoted.size());
  if (colon == absl::string_view::npos) {
    return BadHeader(source, absl::StrCat("no value for ", quoted));
  }
  size_t begin = colon + 1, end = begin;
  int depth = 0;
  for (; end < header.size(); ++end) {
    char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    if (depth < 0) break;
  }
  return absl::StripAsciiWhitespace(header.substr(begin, end - begin));
}

std::string HeaderDict(const NpyArray& array) {
  std::string shape;
  for (int64_t dim : array.shape) absl::StrAppend(&shape, dim, ", ");
  if (array.shape.size() > 1) shape.resize(shape.size() - 2);  // "(2, 3)"
  if (!shape.empty() && array.shape.size() == 1) shape.pop_back();  // "(5,)"
  return absl::StrCat("{'descr': '",
                      array.dtype == NpyDtype::kFloat32 ? "<f4"
                      : array.dtype == NpyDtype::kInt64 ? "<i8"
                                                        : "|u1",
                      "', 'fortran_order': False, 'shape': (", shape, "), }");
}

}  // namespace

int NpyElementSize(NpyDtype dtype) {
  return dtype == NpyDtype::kFloat32 ? 4 : dtype == NpyDtype::kInt64 ? 8 : 1;
}

size_t NpyArray::held() const {
  return dtype == NpyDtype::kFloat32 ? f32.size() : dtype == NpyDtype::kInt64 ? i64.size()
                                                                             : u8.size();
}

const char* NpyArray::raw_data() const {
  return dtype == NpyDtype::kFloat32 ? reinterpret_cast<const char*>(f32.data())
         : dtype == NpyDtype::kInt64 ? reinterpret_cast<const char*>(i64.data())
                                     : reinterpret_cast<const char*>(u8.data());
}

NpyArray NpyArray::Uint8(std::vector<int64_t> shape, std::vector<uint8_t> data) {
  NpyArray array;
  array.dtype = NpyDtype::kUint8;
  array.shape = std::move(shape);
  array.u8 = std::move(data);
  return array;
}

int64_t NpyArray::num_elements() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

NpyArray NpyArray::Float32(std::vector<int64_t> shape,
                           std::vector<float> data) {
  NpyArray array;
  array.dtype = NpyDtype::kFloat32;
  array.shape = std::move(shape);
  array.f32 = std::move(data);
  return array;
}

NpyArray NpyArray::Int64(std::vector<int64_t> shape,
                         std::vector<int64_t> data) {
  NpyArray array;
  array.dtype = NpyDtype::kInt64;
  array.shape = std::move(shape);
  array.i64 = std::move(data);
  return array;
}

absl::StatusOr<NpyArray> ParseNpy(std::string_view std_bytes,
                                  const std::string& source) {
  // Debian's Abseil has its own string_view type.
  absl::string_view bytes(std_bytes.data(), std_bytes.size());
  if (bytes.size() < kMagicSize + 4 ||
      std::memcmp(bytes.data(), kMagic, kMagicSize) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not an NPY file (bad magic)"));
  }
  const uint8_t major = static_cast<uint8_t>(bytes[6]);
  size_t header_len = 0, header_start = 0;
  auto byte = [&](size_t i) { return size_t{static_cast<uint8_t>(bytes[i])}; };
  if (major == 1) {
    header_len = byte(8) | (byte(9) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return BadHeader(source, "truncated");
    header_len = byte(8) | (byte(9) << 8) | (byte(10) << 16) | (byte(11) << 24);
    header_start = 12;
  } else {
    return BadHeader(source, absl::StrCat("format version ", int{major},
                                          " is not supported (1 to 3)"));
  }
  if (bytes.size() < header_start + header_len) {
    return absl::DataLossError(absl::StrCat(source, ": truncated NPY header"));
  }
  absl::string_view header = bytes.substr(header_start, header_len);
  if (header.empty() || header.front() != '{' ||
      header.find('}') == absl::string_view::npos) {
    return BadHeader(source, "not a dict");
  }

  NpyArray array;
  GATI_ASSIGN_OR_RETURN(absl::string_view descr,
                        DictValue(header, "descr", source));
  if (descr == "'<f4'") {
    array.dtype = NpyDtype::kFloat32;
  } else if (descr == "'<i8'") {
    array.dtype = NpyDtype::kInt64;
  } else if (descr == "'|u1'" || descr == "'<u1'" || descr == "'>u1'") {
    array.dtype = NpyDtype::kUint8;
  } else {
    return BadHeader(source, absl::StrCat("dtype ", descr,
                                          " is not supported (only '<f4' "
                                          "float32, '<i8' int64 and '|u1' uint8)"));
  }
  GATI_ASSIGN_OR_RETURN(absl::string_view fortran,
                        DictValue(header, "fortran_order", source));
  if (fortran == "True") {
    return BadHeader(source, "Fortran-order arrays are not supported");
  }
  if (fortran != "False") {
    return BadHeader(source, absl::StrCat("bad fortran_order ", fortran));
  }
  GATI_ASSIGN_OR_RETURN(absl::string_view shape_text,
                        DictValue(header, "shape", source));
  if (shape_text.size() < 2 || shape_text.front() != '(' ||
      shape_text.back() != ')') {
    return BadHeader(source, absl::StrCat("bad shape ", shape_text));
  }
  shape_text = shape_text.substr(1, shape_text.size() - 2);
  int64_t count = 1;
  for (absl::string_view part : absl::StrSplit(shape_text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) continue;  // The trailing comma of "(5,)".
    int64_t dim = 0;
    if (!absl::SimpleAtoi(part, &dim) || dim < 0) {
      return BadHeader(source, absl::StrCat("bad dimension '", part, "'"));
    }
    array.shape.push_back(dim);
    count *= dim;
    if (count > kMaxElements) return BadHeader(source, "array too large");
  }

  const size_t element_size = NpyElementSize(array.dtype);
  const size_t data_start = header_start + header_len;
  const size_t want = static_cast<size_t>(count) * element_size;
  const size_t have = bytes.size() - data_start;
  if (have != want) {
    return absl::DataLossError(absl::StrCat(
        source, ": shape (", absl::StrJoin(array.shape, ", "), ") needs ",
        want, " data bytes, file has ", have));
  }
  if (array.dtype == NpyDtype::kFloat32) {
    array.f32.resize(count);
    std::memcpy(array.f32.data(), bytes.data() + data_start, want);
  } else if (array.dtype == NpyDtype::kInt64) {
    array.i64.resize(count);
    std::memcpy(array.i64.data(), bytes.data() + data_start, want);
  } else {
    array.u8.resize(count);
    std::memcpy(array.u8.data(), bytes.data() + data_start, want);
  }
  return array;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  GATI_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(path));
  return ParseNpy(bytes, path);
}

absl::StatusOr<std::string> SerializeNpy(const NpyArray& array) {
  for (int64_t dim : array.shape) {
    if (dim < 0) return absl::InvalidArgumentError("negative NPY dimension");
  }
  const size_t count = static_cast<size_t>(array.num_elements());
  const size_t held = array.held();
  if (held != count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "NPY data holds ", held, " elements but the shape needs ", count));
  }
  std::string header = HeaderDict(array);
  // Pad with spaces so that data starts on a 64-byte boundary.
  bool v2 = header.size() + 11 > 65535;
  size_t prefix = v2 ? 12 : 10;
  size_t total = prefix + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out(kMagic, kMagicSize);
  out.push_back(static_cast<char>(v2 ? 2 : 1));
  out.push_back(0);
  uint32_t len = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < (v2 ? 4u : 2u); ++i) {
    out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  }
  out += header;
  out.append(array.raw_data(), count * NpyElementSize(array.dtype));
  return out;
}

absl::Status WriteNpy(const std::string& path, const NpyArray& array) {
  GATI_ASSIGN_OR_RETURN(std::string bytes, SerializeNpy(array));
  return WriteFileAtomic(path, bytes);
}

}  // namespace gati
