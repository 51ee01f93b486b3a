// Latency profiles of a staged model: per stage, whole model, and
// interleaved comparisons of cut sets. Timings use the real clock; report
// GetIntraOpThreads() beside them.
#ifndef GATI_PROFILE_H_
#define GATI_PROFILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "gati/model.h"

namespace gati {

struct ProfileOptions {
  // Untimed runs of every measured configuration before timing.
  int warmup = 20;
  // Timed repetitions; configurations alternate within each repetition so
  // that machine noise hits all of them alike.
  int repetitions = 100;
  // Batch size of the (random, seeded) input.
  int batch = 1;
  uint64_t seed = 0;
};

struct StageProfile {
  int index = 0;
  std::string name;
  // Output shape at the profiled batch size, batch dimension included.
  std::vector<int64_t> output_shape;
  int64_t parameter_count = 0;
  int64_t parameter_bytes = 0;
  // Latency of the stage frozen on its own.
  double p50_ms = 0;
  double p90_ms = 0;
  // p50 of this stage over the sum of all stage p50s, and cumulative share
  // up to and including this stage.
  double share = 0;
  double cumulative_share = 0;
};

struct ModelProfile {
  int intra_op_threads = 1;
  int batch = 1;
  int repetitions = 0;
  std::vector<StageProfile> stages;
  // The whole model frozen and optimized as one segment.
  double whole_p50_ms = 0;
  double whole_p90_ms = 0;
  // The model cut at every tap (one segment per stage), run end to end.
  double staged_p50_ms = 0;
  double staged_p90_ms = 0;
  // Median over repetitions of (cut at every tap) / (whole) - 1.
  double staged_overhead = 0;
};

// Profiles every stage and the whole model. Fails when options are invalid
// (warmup < 0, repetitions < 1, batch < 1) or the model fails to run.
absl::StatusOr<ModelProfile> ProfileModel(const StagedModel& model,
                                          const ProfileOptions& options);

struct CutSetTiming {
  std::vector<int> cut_taps;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  // Median and 90th percentile over repetitions of this cut set's time over
  // the first cut set's time in the same repetition.
  double ratio_p50 = 0;
  double ratio_p90 = 0;
};

// Times end-to-end runs of the model cut at each of `cut_sets`, interleaved
// within every repetition. The first cut set is the reference for ratios
// (pass {} first to compare against the whole model).
absl::StatusOr<std::vector<CutSetTiming>> CompareCutSets(
    const StagedModel& model, const std::vector<std::vector<int>>& cut_sets,
    const ProfileOptions& options);

// p50 latency (ms) of each segment of the model cut at `cut_taps` (frozen,
// fused, as served), each fed the previous segment's output for a seeded
// random input, interleaved over repetitions. When `whole_p50_ms` is not
// null, the whole model (one fused segment) is timed in the same
// repetitions and its p50 stored there. Fails like Segment and on bad
// options.
absl::StatusOr<std::vector<double>> ProfileSegments(
    const StagedModel& model, const std::vector<int>& cut_taps,
    const ProfileOptions& options, double* whole_p50_ms = nullptr);

// The q-quantile (0 <= q <= 1, nearest rank) of `values`; 0 when empty.
double Percentile(std::vector<double> values, double q);

}  // namespace gati

#endif  // GATI_PROFILE_H_
