// Fakes for engine tests that need no LibTorch: a "model" whose segments
// pass a K-value input through unchanged and whose logits are the input, so
// the base class is argmax(input); caches with hand-set predictors and
// selectors; a trainer that nudges the weights it is given.
#ifndef GATI_TESTS_RUNTIME_RUNTIME_TESTUTIL_H_
#define GATI_TESTS_RUNTIME_RUNTIME_TESTUTIL_H_

#include <algorithm>
#include <atomic>
#include <memory>
#include <random>
#include <vector>

#include "gati/cache.h"
#include "runtime/engine_internal.h"

namespace gati::testing {

inline constexpr int kFakeClasses = 4;

// Fake time for the engine and the learner (EngineParts::env): only what
// advances it passes, and sleeping advances it at once.
class FakeClock final : public runtime::Env {
 public:
  double Now() const { return micros_.load(); }
  void Advance(double micros) {
    double now = micros_.load();
    while (!micros_.compare_exchange_weak(now, now + micros)) {
    }
  }
  double NowMicros() override { return Now(); }
  void SleepForMicros(double micros) override { Advance(std::max(0.0, micros)); }
  // Fake wall time: 2026-01-01T00:00:00Z plus the fake clock.
  int64_t UnixMillis() override {
    return int64_t{1767225600000} + static_cast<int64_t>(Now() / 1000);
  }

 private:
  std::atomic<double> micros_{0};
};

// Segments copy their input; the last one's output is taken as logits.
// With a clock, each segment run advances it by `segment_us` and each run of
// the whole model by `whole_us`, plus `segment_row_us` / `whole_row_us` per
// row of its input: a model whose cut costs what the test says, at any
// batch size.
class FakeRunner final : public runtime::SegmentRunner {
 public:
  explicit FakeRunner(int segments, FakeClock* clock = nullptr, double segment_us = 0,
                      double whole_us = 0, double segment_row_us = 0, double whole_row_us = 0)
      : segments_(segments),
        clock_(clock),
        segment_us_(segment_us),
        whole_us_(whole_us),
        segment_row_us_(segment_row_us),
        whole_row_us_(whole_row_us) {}
  int num_segments() const override { return segments_; }
  absl::StatusOr<runtime::Activation> MakeInput(const float* data,
                                                int64_t batch) const override {
    return Wrap(std::vector<float>(data, data + batch * kFakeClasses), batch);
  }
  absl::StatusOr<runtime::Activation> RunSegment(
      int segment, const runtime::Activation& input) const override {
    if (segment < 0 || segment >= segments_) {
      return absl::InvalidArgumentError("no such segment");
    }
    if (clock_ != nullptr) clock_->Advance(segment_us_ + segment_row_us_ * input.batch);
    rows_run_.fetch_add(input.batch);
    return Wrap(std::vector<float>(input.data, input.data + input.batch * input.row_size),
                input.batch);
  }
  absl::StatusOr<runtime::Activation> SelectRows(
      const runtime::Activation& input, const std::vector<int64_t>& rows) const override {
    std::vector<float> values;
    for (int64_t row : rows) {
      if (row < 0 || row >= input.batch) return absl::InvalidArgumentError("no such row");
      values.insert(values.end(), input.data + row * input.row_size,
                    input.data + (row + 1) * input.row_size);
    }
    return Wrap(std::move(values), static_cast<int64_t>(rows.size()));
  }
  absl::StatusOr<runtime::Activation> RunWhole(
      const runtime::Activation& input) const override {
    if (clock_ != nullptr) clock_->Advance(whole_us_ + whole_row_us_ * input.batch);
    return Wrap(std::vector<float>(input.data, input.data + input.batch * input.row_size),
                input.batch);
  }

 private:
  static runtime::Activation Wrap(std::vector<float> values, int64_t batch) {
    auto holder = std::make_shared<std::vector<float>>(std::move(values));
    runtime::Activation activation;
    activation.data = holder->data();
    activation.batch = batch;
    activation.row_size = kFakeClasses;
    activation.holder = holder;
    return activation;
  }

 public:
  // Rows that segments have run on, summed over RunSegment calls.
  int64_t rows_run() const { return rows_run_.load(); }

 private:
  mutable std::atomic<int64_t> rows_run_{0};
  int segments_;
  FakeClock* clock_;
  double segment_us_;
  double whole_us_;
  double segment_row_us_;
  double whole_row_us_;
};

// A gap:linear cache on a [K, 1, 1] activation. Its predictor answers
// class (argmax(input) + shift) % K, confidently; its selector scores
// sigmoid(gain * (margin - margin_at_half)), margin = p1 - p2.
inline CacheWeights FakeCacheWeights(int tap, int shift, float margin_at_half,
                                     float gain = 40.0f) {
  CacheWeights w;
  w.variant = *ParseVariantSpec("gap:linear");
  w.tap = tap;
  w.shape = {kFakeClasses, 1, 1};
  w.num_classes = kFakeClasses;
  DenseLayer predictor;
  predictor.in = predictor.out = kFakeClasses;
  predictor.weight.assign(kFakeClasses * kFakeClasses, 0.0f);
  for (int i = 0; i < kFakeClasses; ++i) {
    predictor.weight[((i + shift) % kFakeClasses) * kFakeClasses + i] = 5.0f;
  }
  predictor.bias.assign(kFakeClasses, 0.0f);
  w.predictor = {predictor};
  DenseLayer selector;
  selector.in = kSelectorInputs;
  selector.out = 1;
  selector.weight = {0, 0, 0, gain, 0};
  selector.bias = {-gain * margin_at_half};
  w.selector = {selector};
  w.enabled = true;
  w.threshold = 0.5f;
  return w;
}

// A selector that always hits (margin_at_half far below 0) or never does.
inline constexpr float kAlwaysHit = -10.0f;
inline constexpr float kNeverHit = 10.0f;

inline std::shared_ptr<const LearnedCache> MakeCache(const CacheWeights& weights) {
  return std::shared_ptr<const LearnedCache>(*LearnedCache::Create(weights));
}

// Returns the current weights with the predictor bias moved by a tiny,
// class-independent amount: the same answers, a different version.
class NudgingTrainer final : public runtime::CacheTrainer {
 public:
  absl::StatusOr<CacheWeights> Train(const CacheWeights& current,
                                     const runtime::TrainingRows& predictor_rows,
                                     const runtime::TrainingRows& selector_rows,
                                     const LearnerOptions& options, uint64_t seed,
                                     const std::function<void()>& yield) override {
    CacheWeights next = current;
    for (float& b : next.predictor.back().bias) b += 1e-4f;
    if (yield) yield();
    return next;
  }
};

// Engine parts over FakeRunner with one cache per tap.
inline runtime::EngineParts FakeParts(const std::vector<CacheWeights>& caches) {
  runtime::EngineParts parts;
  parts.metadata.name = "fake";
  parts.metadata.input_shape = {kFakeClasses, 1, 1};
  parts.metadata.input_dtype = "float32";
  parts.metadata.mean = {0.0f};
  parts.metadata.std = {1.0f};
  parts.metadata.class_names = {"a", "b", "c", "d"};
  for (const CacheWeights& w : caches) {
    parts.taps.push_back(w.tap);
    parts.caches.push_back(MakeCache(w));
  }
  parts.runner = std::make_unique<FakeRunner>(static_cast<int>(caches.size()) + 1);
  parts.trainer = std::make_unique<NudgingTrainer>();
  parts.bundle_epsilon = 0.05;
  return parts;
}

// FakeParts on fake time: segments and the whole model cost what is given
// (per run, plus per row), and `probes` random inputs are the replay sample
// that mode kAuto times.
inline runtime::EngineParts TimedFakeParts(const std::vector<CacheWeights>& caches,
                                           FakeClock* clock, double segment_us,
                                           double whole_us, int probes,
                                           double segment_row_us = 0, double whole_row_us = 0) {
  runtime::EngineParts parts = FakeParts(caches);
  parts.runner = std::make_unique<FakeRunner>(static_cast<int>(caches.size()) + 1, clock,
                                              segment_us, whole_us, segment_row_us,
                                              whole_row_us);
  parts.env = clock;
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int i = 0; i < probes * kFakeClasses; ++i) parts.probe_inputs.push_back(uniform(rng));
  parts.probe_count = probes;
  return parts;
}

// Random inputs whose class margins spread from tiny to large.
inline std::vector<std::vector<float>> FakeInputs(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<std::vector<float>> inputs(count, std::vector<float>(kFakeClasses));
  for (auto& input : inputs) {
    for (float& v : input) v = uniform(rng);
  }
  return inputs;
}

inline int FakeBaseClass(const std::vector<float>& input) {
  return static_cast<int>(std::max_element(input.begin(), input.end()) - input.begin());
}

}  // namespace gati::testing

#endif  // GATI_TESTS_RUNTIME_RUNTIME_TESTUTIL_H_
