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
  // Ground-truth accuracy of the predictor class on the calibration split.
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
  // Per-stage p50 latency (ms) of each stage frozen alone, batch 1, and of
  // the whole model; what later planning starts from.
  std::vector<double> stage_p50_ms;
  double whole_p50_ms = 0;
  int profile_threads = 1;
  // Sorted by tap, then by variant name.
  std::vector<CacheEntry> caches;
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
  static absl::Status Write(const std::string& dir, BundleManifest manifest,
                            const std::string& model_path,
                            const std::vector<const CacheWeights*>& caches);

  const std::string& dir() const { return dir_; }
  const BundleManifest& manifest() const { return manifest_; }
  std::string model_path() const;
  // Caches in manifest order (same index as manifest().caches).
  const std::vector<std::unique_ptr<LearnedCache>>& caches() const {
    return caches_;
  }
  // The cache at `tap` of `variant`, or null.
  const LearnedCache* Find(int tap, const std::string& variant) const;

 private:
  Bundle() = default;
  std::string dir_;
  BundleManifest manifest_;
  std::vector<std::unique_ptr<LearnedCache>> caches_;
};

// Weight-file name of a cache inside the bundle, e.g.
// "caches/tap07.pool4-mlp256.safetensors".
std::string CacheFileName(int tap, const std::string& variant);

}  // namespace gati

#endif  // GATI_BUNDLE_H_
