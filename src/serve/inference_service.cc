#include "serve/inference_service.h"

#include <algorithm>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data/preprocess.h"

namespace gati::serve {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::vector<int64_t> WithBatch(const std::vector<int64_t>& shape) {
  std::vector<int64_t> out = {-1};
  out.insert(out.end(), shape.begin(), shape.end());
  return out;
}

// Decrements the admission count when a request leaves.
class Admission {
 public:
  explicit Admission(std::atomic<int64_t>* in_flight) : in_flight_(in_flight) {}
  ~Admission() { in_flight_->fetch_sub(1); }

 private:
  std::atomic<int64_t>* in_flight_;
};

}  // namespace

const std::vector<std::string>& ServerExtensions() {
  static const std::vector<std::string> extensions = {
      "binary_tensor_data", "statistics", "model_repository",
      "model_repository(unload_dependents)", "model_configuration"};
  return extensions;
}

namespace {

absl::Status CheckRepositoryParameters(const std::vector<std::string>& names,
                                       const std::vector<std::string>& allowed,
                                       const char* action) {
  for (const std::string& name : names) {
    if (name == "config" || absl::StartsWith(name, "file:")) {
      return absl::InvalidArgumentError(absl::StrCat(
          action, ": parameter '", name, "' is not supported: gati serves bundles as built; "
          "rebuild or replace the bundle and load it again"));
    }
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat(action, ": unknown parameter '", name, "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadResult> InferenceService::Load(const std::string& model,
                                                  const std::vector<std::string>& parameters) {
  GATI_RETURN_IF_ERROR(CheckRepositoryParameters(parameters, {}, "load"));
  if (repository_->MetricsOf(model) == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
  }
  absl::StatusOr<LoadResult> loaded = repository_->Load(model);
  // The old version (if any) keeps serving; the load itself was bad.
  if (!loaded.ok()) return absl::InvalidArgumentError(loaded.status().message());
  return loaded;
}

absl::Status InferenceService::Unload(const std::string& model,
                                      const std::vector<std::string>& parameters) {
  GATI_RETURN_IF_ERROR(CheckRepositoryParameters(parameters, {"unload_dependents"}, "unload"));
  return repository_->Unload(model);
}

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: return 400;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted: return 503;
    default: return 500;
  }
}

InferenceService::InferenceService(ModelRepository* repository, const ServiceOptions& options)
    : repository_(repository), options_(options) {}

absl::StatusOr<InferReply> InferenceService::Infer(const std::string& model,
                                                   const std::string& version,
                                                   absl::StatusOr<DecodedRequest> request,
                                                   double received_us) {
  absl::StatusOr<std::shared_ptr<const ServedModel>> served = repository_->Get(model, version);
  if (!served.ok()) {
    std::shared_ptr<ModelMetrics> metrics = repository_->MetricsOf(model);
    if (metrics == nullptr) {
      unknown_model_requests_.fetch_add(1, std::memory_order_relaxed);
    } else if (absl::IsUnavailable(served.status())) {
      metrics->Fail(FailureReason::kUnavailable);
    } else {
      metrics->Fail(FailureReason::kInvalidArgument);  // Unknown version.
    }
    return served.status();
  }
  ModelMetrics& metrics = *(*served)->metrics;
  if (!request.ok()) {
    metrics.Fail(FailureReason::kInvalidArgument);
    return request.status();
  }
  // Admit first, then look at the drain flag: a drain that starts after
  // this request was counted waits for it (WaitIdle), one that started
  // before turns it away.
  const int64_t ahead = in_flight_.fetch_add(1);
  Admission admission(&in_flight_);
  if (draining_.load()) {
    metrics.Fail(FailureReason::kShuttingDown);
    return absl::UnavailableError("the server is shutting down");
  }
  if (ahead >= options_.max_queue) {
    metrics.Fail(FailureReason::kOverloaded);
    return absl::UnavailableError(absl::StrCat(
        "overloaded: ", options_.max_queue,
        " requests are already queued or running (--max-queue); retry later"));
  }
  // Wait for a computing slot; the wait is the request's queue time. A
  // model that batches has its own slots (its batcher's), and requests
  // must reach it to be merged.
  double waited_us = 0;
  const bool slotted = options_.max_computing > 0 && (*served)->batcher == nullptr;
  if (slotted) {
    const double before = NowMicros();
    computing_mu_.LockWhen(absl::Condition(
        +[](InferenceService* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->computing_mu_) {
          return self->computing_ < self->options_.max_computing;
        },
        this));
    ++computing_;
    computing_mu_.Unlock();
    waited_us = NowMicros() - before;
  }
  absl::StatusOr<InferReply> reply = Run(*served, std::move(request).value(), waited_us);
  if (slotted) {
    absl::MutexLock lock(&computing_mu_);
    --computing_;
  }
  if (!reply.ok()) {
    metrics.Fail(absl::IsInvalidArgument(reply.status()) ? FailureReason::kInvalidArgument
                                                          : FailureReason::kInternal);
    return reply.status();
  }
  metrics.successes.fetch_add(1, std::memory_order_relaxed);
  metrics.last_inference_ms.store(options_.env->UnixMillis(), std::memory_order_relaxed);
  return reply;
}

void InferenceService::RecordLatency(const InferReply& reply, double received_us) {
  reply.model->metrics->request.Observe((NowMicros() - received_us) / 1e6);
}

absl::StatusOr<RequestInput> NormalizeImages(const RequestInput& input,
                                             const ModelMetadata& metadata,
                                             const std::string& model) {
  const std::vector<int64_t>& chw = metadata.input_shape;
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("input '", input.name, "': ", why));
  };
  if (chw.size() != 3) {
    return bad(absl::StrCat("UINT8 images need a model that takes C x H x W images; model '",
                            model, "' takes ", ShapeText(chw)));
  }
  const std::vector<int64_t> hwc = {chw[1], chw[2], chw[0]};
  std::vector<int64_t> sample(input.shape);
  int64_t batch = 0;
  if (sample.size() == 4) {
    batch = sample[0];
    sample.erase(sample.begin());
  }
  const bool channels_first = sample == chw;
  if (input.shape.size() != 4 || (!channels_first && sample != hwc)) {
    return bad(absl::StrCat("UINT8 shape ", ShapeText(input.shape), " does not fit model '",
                            model, "': it takes images ", ShapeText(WithBatch(chw)),
                            " or ", ShapeText(WithBatch(hwc))));
  }
  GATI_ASSIGN_OR_RETURN(const Preprocessor preprocessor, Preprocessor::Create(metadata));
  const int64_t c = chw[0], plane = chw[1] * chw[2];
  RequestInput out;
  out.name = input.name;
  out.datatype = "FP32";
  out.shape = WithBatch(chw);
  out.shape[0] = batch;
  out.data.resize(input.data.size());
  for (int64_t i = 0; i < batch; ++i) {
    const float* in = input.data.data() + i * c * plane;
    float* to = out.data.data() + i * c * plane;
    for (int64_t p = 0; p < plane; ++p) {
      for (int64_t k = 0; k < c; ++k) {
        to[k * plane + p] = (channels_first ? in[k * plane + p] : in[p * c + k]) / 255.0f;
      }
    }
  }
  preprocessor.Apply(out.data.data(), batch, out.data.data());
  return out;
}

absl::StatusOr<InferReply> InferenceService::Run(const std::shared_ptr<const ServedModel>& model,
                                                 DecodedRequest request, double waited_us) {
  Engine& engine = *model->engine;
  const std::string& name = model->name;
  if (request.inputs.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("model '", name, "' takes one input, '",
                                                   kInputName, "'; the request has ",
                                                   request.inputs.size()));
  }
  if (request.inputs[0].name != kInputName) {
    return absl::InvalidArgumentError(absl::StrCat("model '", name, "' has no input '",
                                                   request.inputs[0].name, "'; its input is '",
                                                   kInputName, "'"));
  }
  if (request.inputs[0].datatype == "UINT8") {
    GATI_ASSIGN_OR_RETURN(request.inputs[0], NormalizeImages(request.inputs[0],
                                                             engine.metadata(), name));
  }
  const RequestInput& input = request.inputs[0];
  const std::vector<int64_t>& sample_shape = engine.input_shape();
  int64_t batch = 0;
  // The declared shape, batch dimension included: [-1, C, H, W].
  if (input.shape.size() == sample_shape.size() + 1 &&
      std::equal(sample_shape.begin(), sample_shape.end(), input.shape.begin() + 1)) {
    batch = input.shape[0];
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", kInputName, "': shape ", ShapeText(input.shape),
                     " does not fit model '", name, "', which takes ",
                     ShapeText(WithBatch(sample_shape))));
  }
  if (batch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("input '", kInputName, "': the batch holds no sample"));
  }
  std::vector<RequestOutput> wanted = request.outputs;
  if (wanted.empty()) {
    wanted = {{kClassOutput, request.binary_output},
              {kProbabilitiesOutput, request.binary_output}};
  }
  bool want_scores = false;
  for (const RequestOutput& output : wanted) {
    if (output.name == kProbabilitiesOutput) {
      want_scores = true;
    } else if (output.name != kClassOutput) {
      return absl::InvalidArgumentError(
          absl::StrCat("model '", name, "' has no output '", output.name, "'; its outputs are '",
                       kClassOutput, "' and '", kProbabilitiesOutput, "'"));
    }
  }

  const int64_t sample_size = static_cast<int64_t>(input.data.size()) / batch;
  const int classes = engine.num_classes();
  std::vector<int64_t> labels;
  std::vector<float> probabilities;
  labels.reserve(batch);
  if (want_scores) probabilities.reserve(batch * classes);
  int exit_tap = 0;
  bool all_hits = true, all_exact = true;
  int64_t cache_version = 0;
  double engine_us = waited_us;
  // The rows: through the model's batcher (merged with other requests),
  // or as one batch of their own.
  std::vector<const float*> rows(batch);
  for (int64_t i = 0; i < batch; ++i) rows[i] = input.data.data() + i * sample_size;
  const double started_us = NowMicros();
  std::vector<absl::StatusOr<InferResult>> results;
  double batch_wait_us = 0;  // In the batcher's queue, before its batch began.
  if (model->batcher != nullptr) {
    results = model->batcher->Run(rows.data(), batch, sample_size, want_scores, &batch_wait_us);
  } else {
    results = engine.InferBatch(rows.data(), batch, sample_size, {want_scores});
    model->metrics->executions.fetch_add(1, std::memory_order_relaxed);
  }
  // From the call to the answer: the batch's compute and, through the
  // batcher, the wait before the batch began (queue time).
  const double call_us = NowMicros() - started_us;
  for (int64_t i = 0; i < batch; ++i) {
    absl::StatusOr<InferResult>& result = results[i];
    if (!result.ok()) {
      const std::string where = batch > 1 ? absl::StrCat(" (sample ", i, ")") : "";
      if (absl::IsInvalidArgument(result.status())) {
        return absl::InvalidArgumentError(
            absl::StrCat("input '", kInputName, "'", where, ": ", result.status().message()));
      }
      return absl::InternalError(
          absl::StrCat("model '", name, "'", where, ": ", result.status().message()));
    }
    labels.push_back(result->label);
    if (want_scores) {
      probabilities.insert(probabilities.end(), result->scores.begin(), result->scores.end());
    }
    // A batch reports its latest exit: the base model if any sample
    // needed it, otherwise the deepest answering tap.
    if (result->exit_tap == kBaseExit || exit_tap == kBaseExit) {
      exit_tap = kBaseExit;
    } else {
      exit_tap = std::max(exit_tap, result->exit_tap);
    }
    all_hits = all_hits && result->cache_hit;
    all_exact = all_exact && result->exact_hit;
    cache_version = std::max(cache_version, result->cache_version);
  }
  // Once per request, as Triton counts them: the queue (a computing slot,
  // then the batcher's queue, then the engine's own wait for a worker) and
  // the compute, the rest of the call.
  double engine_queue_us = 0;
  for (const auto& result : results) {
    if (result.ok()) engine_queue_us = std::max(engine_queue_us, result->timings.queue_us);
  }
  model->metrics->queue.Observe((waited_us + batch_wait_us + engine_queue_us) / 1e6);
  model->metrics->compute.Observe(
      std::max(0.0, call_us - batch_wait_us - engine_queue_us) / 1e6);
  engine_us += call_us;
  model->metrics->inferences.fetch_add(batch, std::memory_order_relaxed);
  // Only requests the engine accepted (finite, of the model's shape).
  if (options_.recorder != nullptr) {
    options_.recorder->Offer(name, engine.metadata(), input.data.data(), batch);
  }

  InferReply reply;
  reply.model = model;
  reply.id = request.id;
  reply.engine_us = engine_us;
  reply.parameters = {{"gati_exit_tap", static_cast<int64_t>(exit_tap)},
                      {"gati_cache_hit", all_hits},
                      {"gati_exact_hit", all_exact},
                      {"gati_cache_version", cache_version}};
  for (const RequestOutput& output : wanted) {
    ResponseOutput out;
    out.name = output.name;
    out.binary = output.binary;
    if (output.name == kClassOutput) {
      out.datatype = "INT64";
      out.shape = {batch};
      out.int64 = labels;
    } else {
      out.datatype = "FP32";
      out.shape = {batch, classes};
      out.fp32 = probabilities;
    }
    reply.outputs.push_back(std::move(out));
  }
  return reply;
}

ModelStatistics StatisticsOf(const ServedModel& model) {
  const ModelMetrics& m = *model.metrics;
  ModelStatistics out;
  for (const auto& count : m.failures) out.fail.count += count.load();
  const auto request = m.request.Read(), queue = m.queue.Read(), compute = m.compute.Read();
  out.last_inference_ms = m.last_inference_ms.load();
  out.inference_count = m.inferences.load();
  out.execution_count = m.executions.load();
  out.success = {request.count, request.sum_seconds};
  out.queue = {queue.count, queue.sum_seconds};
  out.compute = {compute.count, compute.sum_seconds};
  out.engine = model.engine->Stats();
  return out;
}

int ConfigMaxBatchSize(const ServedModel& model) { return model.batching.max_batch_size; }

std::vector<int64_t> ConfigDims(const ServedModel& model, const TensorDescription& tensor) {
  if (ConfigMaxBatchSize(model) == 0) return tensor.shape;
  std::vector<int64_t> sample(tensor.shape.begin() + 1, tensor.shape.end());
  if (sample.empty()) sample = {1};  // A scalar per sample, as Triton writes one.
  return sample;
}

ModelDescription DescribeModel(const ServedModel& model) {
  ModelDescription description;
  description.name = model.name;
  description.versions = {model.version_string()};
  description.inputs = {{kInputName, "FP32", WithBatch(model.engine->input_shape())}};
  description.outputs = {{kClassOutput, "INT64", {-1}},
                         {kProbabilitiesOutput, "FP32", {-1, model.engine->num_classes()}}};
  return description;
}

absl::StatusOr<ModelDescription> InferenceService::Describe(const std::string& model,
                                                            const std::string& version) const {
  GATI_ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> served,
                        repository_->Get(model, version));
  return DescribeModel(*served);
}

absl::StatusOr<bool> InferenceService::ModelReady(const std::string& model,
                                                  const std::string& version) const {
  absl::StatusOr<std::shared_ptr<const ServedModel>> served = repository_->Get(model, version);
  if (!served.ok() && absl::IsNotFound(served.status())) return served.status();
  return served.ok() && !draining();
}

bool InferenceService::Ready() const { return !draining_.load() && repository_->AllReady(); }

void InferenceService::BeginDrain() { draining_.store(true); }

bool InferenceService::WaitIdle(std::chrono::milliseconds timeout) const {
  const double deadline_us = NowMicros() + 1000.0 * static_cast<double>(timeout.count());
  while (in_flight_.load() > 0) {
    if (NowMicros() >= deadline_us) return false;
    options_.env->SleepForMicros(5000);
  }
  return true;
}

std::string InferenceService::RenderMetrics() const {
  ServerMetricsView server;
  server.in_flight = in_flight_.load();
  server.queue_capacity = options_.max_queue;
  server.ready = Ready();
  server.unknown_model_requests = unknown_model_requests_.load();
  server.overhead = &overhead_;
  std::vector<std::shared_ptr<const ServedModel>> loaded = repository_->Loaded();
  std::vector<ModelMetricsView> models;
  for (const auto& model : loaded) {
    models.push_back({model->name, model->version, model->metrics.get(), model->engine->Stats()});
  }
  // The copies hold the metrics of unloaded models alive while rendering.
  const std::vector<ModelState> states = repository_->States();
  for (const ModelState& state : states) {
    if (!state.ready) server.unloaded.push_back({state.name, state.version, state.metrics.get()});
  }
  return RenderPrometheus(server, models);
}

}  // namespace gati::serve
