// The gRPC front end of `gati serve`: inference.GRPCInferenceService
// (proto/grpc_predict_v2.proto) with ServerLive, ServerReady, ModelReady,
// ServerMetadata, ModelMetadata, ModelInfer and ModelStreamInfer, and
// Triton's extensions ModelConfig, ModelStatistics, RepositoryIndex,
// RepositoryModelLoad and RepositoryModelUnload. Inputs come as
// raw_input_contents, fp32_contents or (UINT8) uint_contents; outputs go
// back as raw_output_contents, as Triton's clients expect. Errors carry the
// gRPC code matching the HTTP status (INVALID_ARGUMENT, NOT_FOUND,
// UNAVAILABLE, PERMISSION_DENIED, INTERNAL) and the same message.
#ifndef GATI_SERVE_GRPC_SERVER_H_
#define GATI_SERVE_GRPC_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "gati/status.h"
#include "serve/access.h"
#include "serve/inference_service.h"

namespace gati::serve {

struct GrpcOptions {
  std::string host = "0.0.0.0";
  int port = 8001;  // 0: any free port.
  // Largest request message accepted (gRPC's own default is 4 MiB).
  int64_t max_receive_bytes = int64_t{64} << 20;
  // Most threads the synchronous server may use for calls.
  int max_threads = 96;
  // Who may call what (gati serve --restricted-api); not owned, may be
  // null; must outlive the server.
  const AccessPolicy* access = nullptr;
};

class GrpcServer {
 public:
  // Binds and starts serving. Unavailable when the address cannot be
  // bound. `service` must outlive the server.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(InferenceService* service,
                                                           const GrpcOptions& options);
  ~GrpcServer();

  int port() const;
  // Stops accepting calls, lets running ones finish within `grace`, then
  // cancels the rest. Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(1000));

 private:
  struct Impl;
  explicit GrpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gati::serve

#endif  // GATI_SERVE_GRPC_SERVER_H_
