// `gati build` as a library call: from a staged model and labelled images to
// a bundle of calibrated learned caches.
//
// Data discipline: the images are the validation split (Fashion-MNIST train
// images 50,000-59,999). They are shuffled with the seed and split three
// ways: predictor-train (predictor_share, default 50%), selector-train
// (selector_share, default 20%) and calibration (the rest, 30%). Predictors
// learn from the first, selectors from the second, thresholds and reported
// metrics come from the third only.
#ifndef GATI_BUILD_H_
#define GATI_BUILD_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cache/head_trainer.h"
#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "gati/bundle.h"
#include "gati/plan.h"

namespace gati {

struct BuildOptions {
  std::string model_path;
  // Where the images came from, recorded in the manifest.
  std::string data_description = "fashion-mnist validation";
  // Taps to build caches at; empty = every tap.
  std::vector<int> taps;
  // Variant spec strings; empty = DefaultVariantSpecs().
  std::vector<std::string> variants;
  // Bound on each cache's false-hit rate among its hits, and the confidence
  // of the Clopper-Pearson bound that certifies it.
  double epsilon = 0.01;
  double confidence = 0.95;
  DistillationOptions distillation;
  SelectorOptions selector;
  // Epochs over the predictor-train split for pooled-feature variants and
  // for streaming (conv) variants, which rerun the model prefix per batch.
  int epochs = 30;
  int stream_epochs = 3;
  double predictor_share = 0.5;
  double selector_share = 0.2;
  // Intra-op threads for the base model; also the number of heads trained
  // at once (each on one thread).
  int threads = 1;
  uint64_t seed = 1;
  // Images per forward pass of the base model.
  int model_batch = 128;
  // Timed repetitions for the stage profile and each lookup.
  int profile_repetitions = 30;
  int lookup_repetitions = 300;
  // Model inputs from the predictor-train split stored as the bundle's
  // replay sample for the online learner (0 = none).
  int replay_samples = 512;
  // Run the planner on the calibration split (the planning split) and store
  // the plan in the manifest.
  bool plan = true;
  PlanOptions plan_options;
  // Times the engine serving the written bundle at `bundle_dir` in both
  // modes, and the base model, on `count` inputs (runtime::TimeModes; the
  // engine lives above this library, so `gati build` passes it in). When
  // set and the plan has caches, the builder calibrates parallel mode's
  // per-request cost from it (PlanningProblem::parallel_request_ms) on up
  // to `mode_timing_samples` planning-split inputs, and rewrites the
  // manifest with it.
  std::function<absl::StatusOr<ModeTiming>(const std::string& bundle_dir, const float* inputs,
                                           int64_t count)>
      time_modes;
  int mode_timing_samples = 240;
};

// Called as work progresses: step name, items done, items in the step.
using BuildProgress =
    std::function<void(const std::string& step, int64_t done, int64_t total)>;

struct BuildReport {
  BundleManifest manifest;
  int64_t feature_bank_bytes = 0;
  int64_t images = 0;
  int64_t predictor_train = 0;
  int64_t selector_train = 0;
  int64_t calibration = 0;
  // Wall seconds per step, in order.
  std::vector<std::pair<std::string, double>> step_seconds;
  // What the user should know about a bundle that was written (for
  // example a calibration split too small to enable any cache).
  std::vector<std::string> warnings;
};

// Validates options (epsilon and confidence in (0,1), known variants, taps
// of the model, shares that leave every split non-empty, samples of the
// model's input shape, at least one sample, labels (when the data has
// them) among the model's classes), then builds and writes the bundle to
// `out_dir` (Bundle::Write semantics). The data's raw values are
// normalized by the model's metadata (Preprocessor). Labels are optional:
// caches learn from the base model's answers; with labels, accuracy is
// reported too. Errors name the bad flag, file or sample; nothing is
// written on failure.
absl::StatusOr<BuildReport> BuildBundle(const BuildOptions& options, const Dataset& data,
                                        const std::string& out_dir,
                                        const BuildProgress& progress = {});
// The same on decoded 8-bit images (Fashion-MNIST).
absl::StatusOr<BuildReport> BuildBundle(const BuildOptions& options,
                                        const ImageDataset& images,
                                        const std::string& out_dir,
                                        const BuildProgress& progress = {});

// Parses "all" or a comma-separated list of taps (e.g. "0,5,9").
absl::StatusOr<std::vector<int>> ParseTapList(const std::string& text);

// Rows (indices into the `count` validation images a build used) of the
// three splits, as BuildBundle draws them for these sizes and seed; so that
// baselines can be calibrated on exactly the calibration split gati's
// thresholds saw. REQUIRES: predictor_rows + selector_rows <= count.
struct BuildSplits {
  std::vector<int64_t> predictor;
  std::vector<int64_t> selector;
  std::vector<int64_t> calibration;
};
BuildSplits DrawBuildSplits(int64_t count, int64_t predictor_rows, int64_t selector_rows,
                            uint64_t seed);

}  // namespace gati

#endif  // GATI_BUILD_H_
