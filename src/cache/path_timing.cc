#include "cache/path_timing.h"

#include <torch/script.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "gati/profile.h"

namespace gati {
namespace {

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

absl::StatusOr<MissPathTiming> TimeMissPath(const StagedModel& model,
                                            const std::vector<int>& taps,
                                            const std::vector<const LearnedCache*>& caches,
                                            const float* inputs, int64_t count,
                                            int repetitions, int warmup) {
  if (taps.size() != caches.size() || count < 1 || repetitions < 1 || warmup < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "miss-path timing needs one cache per tap, inputs and repetitions (", taps.size(),
        " taps, ", caches.size(), " caches, ", count, " inputs, ", repetitions,
        " repetitions)"));
  }
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<SegmentedModel> segments, model.Segment(taps));
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<SegmentedModel> whole, model.Segment({}));
  std::vector<int64_t> shape = {1};
  int64_t input_size = 1;
  for (int64_t d : model.metadata().input_shape) {
    shape.push_back(d);
    input_size *= d;
  }
  std::vector<double> times[3];  // miss path, segments alone, whole model
  try {
    for (int r = 0; r < warmup + repetitions; ++r) {
      const float* row = inputs + (r % count) * input_size;
      at::Tensor x = at::from_blob(const_cast<float*>(row), shape, at::kFloat).clone();
      if (model.options().device != "cpu") x = x.to(at::Device(model.options().device));
      for (int k = 0; k < 3; ++k) {
        const int side = (r + k) % 3;
        const auto start = std::chrono::steady_clock::now();
        if (side < 2) {
          at::Tensor activation = x;
          for (int s = 0; s < segments->num_segments(); ++s) {
            GATI_ASSIGN_OR_RETURN(activation, segments->RunSegment(s, activation));
            if (side == 0 && s < static_cast<int>(caches.size())) {
              at::Tensor cpu = activation.to(at::kCPU).contiguous();
              (void)caches[s]->Lookup(cpu.data_ptr<float>(), nullptr);
            }
          }
        } else {
          GATI_ASSIGN_OR_RETURN(at::Tensor logits, whole->RunSegment(0, x));
          (void)logits;
        }
        if (r >= warmup) times[side].push_back(MillisSince(start));
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("timing the miss path failed: ", e.what()));
  }
  MissPathTiming timing;
  timing.miss_ms = Percentile(times[0], 0.5);
  timing.segments_ms = Percentile(times[1], 0.5);
  timing.whole_ms = Percentile(times[2], 0.5);
  timing.repetitions = repetitions;
  return timing;
}

}  // namespace gati
