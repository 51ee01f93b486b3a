#include "data/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace gati {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100 << 20;

int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

}  // namespace

absl::StatusOr<std::string> SerializeSafetensors(const TensorFile& file) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    for (int64_t dim : tensor.shape) {
      if (dim < 0) return absl::InvalidArgumentError(name + ": negative dimension");
    }
    if (static_cast<int64_t>(tensor.data.size()) != Elements(tensor.shape)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": holds ", tensor.data.size(), " values, shape needs ",
          Elements(tensor.shape)));
    }
    uint64_t end = offset + tensor.data.size() * sizeof(float);
    header[name] = {{"dtype", "F32"},
                    {"shape", tensor.shape},
                    {"data_offsets", {offset, end}}};
    offset = end;
  }
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::string text = header.dump();
  // Pad so that the data starts 8-byte aligned, as the format recommends.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t size = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((size >> (8 * i)) & 0xff);
  out += text;
  for (const auto& [name, tensor] : file.tensors) {
    out.append(reinterpret_cast<const char*>(tensor.data.data()),
               tensor.data.size() * sizeof(float));
  }
  return out;
}

absl::StatusOr<TensorFile> ParseSafetensors(std::string_view bytes,
                                            const std::string& source) {
  auto bad = [&source](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", why));
  };
  if (bytes.size() < 8) {
    return absl::DataLossError(absl::StrCat(source, ": truncated (",
                                            bytes.size(), " bytes)"));
  }
  uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) {
    header_size |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  }
  if (header_size > kMaxHeaderBytes) return bad("header length is implausible");
  if (bytes.size() < 8 + header_size) {
    return absl::DataLossError(absl::StrCat(source, ": truncated inside the header"));
  }
  json header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + header_size,
                            nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return bad("header is not a JSON object");
  }
  const std::string_view data = bytes.substr(8 + header_size);
  TensorFile file;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return bad("__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) return bad("metadata '" + key + "' is not a string");
        file.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") ||
        !entry.contains("shape") || !entry.contains("data_offsets")) {
      return bad(where + " lacks dtype, shape or data_offsets");
    }
    if (entry["dtype"] != "F32") return bad(where + " is not F32");
    const json& shape = entry["shape"];
    const json& offsets = entry["data_offsets"];
    if (!shape.is_array() || !offsets.is_array() || offsets.size() != 2 ||
        !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      return bad(where + " has a malformed shape or data_offsets");
    }
    FloatTensor tensor;
    int64_t count = 1;
    for (const json& dim : shape) {
      if (!dim.is_number_unsigned() || dim.get<uint64_t>() > (1ull << 32)) {
        return bad(where + " has a bad dimension");
      }
      tensor.shape.push_back(dim.get<int64_t>());
      count *= tensor.shape.back();
    }
    const uint64_t begin = offsets[0].get<uint64_t>();
    const uint64_t end = offsets[1].get<uint64_t>();
    if (end < begin || end - begin != static_cast<uint64_t>(count) * sizeof(float)) {
      return bad(where + ": data_offsets do not match the shape");
    }
    if (end > data.size()) {
      return absl::DataLossError(absl::StrCat(source, ": truncated (", where,
                                              " ends past the end of file)"));
    }
    tensor.data.resize(count);
    if (count > 0) std::memcpy(tensor.data.data(), data.data() + begin, end - begin);
    ranges.emplace_back(begin, end);
    file.tensors[name] = std::move(tensor);
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t expected = 0;
  for (const auto& [begin, end] : ranges) {
    if (begin != expected) return bad("tensor data overlaps or leaves gaps");
    expected = end;
  }
  if (expected != data.size()) {
    return absl::DataLossError(absl::StrCat(source, ": ", data.size() - expected,
                                            " bytes after the last tensor"));
  }
  return file;
}

}  // namespace gati
