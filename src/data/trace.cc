#include "data/trace.h"

#include <random>

#include "absl/strings/str_cat.h"

namespace gati {

absl::StatusOr<TraceKind> ParseTraceKind(const std::string& text) {
  if (text == "iid") return TraceKind::kIid;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown trace kind '", text, "'; known: iid"));
}

const char* TraceKindName(TraceKind kind) {
  switch (kind) {
    case TraceKind::kIid:
      return "iid";
  }
  return "?";
}

absl::StatusOr<Trace> MakeTrace(TraceKind kind, int64_t count, uint64_t seed,
                                const ImageDataset& source) {
  if (count < 1) return absl::InvalidArgumentError("a trace needs at least 1 request");
  if (source.count < 1) return absl::InvalidArgumentError("the source split is empty");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, source.count - 1);
  const int64_t image_size = source.rows * source.cols;
  std::vector<float> pixels(count * image_size);
  std::vector<int64_t> labels(count);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t index = kind == TraceKind::kIid ? pick(rng) : 0;
    const uint8_t* image = source.image(index);
    for (int64_t p = 0; p < image_size; ++p) {
      pixels[i * image_size + p] = image[p] / 255.0f;
    }
    labels[i] = source.labels[index];
  }
  Trace trace;
  trace.images = NpyArray::Float32({count, 1, source.rows, source.cols}, std::move(pixels));
  trace.labels = NpyArray::Int64({count}, std::move(labels));
  return trace;
}

}  // namespace gati
