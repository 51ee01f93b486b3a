#include "serve/grpc_server.h"

#include <deque>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <cstring>

#include "absl/strings/str_cat.h"
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

class InferenceServiceImpl final : public inference::GRPCInferenceService::Service {
 public:
  explicit InferenceServiceImpl(InferenceService* service) : service_(service) {}

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* response) override {
    response->set_live(true);
    return grpc::Status::OK;
  }

  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* response) override {
    response->set_ready(service_->Ready());
    return grpc::Status::OK;
  }

  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest* request,
                          inference::ModelReadyResponse* response) override {
    absl::StatusOr<bool> ready = service_->ModelReady(request->name(), request->version());
    if (!ready.ok()) return ToGrpc(ready.status());
    response->set_ready(*ready);
    return grpc::Status::OK;
  }

  grpc::Status ServerMetadata(grpc::ServerContext*, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* response) override {
    response->set_name(kServerName);
    response->set_version(kServerVersion);
    for (const std::string& extension : ServerExtensions()) response->add_extensions(extension);
    return grpc::Status::OK;
  }

  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest* request,
                             inference::ModelMetadataResponse* response) override {
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

  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* request,
                          inference::ModelInferResponse* response) override {
    const double received = service_->NowMicros();
    absl::StatusOr<InferReply> reply =
        service_->Infer(request->model_name(), request->model_version(),
                        Decode(*request, service_->options().limits), received);
    if (!reply.ok()) return ToGrpc(reply.status());
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

 private:
  InferenceService* const service_;
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
  impl->service = std::make_unique<InferenceServiceImpl>(service);
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
