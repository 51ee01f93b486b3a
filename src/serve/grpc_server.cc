#include "serve/grpc_server.h"

#include <deque>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc_predict_v2.grpc.pb.h"

namespace gati::serve {
namespace {


grpc::Status ToGrpc(const absl::Status& status) {
  // absl's canonical codes are gRPC's, number for number.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::StatusOr<DecodedRequest> Decode(const inference::ModelInferRequest& request,
                                      const DecodeLimits& limits) {
  DecodedRequest decoded;
  decoded.id = request.id();
  const bool raw = request.raw_input_contents_size() > 0;
  if (raw && request.raw_input_contents_size() != request.inputs_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw_input_contents has ", request.raw_input_contents_size(),
                     " entries for ", request.inputs_size(), " inputs"));
  }
  if (request.inputs_size() == 0) {
    return absl::InvalidArgumentError("the request needs at least one input");
  }
  std::deque<std::string> uint8_values;  // Stable storage for `bytes`.
  for (int i = 0; i < request.inputs_size(); ++i) {
    const auto& input = request.inputs(i);
    std::string_view bytes;
    if (raw) {
      if (input.has_contents()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input '", input.name(), "': has contents and raw_input_contents; give one"));
      }
      bytes = request.raw_input_contents(i);
    } else {
      const auto& contents = input.contents();
      const bool uint8 = input.datatype() == "UINT8";
      if (!uint8 && input.datatype() != "FP32") {
        return absl::InvalidArgumentError(absl::StrCat(
            "input '", input.name(), "': datatype ", input.datatype().empty() ? "(none)" :
            input.datatype(), " is not supported; the model takes FP32 (or UINT8 images)"));
      }
      if (contents.int_contents_size() || contents.int64_contents_size() ||
          (!uint8 && contents.uint_contents_size()) || contents.uint64_contents_size() ||
          contents.bool_contents_size() || contents.fp64_contents_size() ||
          contents.bytes_contents_size() || (uint8 && contents.fp32_contents_size())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input '", input.name(), "': FP32 values go in fp32_contents, UINT8 values in "
            "uint_contents, or either in raw_input_contents"));
      }
      if (uint8) {
        // uint_contents holds UINT8 values one per uint32.
        uint8_values.emplace_back();
        std::string& packed = uint8_values.back();
        for (uint32_t v : contents.uint_contents()) {
          if (v > 255) {
            return absl::InvalidArgumentError(absl::StrCat(
                "input '", input.name(), "': uint_contents value ", v, " is not a UINT8"));
          }
          packed.push_back(static_cast<char>(v));
        }
        bytes = packed;
      } else {
        bytes = std::string_view(reinterpret_cast<const char*>(contents.fp32_contents().data()),
                                 contents.fp32_contents_size() * sizeof(float));
      }
    }
    std::vector<int64_t> shape(input.shape().begin(), input.shape().end());
    GATI_ASSIGN_OR_RETURN(RequestInput tensor,
                          MakeInput(input.name(), input.datatype(), std::move(shape), bytes, limits));
    decoded.inputs.push_back(std::move(tensor));
  }
  for (const auto& output : request.outputs()) {
    decoded.outputs.push_back({output.name(), /*binary=*/true});
  }
  return decoded;
}

void SetParameter(const ParameterValue& value, inference::InferParameter* out) {
  if (const bool* b = std::get_if<bool>(&value)) {
    out->set_bool_param(*b);
  } else if (const int64_t* i = std::get_if<int64_t>(&value)) {
    out->set_int64_param(*i);
  } else {
    out->set_string_param(std::get<std::string>(value));
  }
}

// Every unary RPC reads its request itself (a streamed unary method), so
// that a request that is not a valid protobuf gets INVALID_ARGUMENT with a
// reason rather than gRPC's bare INTERNAL.
using ServiceBase = inference::GRPCInferenceService::StreamedUnaryService;

// Reads the request of a streamed unary call, runs `handler` on it and
// writes its response.
template <typename Request, typename Response, typename Handler>
grpc::Status Unary(grpc::ServerUnaryStreamer<Request, Response>* streamer, Handler handler) {
  Request request;
  if (!streamer->Read(&request)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("the request is not a valid ",
                                     Request::descriptor()->full_name(), " message"));
  }
  Response response;
  grpc::Status status = handler(request, &response);
  // The only message: corked with the status that follows, so gRPC sends
  // both at once instead of waiting for the message's own send here.
  if (status.ok()) streamer->Write(response, grpc::WriteOptions().set_last_message());
  return status;
}

// The streamed form of RPC `name` of API group `api`: the caller's access
// is checked before its message is read, then `nameImpl` runs.
#define GATI_UNARY_RPC(name, api)                                                               \
  grpc::Status Streamed##name(                                                                  \
      grpc::ServerContext* context,                                                             \
      grpc::ServerUnaryStreamer<inference::name##Request, inference::name##Response>* streamer) \
      override {                                                                                \
    if (grpc::Status denied = Check(context, Api::api); !denied.ok()) return denied;           \
    return Unary(streamer, [&](const inference::name##Request& request,                         \
                               inference::name##Response* response) {                           \
      return name##Impl(context, &request, response);                                           \
    });                                                                                         \
  }

class InferenceServiceImpl final : public ServiceBase {
 public:
  InferenceServiceImpl(InferenceService* service, const AccessPolicy* access)
      : service_(service), access_(access) {}

  grpc::Status ServerLiveImpl(grpc::ServerContext* context, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* response) {
    response->set_live(true);
    return grpc::Status::OK;
  }

  grpc::Status ServerReadyImpl(grpc::ServerContext* context, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* response) {
    response->set_ready(service_->Ready());
    return grpc::Status::OK;
  }

  grpc::Status ModelReadyImpl(grpc::ServerContext* context, const inference::ModelReadyRequest* request,
                          inference::ModelReadyResponse* response) {
    absl::StatusOr<bool> ready = service_->ModelReady(request->name(), request->version());
    if (!ready.ok()) return ToGrpc(ready.status());
    response->set_ready(*ready);
    return grpc::Status::OK;
  }

  grpc::Status ServerMetadataImpl(grpc::ServerContext* context, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* response) {
    response->set_name(kServerName);
    response->set_version(kServerVersion);
    for (const std::string& extension : ServerExtensions()) response->add_extensions(extension);
    return grpc::Status::OK;
  }

  grpc::Status ModelMetadataImpl(grpc::ServerContext* context, const inference::ModelMetadataRequest* request,
                             inference::ModelMetadataResponse* response) {
    absl::StatusOr<ModelDescription> description =
        service_->Describe(request->name(), request->version());
    if (!description.ok()) return ToGrpc(description.status());
    response->set_name(description->name);
    for (const std::string& v : description->versions) response->add_versions(v);
    response->set_platform(description->platform);
    auto fill = [](const TensorDescription& t, inference::ModelMetadataResponse::TensorMetadata* out) {
      out->set_name(t.name);
      out->set_datatype(t.datatype);
      for (int64_t d : t.shape) out->add_shape(d);
    };
    for (const TensorDescription& t : description->inputs) fill(t, response->add_inputs());
    for (const TensorDescription& t : description->outputs) fill(t, response->add_outputs());
    return grpc::Status::OK;
  }

  GATI_UNARY_RPC(ServerLive, kHealth)
  GATI_UNARY_RPC(ServerReady, kHealth)
  GATI_UNARY_RPC(ModelReady, kHealth)
  GATI_UNARY_RPC(ServerMetadata, kMetadata)
  GATI_UNARY_RPC(ModelMetadata, kMetadata)
  GATI_UNARY_RPC(ModelConfig, kModelConfig)
  GATI_UNARY_RPC(ModelStatistics, kStatistics)
  GATI_UNARY_RPC(RepositoryIndex, kModelRepository)
  GATI_UNARY_RPC(RepositoryModelLoad, kModelRepository)
  GATI_UNARY_RPC(RepositoryModelUnload, kModelRepository)

  grpc::Status StreamedModelInfer(
      grpc::ServerContext* context,
      grpc::ServerUnaryStreamer<inference::ModelInferRequest, inference::ModelInferResponse>*
          streamer) override {
    if (grpc::Status denied = Check(context, Api::kInference); !denied.ok()) return denied;
    const auto started = std::chrono::steady_clock::now();
    inference::ModelInferRequest request;
    if (!streamer->Read(&request)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the request is not a valid inference.ModelInferRequest message");
    }
    inference::ModelInferResponse response;
    double engine_us = 0;
    grpc::Status status = RunInfer(request, &response, &engine_us);
    if (!status.ok()) return status;
    streamer->Write(response, grpc::WriteOptions().set_last_message());
    service_->RecordOverhead(
        Transport::kGrpc,
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - started)
            .count(),
        engine_us);
    return grpc::Status::OK;
  }

  grpc::Status ModelStreamInfer(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<inference::ModelStreamInferResponse, inference::ModelInferRequest>*
          stream) override {
    if (grpc::Status denied = Check(context, Api::kInference); !denied.ok()) return denied;
    inference::ModelInferRequest request;
    while (stream->Read(&request)) {
      inference::ModelStreamInferResponse response;
      const grpc::Status status = RunInfer(request, response.mutable_infer_response());
      if (!status.ok()) {
        response.clear_infer_response();
        response.set_error_message(status.error_message());
      }
      if (!stream->Write(response)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status ModelConfigImpl(grpc::ServerContext* context,
                           const inference::ModelConfigRequest* request,
                           inference::ModelConfigResponse* response) {
    auto served = service_->repository()->Get(request->name(), request->version());
    if (!served.ok()) return ToGrpc(served.status());
    const ServedModel& model = **served;
    const ModelDescription description = DescribeModel(model);
    inference::ModelConfig* config = response->mutable_config();
    config->set_name(model.name);
    config->set_platform(kPlatform);
    config->set_backend("gati");
    config->set_max_batch_size(ConfigMaxBatchSize(model));
    if (model.batcher != nullptr) {
      auto* dynamic = config->mutable_dynamic_batching();
      for (int size : model.batching.preferred_batch_sizes) dynamic->add_preferred_batch_size(size);
      dynamic->set_max_queue_delay_microseconds(
          static_cast<uint64_t>(model.batching.max_queue_delay_us));
    }
    for (const TensorDescription& t : description.inputs) {
      auto* input = config->add_input();
      input->set_name(t.name);
      input->set_data_type(DataTypeOf(t.datatype));
      for (int64_t d : ConfigDims(model, t)) input->add_dims(d);
    }
    for (const TensorDescription& t : description.outputs) {
      auto* output = config->add_output();
      output->set_name(t.name);
      output->set_data_type(DataTypeOf(t.datatype));
      for (int64_t d : ConfigDims(model, t)) output->add_dims(d);
    }
    auto& parameters = *config->mutable_parameters();
    parameters["gati_version"].set_string_value(model.version_string());
    parameters["gati_bundle"].set_string_value(
        std::filesystem::path(model.bundle_dir).filename().string());
    parameters["gati_base_model"].set_string_value(model.engine->metadata().name);
    parameters["gati_planned_taps"].set_string_value(
        absl::StrJoin(model.engine->planned_taps(), ","));
    parameters["gati_predicted_mean_ms"].set_string_value(
        absl::StrCat(model.engine->predicted_mean_ms()));
    parameters["gati_predicted_base_ms"].set_string_value(
        absl::StrCat(model.engine->predicted_base_ms()));
    parameters["gati_plan_batch"].set_string_value(absl::StrCat(model.engine->plan_batch()));
    return grpc::Status::OK;
  }

  grpc::Status ModelStatisticsImpl(grpc::ServerContext* context,
                               const inference::ModelStatisticsRequest* request,
                               inference::ModelStatisticsResponse* response) {
    std::vector<std::shared_ptr<const ServedModel>> models;
    if (request->name().empty()) {
      models = service_->repository()->Loaded();
    } else {
      auto served = service_->repository()->Get(request->name(), request->version());
      if (!served.ok()) return ToGrpc(served.status());
      models.push_back(*served);
    }
    auto duration = [](const DurationStat& from, inference::StatisticDuration* to) {
      to->set_count(static_cast<uint64_t>(from.count));
      to->set_ns(static_cast<uint64_t>(from.seconds * 1e9));
    };
    for (const auto& model : models) {
      const serve::ModelStatistics stats = StatisticsOf(*model);
      auto* out = response->add_model_stats();
      out->set_name(model->name);
      out->set_version(model->version_string());
      out->set_last_inference(static_cast<uint64_t>(stats.last_inference_ms));
      out->set_inference_count(static_cast<uint64_t>(stats.inference_count));
      out->set_execution_count(static_cast<uint64_t>(stats.execution_count));
      auto* infer = out->mutable_inference_stats();
      duration(stats.success, infer->mutable_success());
      duration(stats.fail, infer->mutable_fail());
      duration(stats.queue, infer->mutable_queue());
      duration(stats.compute, infer->mutable_compute_infer());
    }
    return grpc::Status::OK;
  }

  grpc::Status RepositoryIndexImpl(grpc::ServerContext* context,
                               const inference::RepositoryIndexRequest* request,
                               inference::RepositoryIndexResponse* response) {
    for (const ModelState& state : service_->repository()->States()) {
      if (request->ready() && !state.ready) continue;
      auto* entry = response->add_models();
      entry->set_name(state.name);
      if (state.version > 0) entry->set_version(std::to_string(state.version));
      entry->set_state(StateName(state));
      entry->set_reason(state.reason);
    }
    return grpc::Status::OK;
  }

  grpc::Status RepositoryModelLoadImpl(grpc::ServerContext* context,
                                   const inference::RepositoryModelLoadRequest* request,
                                   inference::RepositoryModelLoadResponse*) {
    return ToGrpc(service_->Load(request->model_name(), Names(request->parameters())).status());
  }

  grpc::Status RepositoryModelUnloadImpl(grpc::ServerContext* context,
                                     const inference::RepositoryModelUnloadRequest* request,
                                     inference::RepositoryModelUnloadResponse*) {
    return ToGrpc(service_->Unload(request->model_name(), Names(request->parameters())));
  }

 private:
  grpc::Status RunInfer(const inference::ModelInferRequest& request,
                        inference::ModelInferResponse* response, double* engine_us = nullptr) {
    const double received = service_->NowMicros();
    absl::StatusOr<InferReply> reply =
        service_->Infer(request.model_name(), request.model_version(),
                        Decode(request, service_->options().limits), received);
    if (!reply.ok()) return ToGrpc(reply.status());
    if (engine_us != nullptr) *engine_us = reply->engine_us;
    response->set_model_name(reply->model->name);
    response->set_model_version(reply->model->version_string());
    response->set_id(reply->id);
    for (const auto& [key, value] : reply->parameters) {
      SetParameter(value, &(*response->mutable_parameters())[key]);
    }
    for (const ResponseOutput& output : reply->outputs) {
      auto* tensor = response->add_outputs();
      tensor->set_name(output.name);
      tensor->set_datatype(output.datatype);
      for (int64_t d : output.shape) tensor->add_shape(d);
      std::string* raw = response->add_raw_output_contents();
      if (output.datatype == "INT64") {
        raw->assign(reinterpret_cast<const char*>(output.int64.data()),
                    output.int64.size() * sizeof(int64_t));
      } else {
        raw->assign(reinterpret_cast<const char*>(output.fp32.data()),
                    output.fp32.size() * sizeof(float));
      }
    }
    service_->RecordLatency(*reply, received);
    return grpc::Status::OK;
  }

  template <typename Map>
  static std::vector<std::string> Names(const Map& parameters) {
    std::vector<std::string> names;
    for (const auto& [name, value] : parameters) names.push_back(name);
    std::sort(names.begin(), names.end());
    return names;
  }

  static inference::DataType DataTypeOf(const std::string& datatype) {
    if (datatype == "FP32") return inference::TYPE_FP32;
    if (datatype == "INT64") return inference::TYPE_INT64;
    if (datatype == "UINT8") return inference::TYPE_UINT8;
    return inference::TYPE_INVALID;
  }

  // PERMISSION_DENIED when `api` is restricted and the call's metadata
  // lacks the key's value.
  grpc::Status Check(grpc::ServerContext* context, Api api) const {
    if (access_ == nullptr || !access_->restricted(api)) return grpc::Status::OK;
    const auto& metadata = context->client_metadata();
    return ToGrpc(access_->Check(api, [&metadata](const std::string& key)
                                          -> std::optional<std::string> {
      auto found = metadata.find(key);
      if (found == metadata.end()) return std::nullopt;
      return std::string(found->second.data(), found->second.size());
    }));
  }

  InferenceService* const service_;
  const AccessPolicy* const access_;
};

}  // namespace

struct GrpcServer::Impl {
  std::unique_ptr<InferenceServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  bool stopped = false;
};

GrpcServer::GrpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(InferenceService* service,
                                                              const GrpcOptions& options) {
  if (options.max_receive_bytes < 1 || options.max_receive_bytes > INT32_MAX ||
      options.max_threads < 2) {
    return absl::InvalidArgumentError(
        "gRPC receive limit must lie in [1, 2 GiB) and threads must be at least 2");
  }
  auto impl = std::make_unique<Impl>();
  impl->service = std::make_unique<InferenceServiceImpl>(service, options.access);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.port),
                           grpc::InsecureServerCredentials(), &impl->port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_receive_bytes));
  grpc::ResourceQuota quota("gati-grpc");
  quota.SetMaxThreads(options.max_threads);
  builder.SetResourceQuota(quota);
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.host, ":",
                                               options.port, " for gRPC"));
  }
  return std::unique_ptr<GrpcServer>(new GrpcServer(std::move(impl)));
}

GrpcServer::~GrpcServer() { Stop(std::chrono::milliseconds(0)); }

int GrpcServer::port() const { return impl_->port; }

void GrpcServer::Stop(std::chrono::milliseconds grace) {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  impl_->server->Wait();
}

}  // namespace gati::serve
