// Whole-file reads, atomic writes and content hashes.
#ifndef GATI_DATA_FILE_IO_H_
#define GATI_DATA_FILE_IO_H_

#include <string>
#include <string_view>

#include "gati/status.h"

namespace gati {

// Reads all of `path`. NotFound when it cannot be opened, DataLoss on a read
// error.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

// Writes `bytes` to a temporary file beside `path`, flushes it to disk and
// renames it over `path`, so readers see the old file or the whole new one.
absl::Status WriteFileAtomic(const std::string& path, std::string_view bytes);

// Lower-case hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);

}  // namespace gati

#endif  // GATI_DATA_FILE_IO_H_
