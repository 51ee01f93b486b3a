// Serving metrics and their Prometheus text exposition (format 0.0.4).
//
// Counters and histograms are atomics updated on the request path without a
// lock; the exposition reads them, and each engine's Stats(), at scrape time.
// Per-model metrics outlive reloads (the counters keep counting across
// versions); engine counters (per-tap lookups, hits, updates) restart with
// each loaded version, which Prometheus treats as a counter reset.
#ifndef GATI_SERVE_METRICS_H_
#define GATI_SERVE_METRICS_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gati/engine.h"

namespace gati::serve {

// A histogram with fixed bucket bounds (seconds), updated lock-free.
template <size_t N>
class BucketHistogram {
 public:
  // `bounds`: upper bounds of the finite buckets, ascending; static.
  explicit BucketHistogram(const std::array<double, N>* bounds) : bounds_(bounds) {}

  void Observe(double seconds) {
    if (!(seconds >= 0)) seconds = 0;  // Also maps NaN to 0.
    const auto bound = std::lower_bound(bounds_->begin(), bounds_->end(), seconds);
    buckets_[bound - bounds_->begin()].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<int64_t>(std::llround(seconds * 1e9)),
                      std::memory_order_relaxed);
  }

  struct Snapshot {
    std::array<int64_t, N> cumulative{};  // Count <= bound.
    int64_t count = 0;
    double sum_seconds = 0;
  };
  Snapshot Read() const {
    Snapshot snapshot;
    int64_t running = 0;
    for (size_t i = 0; i < N; ++i) {
      running += buckets_[i].load(std::memory_order_relaxed);
      snapshot.cumulative[i] = running;
    }
    snapshot.count = running + buckets_[N].load(std::memory_order_relaxed);
    snapshot.sum_seconds = sum_ns_.load(std::memory_order_relaxed) / 1e9;
    return snapshot;
  }
  const std::array<double, N>& bounds() const { return *bounds_; }

 private:
  const std::array<double, N>* bounds_;
  std::array<std::atomic<int64_t>, N + 1> buckets_{};  // +1: above all.
  std::atomic<int64_t> sum_ns_{0};
};

// Request latencies: 100 µs to 10 s.
inline constexpr std::array<double, 16> kLatencyBounds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075,
    0.01,   0.02,    0.05,   0.1,   0.25,  0.5,   1.0,   10.0};
class LatencyHistogram : public BucketHistogram<kLatencyBounds.size()> {
 public:
  static constexpr const auto& kBounds = kLatencyBounds;
  LatencyHistogram() : BucketHistogram(&kLatencyBounds) {}
};

// The server's own time per request (request in to response out, less the
// engine's): 5 µs steps to 300 µs, then coarser to 10 ms.
inline constexpr std::array<double, 68> kOverheadBounds = [] {
  std::array<double, 68> bounds{};
  for (int i = 0; i < 60; ++i) bounds[i] = 5e-6 * (i + 1);
  const double tail[] = {0.00035, 0.0004, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01};
  for (int i = 0; i < 8; ++i) bounds[60 + i] = tail[i];
  return bounds;
}();
class OverheadHistogram : public BucketHistogram<kOverheadBounds.size()> {
 public:
  OverheadHistogram() : BucketHistogram(&kOverheadBounds) {}
};

// The front ends whose overhead is measured.
enum class Transport { kHttpJson, kHttpBinary, kGrpc };
inline constexpr int kNumTransports = 3;
const char* TransportLabel(Transport transport);

// Why a request failed, as the `reason` label says it.
enum class FailureReason {
  kInvalidArgument,  // Malformed request, wrong shape/dtype/values (400).
  kOverloaded,       // The request queue was full (503).
  kShuttingDown,     // The server was draining (503).
  kUnavailable,      // The model is not loaded (503).
  kInternal,         // The model failed (500).
};
inline constexpr int kNumFailureReasons = 5;
const char* FailureReasonLabel(FailureReason reason);

// Request metrics of one model name.
struct ModelMetrics {
  std::atomic<int64_t> successes{0};
  std::array<std::atomic<int64_t>, kNumFailureReasons> failures{};
  std::atomic<int64_t> inferences{0};  // Samples answered (a batch of N counts N).
  // Model executions: one per request, or per batch the batcher ran.
  std::atomic<int64_t> executions{0};
  std::atomic<int64_t> last_inference_ms{0};  // Unix time of the last success.
  LatencyHistogram request;  // Whole request: decode to encoded answer.
  LatencyHistogram queue;    // Per sample: waiting for an engine worker.
  LatencyHistogram compute;  // Per sample: engine time after the queue.

  void Fail(FailureReason reason) {
    failures[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
  }
};

// What the exposition reads for one loaded model.
struct ModelMetricsView {
  std::string name;
  int64_t version = 0;
  const ModelMetrics* metrics = nullptr;
  EngineStats stats;
};

// Server-wide gauges and counters.
struct ServerMetricsView {
  int64_t in_flight = 0;
  int64_t queue_capacity = 0;
  bool ready = false;
  // Inference requests naming a model the server does not have; rendered
  // as failures of model "(unknown)" (no real name has parentheses), so the
  // label set stays bounded whatever names clients send.
  int64_t unknown_model_requests = 0;
  struct NotLoaded {
    std::string name;
    int64_t version = 0;  // The last version served; 0: never loaded.
    const ModelMetrics* metrics = nullptr;
  };
  // Request counters of models that are registered but not loaded now.
  std::vector<NotLoaded> unloaded;
  // The server's own time per inference request, by front end.
  const std::array<OverheadHistogram, kNumTransports>* overhead = nullptr;
};

// Renders everything in the Prometheus text format, one HELP and TYPE line
// per metric family; `promtool check metrics` accepts the output. Every
// per-model series carries `model` and `version` labels; the request
// counters also appear under Triton's names (nv_inference_*, durations as
// cumulative microseconds), so that Triton dashboards work unchanged.
std::string RenderPrometheus(const ServerMetricsView& server,
                             const std::vector<ModelMetricsView>& models);

}  // namespace gati::serve

#endif  // GATI_SERVE_METRICS_H_
