// gati_eval: the evaluation suite's driver. For each workload it makes a
// trace from the Fashion-MNIST test split and replays it, in one run and
// interleaved per block, through every system:
//   (a) base    the whole base model, frozen and optimized (the reference)
//   (b) gati    the engine with the bundle's build-time caches
//   (c) online  the engine with online learning
//   (d) confidence  the same predictors at the planned taps, exiting when
//               the top softmax probability clears a threshold calibrated to
//               the same epsilon, no selector (BranchyNet-style)
//   (e) knn     a 1-nearest-neighbour cache (FAISS) over pooled features of
//               past requests at one tap, tuned to the same epsilon
//   (f) exact   the base model behind the exact-match cache
//   (g) oracle  the planned taps with a perfect selector: a request exits at
//               the first tap whose predictor agrees with the base model
// and writes every figure, with per-request latencies for the plots, to
// OUT/results.json (bench/report.py turns it into report.md).
#include <CLI/CLI.hpp>
#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gati/build.h"
#include "cache/calibration.h"
#include "data/fashion_mnist.h"
#include "data/preprocess.h"
#include "data/trace.h"
#include "gati/bundle.h"
#include "gati/engine.h"
#include "gati/model.h"
#include "gati/plan.h"
#include "knn_cache.h"
#include "model/input.h"
#include "nlohmann/json.hpp"

namespace gati::eval {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::string bundle;
  std::string out = "bench/out";
  std::string workloads = "iid,skewed,video,mixed";
  std::string systems = "base,gati,online,confidence,knn,exact,oracle";
  int64_t trace_requests = 10000;  // Trace length.
  int64_t requests = 0;            // Replayed per workload (0: the whole trace).
  int64_t tuning_requests = 2000;  // kNN tuning trace length.
  int64_t saturation_requests = 600;
  int saturation_threads = 2;
  uint64_t seed = 1;
  std::string mode = "auto";
  int64_t block = 50;
  int64_t knn_capacity = 4096;
  std::string exact_cache = "16MB";
  std::string data_dir = kFashionMnistDir;
};

// What one request got from one system.
struct Answer {
  int label = -1;
  int exit_tap = kBaseExit;
  bool exact = false;  // Answered by the exact-match cache.
};

// A system under evaluation. Classify is called from one thread at a time
// during the main run and from several in the saturation run.
class System {
 public:
  virtual ~System() = default;
  virtual absl::StatusOr<Answer> Classify(int64_t index, const float* input) = 0;
  virtual int64_t memory_bytes() const { return 0; }
  virtual json extra() const { return json::object(); }
};

// ---------------------------------------------------------------------------
// Engine-backed systems: (a) via InferBase, (b), (c), (f).
class EngineSystem : public System {
 public:
  EngineSystem(std::unique_ptr<Engine> engine, bool base, int64_t cache_bytes)
      : engine_(std::move(engine)), base_(base), cache_bytes_(cache_bytes) {}
  absl::StatusOr<Answer> Classify(int64_t, const float* input) override {
    const int64_t size = sample_size();
    GATI_ASSIGN_OR_RETURN(InferResult result, base_ ? engine_->InferBase(input, size)
                                                    : engine_->Infer(input, size));
    return Answer{result.label, result.exit_tap, result.exact_hit};
  }
  int64_t memory_bytes() const override {
    const EngineStats stats = engine_->Stats();
    return cache_bytes_ + stats.exact_bytes;
  }
  json extra() const override {
    const EngineStats stats = engine_->Stats();
    return {{"updates_accepted", stats.updates_accepted},
            {"updates_rejected", stats.updates_rejected},
            {"learner_rounds", stats.learner_rounds},
            {"exact_hits", stats.exact_hits},
            {"feedback_bytes", stats.feedback_bytes}};
  }
  Engine& engine() { return *engine_; }

 private:
  int64_t sample_size() const {
    int64_t n = 1;
    for (int64_t d : engine_->input_shape()) n *= d;
    return n;
  }
  std::unique_ptr<Engine> engine_;
  bool base_;
  int64_t cache_bytes_;
};

// ---------------------------------------------------------------------------
// The base model cut at the planned taps with the planned predictors; runs a
// request segment by segment and asks `decide` at each tap.
struct ExitModel {
  std::unique_ptr<StagedModel> model;
  std::unique_ptr<SegmentedModel> segments;
  std::vector<int> taps;
  std::vector<const LearnedCache*> caches;
  std::vector<int64_t> shape;  // [1, C, H, W]

  // decide(tap_index, predictor class, top probability) -> exit?
  using Decide = std::function<bool(size_t, int, float)>;

  absl::StatusOr<Answer> Run(const float* input, const Decide& decide) const {
    at::Tensor x = torch::from_blob(const_cast<float*>(input), shape, torch::kFloat32);
    // Per thread, so the timed path allocates no more than the engine's.
    thread_local std::vector<float> probabilities;
    probabilities.resize(model->num_classes());
    for (size_t s = 0; s < taps.size(); ++s) {
      GATI_ASSIGN_OR_RETURN(x, segments->RunSegment(static_cast<int>(s), x));
      x = x.contiguous();
      const LookupResult result = caches[s]->Lookup(x.data_ptr<float>(), probabilities.data());
      if (decide(s, result.label, probabilities[result.label])) {
        return Answer{result.label, taps[s]};
      }
    }
    GATI_ASSIGN_OR_RETURN(at::Tensor logits,
                          segments->RunSegment(static_cast<int>(taps.size()), x));
    return Answer{static_cast<int>(logits.argmax(1).item<int64_t>()), kBaseExit};
  }
};

// Per request, untimed and batched: the base class and, at every planned
// tap, the predictor's class, its top probability and the pooled (GAP)
// features the kNN cache reads.
struct PrePass {
  std::vector<int> base;
  std::vector<std::vector<int>> predicted;   // [tap][request]
  std::vector<std::vector<float>> top;       // [tap][request]
  std::vector<std::vector<float>> features;  // [tap][request * dim]
  std::vector<int> dims;                     // Per tap.
};

absl::StatusOr<PrePass> RunPrePass(const ExitModel& exits, const at::Tensor& inputs) {
  const int64_t count = inputs.size(0);
  const size_t taps = exits.taps.size();
  PrePass pass;
  pass.base.resize(count);
  pass.predicted.assign(taps, std::vector<int>(count));
  pass.top.assign(taps, std::vector<float>(count));
  pass.features.resize(taps);
  pass.dims.resize(taps);
  std::vector<float> probabilities(exits.model->num_classes());
  constexpr int64_t kBatch = 64;
  for (int64_t begin = 0; begin < count; begin += kBatch) {
    const int64_t n = std::min(kBatch, count - begin);
    at::Tensor x = inputs.slice(0, begin, begin + n);
    for (size_t s = 0; s < taps; ++s) {
      GATI_ASSIGN_OR_RETURN(x, exits.segments->RunSegment(static_cast<int>(s), x));
      x = x.contiguous();
      const int64_t row = x.numel() / n;
      at::Tensor pooled = x.dim() == 4 ? x.mean({2, 3}) : x.reshape({n, -1});
      pooled = pooled.contiguous();
      pass.dims[s] = static_cast<int>(pooled.size(1));
      const float* p = pooled.data_ptr<float>();
      pass.features[s].insert(pass.features[s].end(), p, p + pooled.numel());
      for (int64_t i = 0; i < n; ++i) {
        const LookupResult result =
            exits.caches[s]->Lookup(x.data_ptr<float>() + i * row, probabilities.data());
        pass.predicted[s][begin + i] = result.label;
        pass.top[s][begin + i] = probabilities[result.label];
      }
    }
    GATI_ASSIGN_OR_RETURN(at::Tensor logits,
                          exits.segments->RunSegment(static_cast<int>(taps), x));
    at::Tensor classes = logits.argmax(1);
    for (int64_t i = 0; i < n; ++i) pass.base[begin + i] = classes[i].item<int64_t>();
  }
  return pass;
}

// (d): exits at the first planned tap whose top probability clears its
// threshold. Thresholds are calibrated tap by tap on the bundle's own
// calibration split, each on the samples that reach it, so that every tap's
// false-hit rate among its hits has a Clopper-Pearson bound <= epsilon (and
// so the total disagreement does too).
class ConfidenceSystem : public System {
 public:
  ConfidenceSystem(const ExitModel* exits, std::vector<float> thresholds)
      : exits_(exits), thresholds_(std::move(thresholds)) {}
  absl::StatusOr<Answer> Classify(int64_t, const float* input) override {
    return exits_->Run(input, [this](size_t s, int, float top) { return top >= thresholds_[s]; });
  }
  int64_t memory_bytes() const override {
    int64_t bytes = 0;
    for (const LearnedCache* cache : exits_->caches) bytes += cache->memory_bytes();
    return bytes;
  }
  json extra() const override { return {{"thresholds", thresholds_}}; }

 private:
  const ExitModel* exits_;
  std::vector<float> thresholds_;
};

std::vector<float> CalibrateConfidence(const PrePass& reference, const PrePass& calibration,
                                       double epsilon, double confidence) {
  const size_t taps = calibration.top.size();
  const int64_t count = static_cast<int64_t>(calibration.base.size());
  std::vector<bool> reached(count, true);
  std::vector<float> thresholds;
  for (size_t s = 0; s < taps; ++s) {
    std::vector<float> scores;
    std::vector<bool> agrees;
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < count; ++i) {
      if (!reached[i]) continue;
      rows.push_back(i);
      scores.push_back(calibration.top[s][i]);
      agrees.push_back(calibration.predicted[s][i] == calibration.base[i]);
    }
    const std::vector<float> candidates =
        CandidateThresholds(reference.top[s], static_cast<int64_t>(scores.size()), epsilon,
                            confidence);
    const Calibration result =
        CalibrateThreshold(scores, agrees, candidates, epsilon, confidence);
    const float threshold = result.found ? result.threshold : 2.0f;  // 2: never exits.
    thresholds.push_back(threshold);
    for (size_t r = 0; r < rows.size(); ++r) {
      if (scores[r] >= threshold) reached[rows[r]] = false;
    }
  }
  return thresholds;
}

// (e): the kNN cache at one tap.
class KnnSystem : public System {
 public:
  KnnSystem(std::unique_ptr<SegmentedModel> segments, int tap, int dim, int64_t capacity,
            float threshold, std::vector<int64_t> shape)
      : segments_(std::move(segments)), tap_(tap), cache_(dim, capacity),
        threshold_(threshold), shape_(std::move(shape)) {}
  absl::StatusOr<Answer> Classify(int64_t, const float* input) override {
    at::Tensor x = torch::from_blob(const_cast<float*>(input), shape_, torch::kFloat32);
    GATI_ASSIGN_OR_RETURN(at::Tensor activation, segments_->RunSegment(0, x));
    at::Tensor pooled =
        (activation.dim() == 4 ? activation.mean({2, 3}) : activation.reshape({1, -1}))
            .contiguous();
    const float* features = pooled.data_ptr<float>();
    {
      const auto start = Clock::now();
      std::lock_guard<std::mutex> lock(mu_);
      const Neighbour nearest = cache_.Nearest(features);
      lookup_us_.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      if (nearest.label >= 0 && nearest.distance <= threshold_) return Answer{nearest.label, tap_};
    }
    GATI_ASSIGN_OR_RETURN(at::Tensor logits, segments_->RunSegment(1, activation));
    const int label = static_cast<int>(logits.argmax(1).item<int64_t>());
    std::lock_guard<std::mutex> lock(mu_);
    cache_.Insert(features, label);
    return Answer{label, kBaseExit};
  }
  int64_t memory_bytes() const override { return cache_.memory_bytes(); }
  json extra() const override {
    std::vector<double> sorted = lookup_us_;
    std::sort(sorted.begin(), sorted.end());
    const double p50 = sorted.empty() ? 0 : sorted[sorted.size() / 2];
    return {{"tap", tap_}, {"threshold", threshold_}, {"capacity", cache_.capacity()},
            {"lookup_us_p50", p50}};
  }

 private:
  std::unique_ptr<SegmentedModel> segments_;
  int tap_;
  KnnCache cache_;
  float threshold_;
  std::vector<int64_t> shape_;
  std::mutex mu_;
  std::vector<double> lookup_us_;
};

// The largest distance threshold whose hits keep the false-hit bound, from
// a tuning pass that never hits (every lookup recorded).
struct KnnTuning {
  bool found = false;
  float threshold = -1;
  double hit_rate = 0;
};
KnnTuning TuneKnn(const std::vector<float>& features, const std::vector<int>& base, int dim,
                  int64_t capacity, double epsilon, double confidence) {
  const KnnPass pass =
      SimulateKnn(features, base, dim, capacity, -std::numeric_limits<float>::infinity());
  KnnTuning tuning;
  if (pass.scores.empty()) return tuning;
  const std::vector<float> candidates =
      CandidateThresholds(pass.scores, static_cast<int64_t>(pass.scores.size()), epsilon,
                          confidence);
  const Calibration result = CalibrateThreshold(pass.scores, pass.agrees, candidates, epsilon,
                                                confidence);
  if (!result.found) return tuning;
  tuning.found = true;
  tuning.threshold = -result.threshold;  // Scores are minus distances.
  tuning.hit_rate = result.hits / static_cast<double>(base.size());
  return tuning;
}

// (g): exits at the first planned tap whose predictor agrees with the base
// model (known from the pre-pass).
class OracleSystem : public System {
 public:
  OracleSystem(const ExitModel* exits, const PrePass* truth, int64_t cache_bytes)
      : exits_(exits), truth_(truth), cache_bytes_(cache_bytes) {}
  absl::StatusOr<Answer> Classify(int64_t index, const float* input) override {
    const int base = truth_->base[index];
    return exits_->Run(input, [base](size_t, int label, float) { return label == base; });
  }
  int64_t memory_bytes() const override { return cache_bytes_; }
  // The base classes of whichever trace is being replayed.
  void set_truth(const PrePass* truth) { truth_ = truth; }

 private:
  const ExitModel* exits_;
  const PrePass* truth_;
  int64_t cache_bytes_;
};

// ---------------------------------------------------------------------------

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double position = q * (values.size() - 1);
  const size_t low = static_cast<size_t>(std::floor(position));
  const size_t high = std::min(values.size() - 1, low + 1);
  return values[low] + (values[high] - values[low]) * (position - low);
}

absl::StatusOr<double> BuildValue(const BundleManifest& manifest, const std::string& key) {
  auto found = manifest.build.find(key);
  double value = 0;
  if (found == manifest.build.end() || !absl::SimpleAtod(found->second, &value)) {
    return absl::InvalidArgumentError("the bundle's manifest has no build value '" + key + "'");
  }
  return value;
}

// The calibration and selector-train images of the build, as model inputs.
absl::StatusOr<std::pair<at::Tensor, at::Tensor>> BuildSplitInputs(
    const BundleManifest& manifest, const ModelMetadata& metadata, const std::string& data_dir) {
  double images = 0, seed = 0;
  std::vector<int64_t> sizes;
  if (manifest.settings.present) {  // Typed: nothing to parse back.
    images = static_cast<double>(manifest.settings.samples);
    seed = static_cast<double>(manifest.settings.seed);
    sizes = {manifest.settings.predictor_train, manifest.settings.selector_train,
             manifest.settings.calibration};
  } else {
    GATI_ASSIGN_OR_RETURN(images, BuildValue(manifest, "images"));
    GATI_ASSIGN_OR_RETURN(seed, BuildValue(manifest, "seed"));
    auto splits_text = manifest.build.find("splits");
    if (splits_text == manifest.build.end()) {
      return absl::InvalidArgumentError("the bundle's manifest has no build value 'splits'");
    }
    // "predictor-train P, selector-train S, calibration C"
    for (absl::string_view part : absl::StrSplit(splits_text->second, ',')) {
      int64_t size = 0;
      std::vector<absl::string_view> words = absl::StrSplit(part, ' ', absl::SkipEmpty());
      if (words.empty() || !absl::SimpleAtoi(words.back(), &size)) {
        return absl::InvalidArgumentError("cannot read the build's splits: " + splits_text->second);
      }
      sizes.push_back(size);
    }
    if (sizes.size() != 3) {
      return absl::InvalidArgumentError("cannot read the build's splits: " + splits_text->second);
    }
  }
  const BuildSplits splits = DrawBuildSplits(static_cast<int64_t>(images), sizes[0], sizes[1],
                                             static_cast<uint64_t>(seed));
  GATI_ASSIGN_OR_RETURN(ImageDataset validation, LoadFashionMnist(Split::kValidation, data_dir));
  auto gather = [&](const std::vector<int64_t>& rows) -> absl::StatusOr<at::Tensor> {
    const int64_t pixels = validation.rows * validation.cols;
    std::vector<uint8_t> out;
    for (int64_t row : rows) {
      out.insert(out.end(), validation.image(row), validation.image(row) + pixels);
    }
    return ImagesToInput(out.data(), static_cast<int64_t>(rows.size()), metadata);
  };
  GATI_ASSIGN_OR_RETURN(at::Tensor selector, gather(splits.selector));
  GATI_ASSIGN_OR_RETURN(at::Tensor calibration, gather(splits.calibration));
  return std::make_pair(selector, calibration);
}

// The trace's raw values normalized by the model's Preprocessor.
absl::StatusOr<at::Tensor> TraceInputs(const Trace& trace, const ModelMetadata& metadata) {
  GATI_ASSIGN_OR_RETURN(const Preprocessor preprocessor, Preprocessor::Create(metadata));
  at::Tensor inputs = torch::from_blob(const_cast<float*>(trace.images.f32.data()),
                                       trace.images.shape, torch::kFloat32)
                          .clone();
  preprocessor.Apply(inputs.data_ptr<float>(), inputs.size(0), inputs.data_ptr<float>());
  return inputs;
}

struct RunResult {
  std::vector<double> latency_ms;
  std::vector<Answer> answers;
  double wall_seconds = 0;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "gati_eval: %s\n", status.ToString().c_str());
  return 1;
}

int Run(const Flags& flags) {
  auto bundle = Bundle::Load(flags.bundle);
  if (!bundle.ok()) return Fail(bundle.status());
  const BundleManifest& manifest = (*bundle)->manifest();
  if (!manifest.has_plan || manifest.plan.caches.empty()) {
    return Fail(absl::FailedPreconditionError(flags.bundle + ": the bundle has no planned cache"));
  }
  auto epsilon = BuildValue(manifest, "epsilon");
  auto confidence = BuildValue(manifest, "confidence");
  if (!epsilon.ok()) return Fail(epsilon.status());
  if (!confidence.ok()) return Fail(confidence.status());
  auto mode = ParseLookupMode(flags.mode);
  if (!mode.ok()) return Fail(mode.status());
  auto exact_bytes = ParseByteSize(flags.exact_cache);
  if (!exact_bytes.ok()) return Fail(exact_bytes.status());
  std::vector<std::string> systems = absl::StrSplit(flags.systems, ',', absl::SkipEmpty());
  std::vector<std::string> workloads = absl::StrSplit(flags.workloads, ',', absl::SkipEmpty());

  // The base model cut at the planned taps, with the planned predictors.
  ExitModel exits;
  auto model = StagedModel::Load((*bundle)->model_path(), ModelOptions{});
  if (!model.ok()) return Fail(model.status());
  exits.model = std::move(*model);
  int64_t cache_bytes = 0;
  for (const PlannedCache& planned : manifest.plan.caches) {
    const LearnedCache* cache = (*bundle)->Find(planned.tap, planned.variant);
    if (cache == nullptr) return Fail(absl::InvalidArgumentError("planned cache missing"));
    exits.taps.push_back(planned.tap);
    exits.caches.push_back(cache);
    cache_bytes += cache->memory_bytes();
  }
  auto segments = exits.model->Segment(exits.taps);
  if (!segments.ok()) return Fail(segments.status());
  exits.segments = std::move(*segments);
  const ModelMetadata& metadata = exits.model->metadata();
  exits.shape = {1};
  exits.shape.insert(exits.shape.end(), metadata.input_shape.begin(), metadata.input_shape.end());

  // (d)'s thresholds, from the build's own selector-train (candidates) and
  // calibration splits.
  auto splits = BuildSplitInputs(manifest, metadata, flags.data_dir);
  if (!splits.ok()) return Fail(splits.status());
  auto reference = RunPrePass(exits, splits->first);
  auto calibration = RunPrePass(exits, splits->second);
  if (!reference.ok()) return Fail(reference.status());
  if (!calibration.ok()) return Fail(calibration.status());
  const std::vector<float> confidence_thresholds =
      CalibrateConfidence(*reference, *calibration, *epsilon, *confidence);

  auto test = LoadFashionMnist(Split::kTest, flags.data_dir);
  if (!test.ok()) return Fail(test.status());
  const std::vector<double>& stage_ms = manifest.stage_p50_ms;
  const double base_stage_ms = std::accumulate(stage_ms.begin(), stage_ms.end(), 0.0);

  json results = {{"bundle", flags.bundle},
                  {"model", manifest.model_name},
                  {"planned_taps", exits.taps},
                  {"epsilon", *epsilon},
                  {"confidence", *confidence},
                  {"mode", flags.mode},
                  {"trace_requests", flags.trace_requests},
                  {"gati_cache_bytes", cache_bytes},
                  {"confidence_thresholds", confidence_thresholds},
                  {"workload_order", workloads},
                  {"workloads", json::object()}};
  for (const std::string& workload : workloads) {
    auto kind = ParseTraceKind(workload);
    if (!kind.ok()) return Fail(kind.status());
    TraceOptions trace_options;
    trace_options.kind = *kind;
    trace_options.count = flags.trace_requests;
    trace_options.seed = flags.seed;
    auto trace = MakeTrace(trace_options, *test);
    trace_options.count = flags.tuning_requests;
    trace_options.seed = flags.seed + 1000;
    auto tuning_trace = MakeTrace(trace_options, *test);
    if (!trace.ok()) return Fail(trace.status());
    if (!tuning_trace.ok()) return Fail(tuning_trace.status());
    auto normalized = TraceInputs(*trace, metadata);
    if (!normalized.ok()) return Fail(normalized.status());
    at::Tensor inputs = *normalized;
    const int64_t count = flags.requests > 0 ? std::min(flags.requests, inputs.size(0))
                                             : inputs.size(0);
    inputs = inputs.slice(0, 0, count).contiguous();
    std::printf("%s: %lld requests; pre-pass...\n", workload.c_str(),
                static_cast<long long>(count));
    std::fflush(stdout);
    auto truth = RunPrePass(exits, inputs);
    // The tuning trace: kNN tuning, and the saturation run's unseen requests.
    auto fresh_or = TraceInputs(*tuning_trace, metadata);
    if (!fresh_or.ok()) return Fail(fresh_or.status());
    const at::Tensor fresh = *fresh_or;
    auto tuning = RunPrePass(exits, fresh);
    if (!truth.ok()) return Fail(truth.status());
    if (!tuning.ok()) return Fail(tuning.status());

    // kNN: the tap and threshold with the lowest expected latency on the
    // tuning trace, then a memory sweep at that tap.
    int knn_index = -1;
    KnnTuning knn_tuning;
    double best_ms = base_stage_ms;
    json knn_taps = json::array();
    for (size_t s = 0; s < exits.taps.size(); ++s) {
      const KnnTuning t = TuneKnn(tuning->features[s], tuning->base, tuning->dims[s],
                                  flags.knn_capacity, *epsilon, *confidence);
      knn_taps.push_back({{"tap", exits.taps[s]}, {"found", t.found},
                          {"threshold", t.threshold}, {"tuning_hit_rate", t.hit_rate}});
      if (!t.found) continue;
      double to_tap = 0;
      for (int stage = 0; stage <= exits.taps[s]; ++stage) to_tap += stage_ms[stage];
      const double expected = to_tap + (1 - t.hit_rate) * (base_stage_ms - to_tap);
      if (expected < best_ms) {
        best_ms = expected;
        knn_index = static_cast<int>(s);
        knn_tuning = t;
      }
    }
    if (knn_index < 0) knn_index = 0;  // Nothing certifies: a kNN that never hits.
    json sweep = json::array();
    for (int64_t capacity : {int64_t{64}, int64_t{256}, int64_t{1024}, int64_t{4096},
                             int64_t{16384}}) {
      const int dim = truth->dims[knn_index];
      const KnnTuning t = TuneKnn(tuning->features[knn_index], tuning->base, dim, capacity,
                                  *epsilon, *confidence);
      const KnnPass pass = SimulateKnn(truth->features[knn_index], truth->base, dim, capacity,
                                       t.found ? t.threshold : -1.0f);
      sweep.push_back({{"capacity", capacity},
                       {"memory_bytes", KnnCache::MemoryBytes(dim, capacity)},
                       {"hit_rate", pass.hits / static_cast<double>(count)},
                       {"false_hits", pass.false_hits}});
    }

    // The systems.
    std::map<std::string, std::unique_ptr<System>> running;
    EngineOptions engine_options;
    engine_options.mode = *mode;
    engine_options.feedback_rate = 0.05;
    for (const std::string& name : systems) {
      if (name == "base" || name == "gati" || name == "online" || name == "exact") {
        EngineOptions options = engine_options;
        options.learner.enabled = name == "online";
        options.use_caches = name != "exact";
        if (name == "exact") options.exact_cache_bytes = *exact_bytes;
        auto engine = Engine::Create(flags.bundle, options);
        if (!engine.ok()) return Fail(engine.status());
        running[name] = std::make_unique<EngineSystem>(
            std::move(*engine), name == "base",
            (name == "gati" || name == "online") ? cache_bytes : 0);
      } else if (name == "confidence") {
        running[name] = std::make_unique<ConfidenceSystem>(&exits, confidence_thresholds);
      } else if (name == "oracle") {
        running[name] = std::make_unique<OracleSystem>(&exits, &*truth, cache_bytes);
      } else if (name == "knn") {
        auto knn_segments = exits.model->Segment({exits.taps[knn_index]});
        if (!knn_segments.ok()) return Fail(knn_segments.status());
        running[name] = std::make_unique<KnnSystem>(
            std::move(*knn_segments), exits.taps[knn_index], truth->dims[knn_index],
            flags.knn_capacity, knn_tuning.found ? knn_tuning.threshold : -1.0f, exits.shape);
      } else {
        return Fail(absl::InvalidArgumentError(
            "unknown system '" + name + "'; known: base,gati,online,confidence,knn,exact,oracle"));
      }
    }

    // Main run: one client, the systems interleaved per block.
    const int64_t size = inputs.numel() / count;
    const float* data = inputs.data_ptr<float>();
    std::map<std::string, RunResult> runs;
    for (const std::string& name : systems) {
      runs[name].latency_ms.reserve(count);
      runs[name].answers.reserve(count);
    }
    for (int64_t begin = 0; begin < count; begin += flags.block) {
      const int64_t end = std::min(count, begin + flags.block);
      for (const std::string& name : systems) {
        RunResult& run = runs[name];
        const auto block_start = Clock::now();
        for (int64_t i = begin; i < end; ++i) {
          const auto start = Clock::now();
          absl::StatusOr<Answer> answer = running[name]->Classify(i, data + i * size);
          const auto stop = Clock::now();
          if (!answer.ok()) return Fail(answer.status());
          run.latency_ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
          run.answers.push_back(*answer);
        }
        run.wall_seconds += std::chrono::duration<double>(Clock::now() - block_start).count();
      }
      if ((begin / flags.block) % 20 == 0) {
        std::printf("  %lld/%lld\n", static_cast<long long>(end), static_cast<long long>(count));
        std::fflush(stdout);
      }
    }

    // Saturation: several client threads on requests no system has seen
    // (the tuning trace), so that stateful caches get no free repeats.
    std::map<std::string, double> saturation;
    const int64_t sat_count = std::min(fresh.size(0), flags.saturation_requests);
    const float* fresh_data = fresh.data_ptr<float>();
    if (auto* oracle = dynamic_cast<OracleSystem*>(running.count("oracle") ? running["oracle"].get()
                                                                           : nullptr)) {
      oracle->set_truth(&*tuning);
    }
    for (const std::string& name : systems) {
      std::atomic<int64_t> next{0};
      std::atomic<bool> failed{false};
      const auto start = Clock::now();
      std::vector<std::thread> clients;
      for (int t = 0; t < flags.saturation_threads; ++t) {
        clients.emplace_back([&] {
          for (int64_t i = next++; i < sat_count; i = next++) {
            if (!running[name]->Classify(i, fresh_data + i * size).ok()) failed = true;
          }
        });
      }
      for (std::thread& client : clients) client.join();
      if (failed) return Fail(absl::InternalError(name + ": a saturation request failed"));
      saturation[name] =
          sat_count / std::chrono::duration<double>(Clock::now() - start).count();
    }
    for (auto& [name, system] : running) {
      if (auto* engine_system = dynamic_cast<EngineSystem*>(system.get())) {
        engine_system->engine().WaitForFeedback();
      }
    }

    // Figures.
    json out_systems = json::object();
    const double base_mean =
        runs.count("base") ? std::accumulate(runs["base"].latency_ms.begin(),
                                             runs["base"].latency_ms.end(), 0.0) / count
                           : 0;
    const std::vector<int64_t>& labels = trace->labels.i64;
    for (const std::string& name : systems) {
      const RunResult& run = runs[name];
      const double mean =
          std::accumulate(run.latency_ms.begin(), run.latency_ms.end(), 0.0) / count;
      int64_t agree = 0, correct = 0, hits = 0;
      std::map<std::string, int64_t> exits_by_tap;
      std::vector<double> hit_series;
      const int64_t window = std::max<int64_t>(50, count / 40);
      int64_t window_hits = 0;
      for (int64_t i = 0; i < count; ++i) {
        const Answer& a = run.answers[i];
        agree += a.label == truth->base[i];
        correct += a.label == labels[i];
        const bool hit = a.exit_tap != kBaseExit || a.exact;
        hits += hit;
        window_hits += hit;
        exits_by_tap[a.exact ? "exact"
                     : a.exit_tap == kBaseExit ? "base"
                                               : std::to_string(a.exit_tap)] += 1;
        if ((i + 1) % window == 0) {
          hit_series.push_back(window_hits / static_cast<double>(window));
          window_hits = 0;
        }
      }
      json shares = json::object();
      for (const auto& [tap, n] : exits_by_tap) shares[tap] = n / static_cast<double>(count);
      // Latencies for the CDF: every request, rounded to microseconds.
      std::vector<double> rounded;
      for (double v : run.latency_ms) rounded.push_back(std::round(v * 1000) / 1000);
      out_systems[name] = {
          {"mean_ms", mean},
          {"p50_ms", Percentile(run.latency_ms, 0.50)},
          {"p95_ms", Percentile(run.latency_ms, 0.95)},
          {"p99_ms", Percentile(run.latency_ms, 0.99)},
          {"speedup", base_mean > 0 ? base_mean / mean : 0.0},
          {"agreement", agree / static_cast<double>(count)},
          {"accuracy", correct / static_cast<double>(count)},
          {"hit_rate", hits / static_cast<double>(count)},
          {"exit_share", shares},
          {"memory_bytes", running[name]->memory_bytes()},
          {"throughput_c1", count / run.wall_seconds},
          {"throughput_saturation", saturation[name]},
          {"saturation_threads", flags.saturation_threads},
          {"hit_series", hit_series},
          {"hit_window", window},
          {"extra", running[name]->extra()},
          {"latencies_ms", rounded}};
      std::printf("  %-10s mean %7.3f ms  p50 %7.3f  p99 %7.3f  speedup %5.2fx  agreement %.4f  "
                  "hits %.3f\n",
                  name.c_str(), mean, Percentile(run.latency_ms, 0.5),
                  Percentile(run.latency_ms, 0.99), base_mean > 0 ? base_mean / mean : 0.0,
                  agree / static_cast<double>(count), hits / static_cast<double>(count));
    }
    std::fflush(stdout);
    results["workloads"][workload] = {{"requests", count},
                                      {"systems", out_systems},
                                      {"knn_sweep", sweep},
                                      {"knn_tuning", knn_taps},
                                      {"knn_tap", exits.taps[knn_index]}};
  }
  std::filesystem::create_directories(flags.out);
  const std::string path = flags.out + "/results.json";
  std::ofstream(path) << results.dump(1);
  std::printf("wrote %s\n", path.c_str());
  return 0;
}

}  // namespace
}  // namespace gati::eval

int main(int argc, char** argv) {
  gati::eval::Flags flags;
  CLI::App app{"gati_eval: every system on every workload, side by side (bench/report.py "
               "writes the report)"};
  app.add_option("BUNDLE", flags.bundle, "bundle directory (gati build)")->required();
  app.add_option("--out", flags.out, "output directory (results.json)");
  app.add_option("--workloads", flags.workloads, "comma-separated: iid,skewed,video,mixed");
  app.add_option("--systems", flags.systems,
                 "comma-separated: base,gati,online,confidence,knn,exact,oracle");
  app.add_option("--trace-requests", flags.trace_requests, "trace length")
      ->check(CLI::Range(int64_t{10}, int64_t{1} << 30));
  app.add_option("--requests", flags.requests, "requests replayed per workload (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tuning-requests", flags.tuning_requests, "kNN tuning trace length")
      ->check(CLI::Range(int64_t{10}, int64_t{1} << 30));
  app.add_option("--saturation-requests", flags.saturation_requests,
                 "requests of the saturation run")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  app.add_option("--saturation-threads", flags.saturation_threads, "client threads at saturation")
      ->check(CLI::Range(1, 256));
  app.add_option("--seed", flags.seed, "trace seed");
  app.add_option("--mode", flags.mode,
                 "engine mode: auto (the default users get), sequential or parallel")
      ->check(CLI::IsMember({"auto", "parallel", "sequential"}));
  app.add_option("--block", flags.block, "requests per system before switching")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  app.add_option("--knn-capacity", flags.knn_capacity, "entries of the kNN cache")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_option("--exact-cache", flags.exact_cache, "exact-match cache size, e.g. 16MB");
  app.add_option("--data-dir", flags.data_dir, "directory of the Fashion-MNIST files");
  bool quick = false;
  app.add_flag("--quick", quick,
               "small run for CI: 400-request traces, 300 replayed, 300 tuning, 100 saturated");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    flags.trace_requests = 400;
    flags.requests = 300;
    flags.tuning_requests = 300;
    flags.saturation_requests = 100;
  }
  return gati::eval::Run(flags);
}
