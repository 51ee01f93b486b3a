// The protocol-neutral core of `gati serve`: admission (a bounded request
// queue), draining, validation of decoded requests against the model, the
// engine call, the response tensors and the request metrics. The HTTP and
// gRPC front ends decode and encode; everything in between is here, so both
// answer the same way.
//
// Tensors: one input, "input": FP32 of the shape the metadata declares,
// [N, C, H, W] with the model's C, H, W and N >= 1 (the batch dimension is
// required, as the declared -1 says), or raw UINT8 images [N, C, H, W] or
// [N, H, W, C]. Outputs: "class" (INT64 [N]) and "probabilities"
// (FP32 [N, classes]); a request without an `outputs` list gets both, as
// the protocol says.
#ifndef GATI_SERVE_INFERENCE_SERVICE_H_
#define GATI_SERVE_INFERENCE_SERVICE_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gati/status.h"
#include "runtime/env.h"
#include "serve/metrics.h"
#include "serve/model_repository.h"
#include "serve/oip_codec.h"
#include "serve/recorder.h"

namespace gati::serve {

inline constexpr char kServerName[] = "gati";
inline constexpr char kServerVersion[] = "0.1.0";
inline constexpr char kPlatform[] = "pytorch_torchscript";
inline constexpr char kInputName[] = "input";
inline constexpr char kClassOutput[] = "class";
inline constexpr char kProbabilitiesOutput[] = "probabilities";
// Protocol extensions the server implements (server metadata).
const std::vector<std::string>& ServerExtensions();

struct ServiceOptions {
  // Most inference requests admitted at once (in the engine or waiting for
  // it); more are answered Unavailable (HTTP 503) at once.
  int max_queue = 64;
  DecodeLimits limits;
  // Time for latency metrics, the last-inference timestamp and WaitIdle;
  // tests inject fake time. Not owned; must outlive the service.
  runtime::Env* env = runtime::Env::Default();
  // When set, every answered request is offered to it (gati serve
  // --record); not owned, must outlive the service.
  TrafficRecorder* recorder = nullptr;
  // Most admitted requests computing at once (0: no limit); the others
  // wait, and the wait counts as queue time. gati serve sets it to
  // --workers: in sequential mode the engine computes on the caller's
  // thread, and more computations than cores only slow each other and the
  // threads that read and write connections.
  int max_computing = 0;
};

struct TensorDescription {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;  // -1: the batch dimension.
};

// What the model metadata endpoints say about a model.
struct ModelDescription {
  std::string name;
  std::vector<std::string> versions;
  std::string platform = kPlatform;
  std::vector<TensorDescription> inputs;
  std::vector<TensorDescription> outputs;
};

struct InferReply {
  std::shared_ptr<const ServedModel> model;  // The version that answered.
  std::string id;
  std::vector<std::pair<std::string, ParameterValue>> parameters;
  std::vector<ResponseOutput> outputs;
  // The engine's time for the request (every sample, queue included).
  double engine_us = 0;
};

class InferenceService {
 public:
  // `repository` must outlive the service.
  InferenceService(ModelRepository* repository, const ServiceOptions& options);

  // Now on the service's clock (microseconds), for a front end to stamp a
  // request's arrival.
  double NowMicros() const { return options_.env->NowMicros(); }

  // Runs a decoded request (or counts its decode error) on `model`
  // (`version` empty: the one being served). `received_us` is when the
  // front end got the request (NowMicros); the request latency metric
  // starts there.
  // Errors: InvalidArgument (the decode error, or a request that does not
  // fit the model), NotFound (model or version), Unavailable (queue full,
  // draining, model not loaded), Internal (the model failed). Thread-safe.
  absl::StatusOr<InferReply> Infer(const std::string& model, const std::string& version,
                                   absl::StatusOr<DecodedRequest> request, double received_us);

  // Records the whole request's latency once the front end has encoded the
  // reply.
  void RecordLatency(const InferReply& reply, double received_us);

  // Records the front end's own time for one answered inference request:
  // `elapsed_us` from request in to response out, less the reply's
  // `engine_us`. Thread-safe.
  void RecordOverhead(Transport transport, double elapsed_us, double engine_us) {
    overhead_[static_cast<int>(transport)].Observe(std::max(0.0, elapsed_us - engine_us) / 1e6);
  }

  // Metadata of `model`; NotFound / Unavailable as Infer.
  absl::StatusOr<ModelDescription> Describe(const std::string& model,
                                            const std::string& version) const;

  // Whether `model` (at `version`, empty: the one served) is loaded and the
  // server is not draining; NotFound for an unknown name or version.
  absl::StatusOr<bool> ModelReady(const std::string& model, const std::string& version) const;

  // Live: always, while the process answers. Ready: every model loaded and
  // not draining.
  bool Ready() const;

  // Stops admitting inference requests (they get Unavailable) and turns
  // readiness off; requests already admitted finish.
  void BeginDrain();
  bool draining() const { return draining_.load(); }
  // Waits until no admitted request is left or `timeout` passes on the
  // service's clock (polling every 5 ms); true when none is left.
  bool WaitIdle(std::chrono::milliseconds timeout) const;
  int64_t in_flight() const { return in_flight_.load(); }

  // Every metric in the Prometheus text format.
  std::string RenderMetrics() const;

  // The model repository extension, for both front ends. `parameters`
  // names the request's parameters: a load takes none, an unload
  // "unload_dependents"; "config" and "file:..." overrides are refused
  // (InvalidArgument), never ignored. NotFound for an unknown model;
  // InvalidArgument for a bundle that does not load (the old version keeps
  // serving).
  absl::StatusOr<LoadResult> Load(const std::string& model,
                                  const std::vector<std::string>& parameters);
  absl::Status Unload(const std::string& model, const std::vector<std::string>& parameters);

  ModelRepository* repository() const { return repository_; }
  const ServiceOptions& options() const { return options_; }

 private:
  // `waited_us`: how long the request waited for a computing slot (queue
  // time of its first sample).
  absl::StatusOr<InferReply> Run(const std::shared_ptr<const ServedModel>& model,
                                 DecodedRequest request, double waited_us);

  ModelRepository* const repository_;
  const ServiceOptions options_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> unknown_model_requests_{0};
  std::array<OverheadHistogram, kNumTransports> overhead_;
  absl::Mutex computing_mu_;
  int computing_ ABSL_GUARDED_BY(computing_mu_) = 0;
};

// Raw UINT8 images (values 0..255), [N, C, H, W] or [N, H, W, C] (the batch
// dimension optional), as the model's normalized FP32 [N, C, H, W]
// (pixel / 255, then the metadata's normalization). InvalidArgument, naming
// the input and `model`, for another shape or a model that does not take
// C x H x W images.
absl::StatusOr<RequestInput> NormalizeImages(const RequestInput& input,
                                             const ModelMetadata& metadata,
                                             const std::string& model);

// The metadata endpoints' description of a loaded model.
ModelDescription DescribeModel(const ServedModel& model);
// The model config's max_batch_size: its config.json's, or the server's
// when it batches by the server's flags; 0 when it does not batch.
int ConfigMaxBatchSize(const ServedModel& model);
// A tensor's dims in the model config: as Triton writes them, one
// sample's when max_batch_size is above 0 ([1] for a scalar per sample),
// otherwise with the batch dimension (-1).
std::vector<int64_t> ConfigDims(const ServedModel& model, const TensorDescription& tensor);

// A model's statistics, as the statistics extension reports them (HTTP
// and gRPC), with the engine's own.
struct DurationStat {
  int64_t count = 0;
  double seconds = 0;
};
struct ModelStatistics {
  int64_t last_inference_ms = 0;
  int64_t inference_count = 0;  // Samples answered.
  int64_t execution_count = 0;  // Requests answered.
  DurationStat success, fail, queue, compute;
  EngineStats engine;
};
ModelStatistics StatisticsOf(const ServedModel& model);

// The HTTP status a Status maps to under the protocol (200 for OK).
int HttpStatusOf(const absl::Status& status);

}  // namespace gati::serve

#endif  // GATI_SERVE_INFERENCE_SERVICE_H_
