// A bundle: the directory that holds everything needed to serve one model
// with learned caches.
//
//   BUNDLE/manifest.json   format version, base model hash, input spec,
//                          build settings, stage profile, caches and metrics
//   BUNDLE/model.pt        the base model (staged TorchScript), as given
//   BUNDLE/caches/*.safetensors   one weight file per tap x variant
//
// Bundles are written to a temporary directory beside the destination and
// renamed into place, so a reader sees the old bundle or the whole new one.
#ifndef GATI_BUNDLE_H_
#define GATI_BUNDLE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gati/cache.h"
#include "gati/status.h"

namespace gati {

// The manifest format this build reads and writes.
inline constexpr int kBundleFormatVersion = 1;
inline constexpr char kManifestFileName[] = "manifest.json";
inline constexpr char kBundleModelFileName[] = "model.pt";

// What calibration and profiling measured for one cache.
struct CacheMetrics {
  // Predictor class == base class on the calibration split, all samples.
  double agreement = 0;
  // Ground-truth accuracy of the predictor class on the calibration split;
  // -1 when the data had no labels.
  double accuracy = 0;
  // At the calibrated threshold, on the calibration split.
  double hit_rate = 0;
  double false_hit_rate = 0;
  double false_hit_upper_bound = 1;
  int64_t hits = 0;
  int64_t false_hits = 0;
  int64_t calibration_count = 0;
  // Median per-request lookup (batch 1, one thread), microseconds.
  double lookup_us = 0;
  // LearnedCache::memory_bytes().
  int64_t memory_bytes = 0;
  // The selector kept ("learned", or "max-softmax" where the trained one did
  // not beat the predictor's top probability on held-out selector-train
  // rows), and both AUROCs for "agrees with the base model" on the
  // calibration split. Empty and 0 in bundles built before them (and then
  // not written back).
  std::string selector;
  double selector_auroc = 0;
  double max_softmax_auroc = 0;
};

struct CacheEntry {
  int tap = 0;
  std::string variant;
  // Weight file, relative to the bundle directory, and its SHA-256.
  std::string file;
  std::string sha256;
  // The calibrated threshold; enabled = false when none keeps the bound.
  bool enabled = false;
  float threshold = 1.0f;
  CacheMetrics metrics;
};

// Per-sample records on the planning split, so that any plan can be replayed
// exactly: the base model's class and, per cache, selector score and
// predictor class. Stored as planning.safetensors.
struct CacheRecords {
  int tap = 0;
  std::string variant;
  std::vector<float> scores;
  std::vector<int32_t> classes;
};
struct PlanningRecords {
  std::vector<int32_t> base_classes;
  std::vector<CacheRecords> caches;  // Any order; matched by tap and variant.
};
inline constexpr char kPlanningFileName[] = "planning.safetensors";

// A sample of build-time model inputs (from the predictor-train split) that
// the online learner mixes into its fine-tuning so that caches do not forget
// the traffic they were built for. Stored as replay.safetensors.
struct ReplaySample {
  int64_t count = 0;
  // count x input_shape float32 model inputs (normalized), back to back.
  std::vector<float> inputs;
};
inline constexpr char kReplayFileName[] = "replay.safetensors";

// A plan as stored in the manifest (see gati/plan.h for the search).
inline constexpr int kPlanVersion = 1;
// The largest batch size a plan may be made for.
inline constexpr int kMaxPlanBatch = 1024;
struct PlannedCache {
  int tap = 0;
  std::string variant;
  float threshold = 1.0f;
};
struct StoredPlan {
  int version = kPlanVersion;
  // Constraints it was made under.
  std::string mode = "sequential";
  int64_t memory_budget_bytes = 0;
  double epsilon = 0;
  double confidence = 0.95;
  int max_taps = 0;
  double tail_budget = 0;  // 0 = none (also for plans written before it existed).
  // The batch size it was made for (`gati plan --batch`): its segment and
  // lookup costs were profiled at that size and its predictions are per row
  // of such a batch. 1 (single requests) in plans written before it.
  int batch = 1;
  std::vector<PlannedCache> caches;  // By tap; empty = the base model alone.
  // Predicted on the planning split; miss_ms is a request that misses every
  // planned cache (p99 and miss_ms are 0 in plans written before them).
  double mean_ms = 0, p50_ms = 0, p95_ms = 0, p99_ms = 0, miss_ms = 0, base_ms = 0,
         oracle_mean_ms = 0;
  // The same choices priced in the other mode (parallel when the plan was
  // made for sequential, and the reverse), so that an engine can report
  // the prediction for the mode it serves in; 0 = not priced.
  double other_mode_mean_ms = 0, other_mode_p99_ms = 0;
  double disagreement = 0, disagreement_bound = 0;
  int64_t memory_bytes = 0;
  std::vector<double> exit_share;  // Per planned cache, then the base model.
  std::string note;                // Why the plan is empty, when it is.
  // When segment latencies were measured on the plan's fused segments: the
  // cost model's own estimate of the first plan found (0 = not measured).
  double model_only_mean_ms = 0;
};

// What `gati build` was run with, typed: what later steps (the engine's
// bounds, the evaluation's splits) read back.
struct BuildSettings {
  bool present = false;  // False in bundles written before these fields.
  std::string data;      // Where the samples came from.
  // The split: `samples` shuffled with `seed` (DrawBuildSplits) into
  // predictor-train, selector-train and calibration (the planning split).
  int64_t samples = 0, predictor_train = 0, selector_train = 0, calibration = 0;
  uint64_t seed = 0;
  double epsilon = 0, confidence = 0, alpha = 0, temperature = 0;
  int epochs = 0, stream_epochs = 0;
  std::vector<int> taps;
  std::vector<std::string> variants;
};

struct BundleManifest {
  int format_version = kBundleFormatVersion;
  std::string model_file = kBundleModelFileName;
  std::string model_sha256;
  std::string model_name;
  std::vector<int64_t> input_shape;  // Without the batch dimension.
  int num_classes = 0;
  int num_stages = 0;
  // Build settings (epsilon, confidence, alpha, temperature, seed, splits,
  // data), kept as written for reports; `gati build` fills them.
  std::map<std::string, std::string> build;
  // The same, typed ("build_settings").
  BuildSettings settings;
  // Per-stage p50 latency (ms) of each stage frozen alone, batch 1, and of
  // the whole model; what later planning starts from.
  std::vector<double> stage_p50_ms;
  double whole_p50_ms = 0;
  // The model cut at every tap, end to end; with whole_p50_ms it gives the
  // cost of one segment boundary.
  double staged_p50_ms = 0;
  int profile_threads = 1;
  // Measured cost of a lookup on a request's path beyond its isolated time,
  // per lookup and per MB of cache memory (PlanningProblem's fields of the
  // same names); 0 in bundles built before them.
  double lookup_overhead_ms = 0;
  double lookup_ms_per_mb = 0;
  // Parallel mode's measured cost per request beyond the model
  // (PlanningProblem::parallel_request_ms); 0 = not calibrated.
  double parallel_request_ms = 0;
  // Sorted by tap, then by variant name.
  std::vector<CacheEntry> caches;
  // Planning records: file (empty when none), hash, split description.
  std::string planning_file;
  std::string planning_sha256;
  int64_t planning_samples = 0;
  std::string planning_split;
  // Replay sample: file (empty when none), hash, count.
  std::string replay_file;
  std::string replay_sha256;
  int64_t replay_samples = 0;
  // The plan in force; absent (has_plan = false) until the planner ran.
  bool has_plan = false;
  StoredPlan plan;
};

// Serializes / parses manifest.json. Parse fails with InvalidArgument naming
// `source` and the field for malformed JSON, a missing or mistyped field, or
// a format version other than kBundleFormatVersion.
std::string ManifestToJson(const BundleManifest& manifest);
absl::StatusOr<BundleManifest> ParseManifest(const std::string& json_text,
                                             const std::string& source);

// A loaded bundle: manifest plus every cache, validated. Immutable.
class Bundle {
 public:
  // Loads and validates `dir`: the manifest's version, the base model's
  // SHA-256 against the manifest, every weight file (present, same SHA-256,
  // well-formed, layer sizes matching the variant). Any failure returns an
  // error naming the file and nothing is kept.
  static absl::StatusOr<std::unique_ptr<Bundle>> Load(const std::string& dir);

  // Writes a bundle to `dir` atomically: the model file at `model_path` is
  // copied in and hashed, `caches` are written as weight files; each cache's
  // file name, hash, threshold and enabled flag fill the manifest entry of
  // the same tap and variant (every cache needs one, and every entry a cache). An existing `dir` is replaced only
  // when it is an empty directory or a bundle (has a manifest.json);
  // otherwise FailedPrecondition and nothing is touched.
  // `records` (optional) are written as planning.safetensors; every record
  // set must match a cache. `replay` (optional) as replay.safetensors; its
  // size must be count x the manifest's input shape.
  static absl::Status Write(const std::string& dir, BundleManifest manifest,
                            const std::string& model_path,
                            const std::vector<const CacheWeights*>& caches,
                            const PlanningRecords* records = nullptr,
                            const ReplaySample* replay = nullptr);

  // Replaces only manifest.json of the bundle at `dir`, atomically (for a
  // new plan); the caller keeps every other field as loaded.
  static absl::Status WriteManifest(const std::string& dir,
                                    const BundleManifest& manifest);

  const std::string& dir() const { return dir_; }
  const BundleManifest& manifest() const { return manifest_; }
  std::string model_path() const;
  // Caches in manifest order (same index as manifest().caches).
  const std::vector<std::unique_ptr<LearnedCache>>& caches() const {
    return caches_;
  }
  // The cache at `tap` of `variant`, or null.
  const LearnedCache* Find(int tap, const std::string& variant) const;
  // Planning records aligned with caches() (records().caches[i] belongs to
  // caches()[i]); empty when the bundle has none.
  const PlanningRecords& records() const { return records_; }
  // The replay sample; count 0 when the bundle has none.
  const ReplaySample& replay() const { return replay_; }

 private:
  Bundle() = default;
  std::string dir_;
  BundleManifest manifest_;
  std::vector<std::unique_ptr<LearnedCache>> caches_;
  PlanningRecords records_;
  ReplaySample replay_;
};

// Weight-file name of a cache inside the bundle, e.g.
// "caches/tap07.pool4-mlp256.safetensors".
std::string CacheFileName(int tap, const std::string& variant);

}  // namespace gati

#endif  // GATI_BUNDLE_H_
