#include "data/idx.h"

#include <zlib.h>

#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"

namespace gati {
namespace {

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly `size` bytes; returns how many were read, or -1 on error.
int64_t ReadFully(gzFile file, uint8_t* out, int64_t size) {
  int64_t total = 0;
  while (total < size) {
    unsigned chunk = static_cast<unsigned>(
        std::min<int64_t>(size - total, 1 << 30));
    int got = gzread(file, out + total, chunk);
    if (got < 0) return -1;
    if (got == 0) break;
    total += got;
  }
  return total;
}

std::string GzError(gzFile file) {
  int code = 0;
  const char* message = gzerror(file, &code);
  return message ? message : "unknown error";
}

}  // namespace

absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  }
  uint8_t magic[4];
  int64_t got = ReadFully(file.get(), magic, 4);
  if (got < 0) {
    return absl::DataLossError(absl::StrCat(path, ": corrupt: ",
                                            GzError(file.get())));
  }
  if (got < 4) {
    return absl::DataLossError(absl::StrCat(path, ": truncated IDX header"));
  }
  if (magic[0] != 0 || magic[1] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not an IDX file (bad magic)"));
  }
  if (magic[2] != 0x08) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": IDX element type 0x", absl::Hex(magic[2]),
        " is not supported (only unsigned bytes, 0x08)"));
  }
  const int num_dims = magic[3];
  if (num_dims < 1 || num_dims > 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": IDX dimension count ", num_dims,
                     " is not supported (1 to 4)"));
  }
  IdxArray array;
  int64_t count = 1;
  for (int d = 0; d < num_dims; ++d) {
    uint8_t bytes[4];
    if (ReadFully(file.get(), bytes, 4) != 4) {
      return absl::DataLossError(absl::StrCat(path, ": truncated IDX header"));
    }
    int64_t dim = (int64_t{bytes[0]} << 24) | (int64_t{bytes[1]} << 16) |
                  (int64_t{bytes[2]} << 8) | int64_t{bytes[3]};
    array.dims.push_back(dim);
    count *= dim;
    if (count > (int64_t{1} << 34)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": IDX array too large"));
    }
  }
  array.data.resize(count);
  got = ReadFully(file.get(), array.data.data(), count);
  if (got < 0) {
    return absl::DataLossError(absl::StrCat(path, ": corrupt: ",
                                            GzError(file.get())));
  }
  if (got < count) {
    return absl::DataLossError(absl::StrCat(path, ": truncated: header says ",
                                            count, " bytes of data, found ",
                                            got));
  }
  uint8_t extra;
  got = ReadFully(file.get(), &extra, 1);
  if (got != 0) {
    return absl::DataLossError(absl::StrCat(
        path, got < 0 ? ": corrupt: " + GzError(file.get())
                      : ": trailing bytes after the IDX data"));
  }
  return array;
}

}  // namespace gati
