// Stage and segment latency profiling.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "gati/profile.h"
#include "model/torch_util.h"

namespace gati {
namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

absl::Status CheckOptions(const ProfileOptions& options) {
  if (options.warmup < 0 || options.repetitions < 1 || options.batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "profile options need warmup >= 0, repetitions >= 1, batch >= 1; got ",
        options.warmup, ", ", options.repetitions, ", ", options.batch));
  }
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> RandomInput(const StagedModel& model,
                                       const ProfileOptions& options) {
  return model_internal::CatchTorch("random input", [&]() -> absl::StatusOr<at::Tensor> {
    std::vector<int64_t> shape = {options.batch};
    const auto& input_shape = model.metadata().input_shape;
    shape.insert(shape.end(), input_shape.begin(), input_shape.end());
    at::Generator generator = at::detail::createCPUGenerator(options.seed);
    return at::randn(shape, generator)
        .to(c10::Device(model.options().device));
  });
}

// Runs all segments, returning the time in ms (or the error).
absl::StatusOr<double> TimeRun(const SegmentedModel& segments,
                               const at::Tensor& input) {
  Clock::time_point start = Clock::now();
  GATI_ASSIGN_OR_RETURN(at::Tensor out, segments.Run(input));
  (void)out;
  return MillisSince(start);
}

}  // namespace

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  size_t rank = static_cast<size_t>(
      std::ceil(q * static_cast<double>(values.size())));
  size_t index = rank == 0 ? 0 : rank - 1;
  std::nth_element(values.begin(), values.begin() + index, values.end());
  return values[index];
}

absl::StatusOr<ModelProfile> ProfileModel(const StagedModel& model,
                                          const ProfileOptions& options) {
  GATI_RETURN_IF_ERROR(CheckOptions(options));
  GATI_ASSIGN_OR_RETURN(at::Tensor input, RandomInput(model, options));
  std::vector<int> all_taps;
  for (int tap = 0; tap < model.num_taps(); ++tap) all_taps.push_back(tap);
  GATI_ASSIGN_OR_RETURN(auto whole, model.Segment({}));
  GATI_ASSIGN_OR_RETURN(auto staged, model.Segment(all_taps));

  const int num_stages = model.num_stages();
  ModelProfile profile;
  profile.intra_op_threads = GetIntraOpThreads();
  profile.batch = options.batch;
  profile.repetitions = options.repetitions;
  std::vector<std::vector<double>> stage_ms(num_stages);
  std::vector<double> whole_ms, staged_ms, ratios;
  for (int rep = -options.warmup; rep < options.repetitions; ++rep) {
    GATI_ASSIGN_OR_RETURN(double whole_time, TimeRun(*whole, input));
    at::Tensor activation = input;
    double staged_time = 0;
    for (int stage = 0; stage < num_stages; ++stage) {
      Clock::time_point start = Clock::now();
      GATI_ASSIGN_OR_RETURN(activation, staged->RunSegment(stage, activation));
      double elapsed = MillisSince(start);
      staged_time += elapsed;
      if (rep >= 0) stage_ms[stage].push_back(elapsed);
    }
    if (rep < 0) continue;
    whole_ms.push_back(whole_time);
    staged_ms.push_back(staged_time);
    ratios.push_back(staged_time / whole_time);
  }

  double total_p50 = 0;
  profile.stages.resize(num_stages);
  for (int stage = 0; stage < num_stages; ++stage) {
    StageProfile& out = profile.stages[stage];
    out.output_shape = model.stage_output_shape(stage);
    out.output_shape[0] = options.batch;
    const StageInfo& info = model.stages()[stage];
    out.index = stage;
    out.name = info.name;
    out.parameter_count = info.parameter_count;
    out.parameter_bytes = info.parameter_bytes;
    out.p50_ms = Percentile(stage_ms[stage], 0.5);
    out.p90_ms = Percentile(stage_ms[stage], 0.9);
    total_p50 += out.p50_ms;
  }
  double cumulative = 0;
  for (StageProfile& out : profile.stages) {
    out.share = total_p50 > 0 ? out.p50_ms / total_p50 : 0;
    cumulative += out.share;
    out.cumulative_share = cumulative;
  }
  profile.whole_p50_ms = Percentile(whole_ms, 0.5);
  profile.whole_p90_ms = Percentile(whole_ms, 0.9);
  profile.staged_p50_ms = Percentile(staged_ms, 0.5);
  profile.staged_p90_ms = Percentile(staged_ms, 0.9);
  profile.staged_overhead = Percentile(ratios, 0.5) - 1;
  return profile;
}

absl::StatusOr<std::vector<CutSetTiming>> CompareCutSets(
    const StagedModel& model, const std::vector<std::vector<int>>& cut_sets,
    const ProfileOptions& options) {
  GATI_RETURN_IF_ERROR(CheckOptions(options));
  if (cut_sets.empty()) {
    return absl::InvalidArgumentError("no cut sets to compare");
  }
  GATI_ASSIGN_OR_RETURN(at::Tensor input, RandomInput(model, options));
  std::vector<std::unique_ptr<SegmentedModel>> segmentations;
  for (const auto& cuts : cut_sets) {
    GATI_ASSIGN_OR_RETURN(auto segmented, model.Segment(cuts));
    segmentations.push_back(std::move(segmented));
  }
  const size_t n = cut_sets.size();
  std::vector<std::vector<double>> times(n), ratios(n);
  for (int rep = -options.warmup; rep < options.repetitions; ++rep) {
    std::vector<double> rep_times(n);
    // Rotate the order so no configuration always runs first.
    for (size_t j = 0; j < n; ++j) {
      size_t i = (j + static_cast<size_t>(rep + options.warmup)) % n;
      GATI_ASSIGN_OR_RETURN(rep_times[i], TimeRun(*segmentations[i], input));
    }
    if (rep < 0) continue;
    for (size_t i = 0; i < n; ++i) {
      times[i].push_back(rep_times[i]);
      ratios[i].push_back(rep_times[i] / rep_times[0]);
    }
  }
  std::vector<CutSetTiming> result(n);
  for (size_t i = 0; i < n; ++i) {
    result[i].cut_taps = cut_sets[i];
    result[i].p50_ms = Percentile(times[i], 0.5);
    result[i].p90_ms = Percentile(times[i], 0.9);
    result[i].p99_ms = Percentile(times[i], 0.99);
    result[i].ratio_p50 = Percentile(ratios[i], 0.5);
    result[i].ratio_p90 = Percentile(ratios[i], 0.9);
  }
  return result;
}

}  // namespace gati

namespace gati {

absl::StatusOr<std::vector<double>> ProfileSegments(
    const StagedModel& model, const std::vector<int>& cut_taps,
    const ProfileOptions& options, double* whole_p50_ms) {
  GATI_RETURN_IF_ERROR(CheckOptions(options));
  GATI_ASSIGN_OR_RETURN(auto segments, model.Segment(cut_taps));
  std::unique_ptr<SegmentedModel> whole;
  if (whole_p50_ms != nullptr) {
    GATI_ASSIGN_OR_RETURN(whole, model.Segment({}));
  }
  GATI_ASSIGN_OR_RETURN(at::Tensor input, RandomInput(model, options));
  // Each segment's input is the previous segment's output, as when served.
  std::vector<at::Tensor> inputs = {input};
  for (int s = 0; s + 1 < segments->num_segments(); ++s) {
    GATI_ASSIGN_OR_RETURN(at::Tensor out, segments->RunSegment(s, inputs.back()));
    inputs.push_back(out);
  }
  const int count = segments->num_segments();
  std::vector<std::vector<double>> times(count);
  std::vector<double> whole_times;
  for (int r = 0; r < options.warmup + options.repetitions; ++r) {
    for (int s = 0; s < count; ++s) {
      Clock::time_point start = Clock::now();
      GATI_ASSIGN_OR_RETURN(at::Tensor out, segments->RunSegment(s, inputs[s]));
      (void)out;
      if (r >= options.warmup) times[s].push_back(MillisSince(start));
    }
    if (whole != nullptr) {
      GATI_ASSIGN_OR_RETURN(double ms, TimeRun(*whole, input));
      if (r >= options.warmup) whole_times.push_back(ms);
    }
  }
  std::vector<double> p50;
  for (const std::vector<double>& t : times) p50.push_back(Percentile(t, 0.5));
  if (whole_p50_ms != nullptr) *whole_p50_ms = Percentile(whole_times, 0.5);
  return p50;
}

}  // namespace gati
