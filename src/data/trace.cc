#include "data/trace.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace gati {
namespace {

using Rng = std::mt19937_64;

// Per class, the indices of its samples (classes without samples stay
// empty); nothing without labels.
std::vector<std::vector<int64_t>> ByClass(const Dataset& source) {
  if (!source.has_labels()) return {};
  int64_t classes = 0;
  for (int64_t i = 0; i < source.count(); ++i) classes = std::max(classes, source.label(i) + 1);
  std::vector<std::vector<int64_t>> by_class(classes);
  for (int64_t i = 0; i < source.count(); ++i) by_class[source.label(i)].push_back(i);
  return by_class;
}

// Fills requests [begin, end) of the trace. Each kind keeps its own state
// across calls (mixed resumes kinds), so the stretches stay consistent.
class Generator {
 public:
  Generator(const TraceOptions& options, const Dataset& source, Rng* rng)
      : options_(options),
        source_(source),
        rng_(*rng),
        by_class_(ByClass(source)),
        size_(source.sample_size()),
        frame_(size_) {
    const std::vector<int64_t>& shape = source.sample_shape();
    // Frames shift over the last two dimensions (H, W of a C x H x W
    // image); a sample of rank 1 shifts along its only one.
    cols_ = shape.back();
    rows_ = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
    planes_ = size_ / (rows_ * cols_);
    for (size_t c = 0; c < by_class_.size(); ++c) {
      if (!by_class_[c].empty()) ranking_.push_back(static_cast<int64_t>(c));
    }
    std::vector<double> weights;
    for (size_t r = 0; r < ranking_.size(); ++r) {
      weights.push_back(1.0 / std::pow(static_cast<double>(r + 1), options.zipf_exponent));
    }
    zipf_ = std::discrete_distribution<size_t>(weights.begin(), weights.end());
  }

  absl::Status Fill(TraceKind kind, int64_t begin, int64_t end, float* values,
                    int64_t* labels) {
    for (int64_t i = begin; i < end; ++i) {
      float* out = values + i * size_;
      switch (kind) {
        case TraceKind::kIid:
        case TraceKind::kMixed: {
          const int64_t index = Uniform(source_.count());
          GATI_RETURN_IF_ERROR(source_.Read(index, out));
          labels[i] = source_.label(index);
          break;
        }
        case TraceKind::kSkewed: {
          if (skewed_served_ % options_.rotate_every == 0) {
            std::shuffle(ranking_.begin(), ranking_.end(), rng_);
          }
          ++skewed_served_;
          const auto& images = by_class_[ranking_[zipf_(rng_)]];
          const int64_t index = images[Uniform(static_cast<int64_t>(images.size()))];
          GATI_RETURN_IF_ERROR(source_.Read(index, out));
          labels[i] = source_.label(index);
          break;
        }
        case TraceKind::kVideo:
          GATI_RETURN_IF_ERROR(NextFrame(out));
          labels[i] = source_.label(video_image_);
          break;
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t Uniform(int64_t n) { return std::uniform_int_distribution<int64_t>(0, n - 1)(rng_); }

  // The next frame of the current burst, starting a new burst when it ends.
  absl::Status NextFrame(float* out) {
    if (burst_left_ == 0) {
      video_image_ = Uniform(source_.count());
      GATI_RETURN_IF_ERROR(source_.Read(video_image_, frame_.data()));
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
    // Data in [0, 1] (images) stays there; other data is not clamped.
    const bool clamp = source_.unit_range();
    const int dy = rows_ > 1 ? dy_ : 0;
    for (int64_t p = 0; p < planes_; ++p) {
      const float* plane = frame_.data() + p * rows_ * cols_;
      float* target = out + p * rows_ * cols_;
      for (int64_t r = 0; r < rows_; ++r) {
        for (int64_t c = 0; c < cols_; ++c) {
          const int64_t sr = r - dy, sc = c - dx_;
          const bool inside = sr >= 0 && sr < rows_ && sc >= 0 && sc < cols_;
          const float value = inside ? plane[sr * cols_ + sc] : 0.0f;
          const float noisy = static_cast<float>(value * brightness_) +
                              (options_.noise > 0 ? noise(rng_) : 0.0f);
          target[r * cols_ + c] = clamp ? std::clamp(noisy, 0.0f, 1.0f) : noisy;
        }
      }
    }
    return absl::OkStatus();
  }

  const TraceOptions& options_;
  const Dataset& source_;
  Rng& rng_;
  std::vector<std::vector<int64_t>> by_class_;
  const int64_t size_;
  std::vector<float> frame_;  // The current burst's sample.
  int64_t rows_ = 1, cols_ = 1, planes_ = 1;
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
  return MakeTrace(options, *ViewImages(source, "images"));
}

absl::StatusOr<Trace> MakeTrace(const TraceOptions& options, const Dataset& source) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (options.count < 1) return bad("a trace needs at least 1 request (--n)");
  if (source.count() < 1) return bad("the source split is empty");
  const bool needs_labels = options.kind == TraceKind::kSkewed || options.kind == TraceKind::kMixed;
  if (needs_labels && !source.has_labels()) {
    return bad(absl::StrCat("a ", TraceKindName(options.kind),
                            " trace draws by class: its source needs labels (",
                            source.description(), " has none)"));
  }
  if (!(options.zipf_exponent > 0)) return bad("--zipf must be > 0");
  if (options.rotate_every < 1) return bad("--rotate-every must be >= 1");
  if (!(options.mean_burst >= 1)) return bad("--burst-mean must be >= 1");
  if (options.max_shift < 0) return bad("--max-shift must be >= 0");
  if (!(options.noise >= 0) || !(options.brightness_step >= 0)) {
    return bad("--noise and --brightness-step must be >= 0");
  }
  Rng rng(options.seed);
  Generator generator(options, source, &rng);
  const int64_t size = source.sample_size();
  std::vector<float> pixels(options.count * size);
  std::vector<int64_t> labels(options.count);
  if (options.kind != TraceKind::kMixed) {
    GATI_RETURN_IF_ERROR(
        generator.Fill(options.kind, 0, options.count, pixels.data(), labels.data()));
  } else {
    const TraceKind kinds[] = {TraceKind::kIid, TraceKind::kSkewed, TraceKind::kVideo};
    for (int64_t begin = 0; begin < options.count;) {
      const int64_t length = std::uniform_int_distribution<int64_t>(500, 2000)(rng);
      const int64_t end = std::min(options.count, begin + length);
      GATI_RETURN_IF_ERROR(generator.Fill(kinds[std::uniform_int_distribution<int>(0, 2)(rng)],
                                          begin, end, pixels.data(), labels.data()));
      begin = end;
    }
  }
  Trace trace;
  std::vector<int64_t> shape = {options.count};
  shape.insert(shape.end(), source.sample_shape().begin(), source.sample_shape().end());
  trace.images = NpyArray::Float32(std::move(shape), std::move(pixels));
  if (source.has_labels()) trace.labels = NpyArray::Int64({options.count}, std::move(labels));
  return trace;
}

}  // namespace gati
