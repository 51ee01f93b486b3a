// libFuzzer target for the Open Inference Protocol request decoder: any
// bytes, with or without an Inference-Header-Content-Length, must give a
// request or an InvalidArgument, never a crash. The first byte picks the
// header length (none, or a position in the body).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "serve/oip_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::optional<int64_t> header;
  if (data[0] != 0) header = static_cast<int64_t>(data[0] % (body.size() + 2)) - 1;
  gati::serve::DecodeLimits limits;
  limits.max_elements = 1 << 16;
  auto request = gati::serve::DecodeInferRequest(body, header, limits);
  if (request.ok()) {
    // Decoded values are always finite and match their shapes.
    for (const auto& input : request->inputs) {
      int64_t elements = 1;
      for (int64_t d : input.shape) elements *= d;
      if (elements != static_cast<int64_t>(input.data.size())) __builtin_trap();
      for (float value : input.data) {
        if (!std::isfinite(value)) __builtin_trap();
      }
    }
  } else if (request.status().code() != absl::StatusCode::kInvalidArgument) {
    __builtin_trap();
  }
  return 0;
}
