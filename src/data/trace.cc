#include "data/trace.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace gati {
namespace {

using Rng = std::mt19937_64;

// Writes image `index` of `source` as [0, 1] floats into `out`.
void CopyImage(const ImageDataset& source, int64_t index, float* out) {
  const uint8_t* image = source.image(index);
  for (int64_t p = 0; p < source.rows * source.cols; ++p) out[p] = image[p] / 255.0f;
}

// Per class, the indices of its images (classes without images stay empty).
std::vector<std::vector<int64_t>> ByClass(const ImageDataset& source) {
  int64_t classes = 0;
  for (int64_t label : source.labels) classes = std::max(classes, label + 1);
  std::vector<std::vector<int64_t>> by_class(classes);
  for (int64_t i = 0; i < source.count; ++i) by_class[source.labels[i]].push_back(i);
  return by_class;
}

// Fills requests [begin, end) of the trace. Each kind keeps its own state
// across calls (mixed resumes kinds), so the stretches stay consistent.
class Generator {
 public:
  Generator(const TraceOptions& options, const ImageDataset& source, Rng* rng)
      : options_(options), source_(source), rng_(*rng), by_class_(ByClass(source)) {
    for (size_t c = 0; c < by_class_.size(); ++c) {
      if (!by_class_[c].empty()) ranking_.push_back(static_cast<int64_t>(c));
    }
    std::vector<double> weights;
    for (size_t r = 0; r < ranking_.size(); ++r) {
      weights.push_back(1.0 / std::pow(static_cast<double>(r + 1), options.zipf_exponent));
    }
    zipf_ = std::discrete_distribution<size_t>(weights.begin(), weights.end());
  }

  void Fill(TraceKind kind, int64_t begin, int64_t end, float* pixels, int64_t* labels) {
    const int64_t size = source_.rows * source_.cols;
    for (int64_t i = begin; i < end; ++i) {
      float* out = pixels + i * size;
      switch (kind) {
        case TraceKind::kIid:
        case TraceKind::kMixed: {
          const int64_t index = Uniform(source_.count);
          CopyImage(source_, index, out);
          labels[i] = source_.labels[index];
          break;
        }
        case TraceKind::kSkewed: {
          if (skewed_served_ % options_.rotate_every == 0) {
            std::shuffle(ranking_.begin(), ranking_.end(), rng_);
          }
          ++skewed_served_;
          const auto& images = by_class_[ranking_[zipf_(rng_)]];
          const int64_t index = images[Uniform(static_cast<int64_t>(images.size()))];
          CopyImage(source_, index, out);
          labels[i] = source_.labels[index];
          break;
        }
        case TraceKind::kVideo:
          NextFrame(out);
          labels[i] = source_.labels[video_image_];
          break;
      }
    }
  }

 private:
  int64_t Uniform(int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(rng_); }

  // The next frame of the current burst, starting a new burst when it ends.
  void NextFrame(float* out) {
    if (burst_left_ == 0) {
      video_image_ = Uniform(source_.count);
      // Geometric burst lengths >= 1 with the requested mean.
      std::geometric_distribution<int64_t> extra(1.0 / options_.mean_burst);
      burst_left_ = 1 + extra(rng_);
      dx_ = dy_ = 0;
      brightness_ = 1.0;
    }
    --burst_left_;
    std::uniform_int_distribution<int> step(-1, 1);
    dx_ = std::clamp(dx_ + step(rng_), -options_.max_shift, options_.max_shift);
    dy_ = std::clamp(dy_ + step(rng_), -options_.max_shift, options_.max_shift);
    brightness_ = std::clamp(
        brightness_ + std::uniform_real_distribution<double>(-1, 1)(rng_) *
                          options_.brightness_step,
        0.7, 1.3);
    std::normal_distribution<float> noise(0.0f, static_cast<float>(options_.noise));
    const uint8_t* image = source_.image(video_image_);
    for (int64_t r = 0; r < source_.rows; ++r) {
      for (int64_t c = 0; c < source_.cols; ++c) {
        const int64_t sr = r - dy_, sc = c - dx_;
        const bool inside = sr >= 0 && sr < source_.rows && sc >= 0 && sc < source_.cols;
        const float value = inside ? image[sr * source_.cols + sc] / 255.0f : 0.0f;
        const float noisy = static_cast<float>(value * brightness_) +
                            (options_.noise > 0 ? noise(rng_) : 0.0f);
        out[r * source_.cols + c] = std::clamp(noisy, 0.0f, 1.0f);
      }
    }
  }

  const TraceOptions& options_;
  const ImageDataset& source_;
  Rng& rng_;
  std::vector<std::vector<int64_t>> by_class_;
  std::vector<int64_t> ranking_;  // Class at each popularity rank.
  std::discrete_distribution<size_t> zipf_;
  int64_t skewed_served_ = 0;
  int64_t video_image_ = 0;
  int64_t burst_left_ = 0;
  int dx_ = 0, dy_ = 0;
  double brightness_ = 1.0;
};

}  // namespace

absl::StatusOr<TraceKind> ParseTraceKind(const std::string& text) {
  for (TraceKind kind : {TraceKind::kIid, TraceKind::kSkewed, TraceKind::kVideo,
                         TraceKind::kMixed}) {
    if (text == TraceKindName(kind)) return kind;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown trace kind '", text, "'; known: iid, skewed, video, mixed"));
}

const char* TraceKindName(TraceKind kind) {
  switch (kind) {
    case TraceKind::kIid:
      return "iid";
    case TraceKind::kSkewed:
      return "skewed";
    case TraceKind::kVideo:
      return "video";
    case TraceKind::kMixed:
      return "mixed";
  }
  return "?";
}

absl::StatusOr<Trace> MakeTrace(const TraceOptions& options, const ImageDataset& source) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (options.count < 1) return bad("a trace needs at least 1 request (--n)");
  if (source.count < 1) return bad("the source split is empty");
  if (!(options.zipf_exponent > 0)) return bad("--zipf must be > 0");
  if (options.rotate_every < 1) return bad("--rotate-every must be >= 1");
  if (!(options.mean_burst >= 1)) return bad("--burst-mean must be >= 1");
  if (options.max_shift < 0) return bad("--max-shift must be >= 0");
  if (!(options.noise >= 0) || !(options.brightness_step >= 0)) {
    return bad("--noise and --brightness-step must be >= 0");
  }
  Rng rng(options.seed);
  Generator generator(options, source, &rng);
  const int64_t size = source.rows * source.cols;
  std::vector<float> pixels(options.count * size);
  std::vector<int64_t> labels(options.count);
  if (options.kind != TraceKind::kMixed) {
    generator.Fill(options.kind, 0, options.count, pixels.data(), labels.data());
  } else {
    const TraceKind kinds[] = {TraceKind::kIid, TraceKind::kSkewed, TraceKind::kVideo};
    for (int64_t begin = 0; begin < options.count;) {
      const int64_t length = std::uniform_int_distribution<int64_t>(500, 2000)(rng);
      const int64_t end = std::min(options.count, begin + length);
      generator.Fill(kinds[std::uniform_int_distribution<int>(0, 2)(rng)], begin, end,
                     pixels.data(), labels.data());
      begin = end;
    }
  }
  Trace trace;
  trace.images = NpyArray::Float32({options.count, 1, source.rows, source.cols},
                                   std::move(pixels));
  trace.labels = NpyArray::Int64({options.count}, std::move(labels));
  return trace;
}

}  // namespace gati
