#include "build/path_timing.h"

#include <torch/script.h>

#include <algorithm>
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
                                            int repetitions, int warmup, int64_t batch) {
  if (taps.size() != caches.size() || count < 1 || repetitions < 1 || warmup < 0 ||
      batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "miss-path timing needs one cache per tap, inputs, repetitions and a batch size (",
        taps.size(), " taps, ", caches.size(), " caches, ", count, " inputs, ", repetitions,
        " repetitions, batch ", batch, ")"));
  }
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<SegmentedModel> segments, model.Segment(taps));
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<SegmentedModel> whole, model.Segment({}));
  std::vector<int64_t> shape = {batch};
  int64_t input_size = 1;
  for (int64_t d : model.metadata().input_shape) {
    shape.push_back(d);
    input_size *= d;
  }
  std::vector<double> times[3];  // miss path, segments alone, whole model
  std::vector<float> gathered(batch * input_size);
  std::vector<LookupResult> looked_up(batch);
  try {
    for (int r = 0; r < warmup + repetitions; ++r) {
      for (int64_t j = 0; j < batch; ++j) {
        const float* row = inputs + ((r * batch + j) % count) * input_size;
        std::copy(row, row + input_size, gathered.data() + j * input_size);
      }
      at::Tensor x = at::from_blob(gathered.data(), shape, at::kFloat).clone();
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
              if (batch == 1) {
                (void)caches[s]->Lookup(cpu.data_ptr<float>(), nullptr);
              } else {
                caches[s]->LookupBatch(batch, cpu.data_ptr<float>(), looked_up.data());
              }
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

absl::Status CalibrateLookupCosts(const StagedModel& model, const Plan& plan,
                                  const std::vector<const LearnedCache*>& caches,
                                  const float* inputs, int64_t count, int repetitions,
                                  PlanningProblem* problem, int64_t batch) {
  std::vector<int> taps;
  double segments_ms = 0, isolated_lookups_ms = 0, cache_mb = 0;
  int first_stage = 0;
  for (const PlanChoice& choice : plan.choices) {
    const CandidateCache& candidate = problem->caches[choice.cache];
    segments_ms += SegmentRowMs(*problem, first_stage, candidate.tap + 1);
    first_stage = candidate.tap + 1;
    isolated_lookups_ms += candidate.lookup_ms;
    cache_mb += static_cast<double>(candidate.memory_bytes) / 1e6;
    taps.push_back(candidate.tap);
  }
  segments_ms += SegmentRowMs(*problem, first_stage, model.num_stages());
  GATI_ASSIGN_OR_RETURN(MissPathTiming timing,
                        TimeMissPath(model, taps, caches, inputs, count, repetitions,
                                     /*warmup=*/10, batch));
  // The timing run's own whole-model time cancels the machine's drift since
  // the profile.
  const double scale = plan.base_ms / timing.whole_ms;
  const double k = static_cast<double>(plan.choices.size());
  const double boundary_extra_ms = std::max(0.0, timing.segments_ms * scale - segments_ms);
  const double lookup_extra_ms =
      std::max(0.0, (timing.miss_ms - timing.segments_ms) * scale - isolated_lookups_ms);
  const bool per_mb = cache_mb >= 0.01;
  problem->lookup_overhead_ms = (boundary_extra_ms + (per_mb ? 0 : lookup_extra_ms)) / k;
  problem->lookup_ms_per_mb = per_mb ? lookup_extra_ms / cache_mb : 0;
  return absl::OkStatus();
}

}  // namespace gati
