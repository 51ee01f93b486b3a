// The HTTP/REST front end of `gati serve` (Open Inference Protocol v2, with
// Triton's binary tensor data, statistics and model repository extensions),
// and the Prometheus metrics endpoint, on cpp-httplib.
//
// Endpoints (the `/versions/{v}` forms also work for the per-model ones):
//   GET  /v2/health/live, /v2/health/ready, /v2
//   GET  /v2/models/{m}, /v2/models/{m}/ready, /v2/models/{m}/config,
//        /v2/models/{m}/stats, /v2/models/stats
//   POST /v2/models/{m}/infer
//   POST /v2/repository/index, /v2/repository/models/{m}/load
//   GET  /metrics                        (the metrics server only)
// Errors are {"error": "..."} with 400 / 404 / 413 / 503 / 500.
#ifndef GATI_SERVE_HTTP_SERVER_H_
#define GATI_SERVE_HTTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "gati/status.h"
#include "serve/inference_service.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace gati::serve {

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8000;  // 0: any free port (see HttpServer::port()).
  // Threads serving connections (each holds one keep-alive connection at a
  // time); keep it above ServiceOptions::max_queue so overload is answered
  // 503 rather than left waiting for a thread.
  int threads = 96;
  // Largest request body; larger ones get 413.
  int64_t max_body_bytes = int64_t{64} << 20;
  // listen(2) backlog (cpp-httplib's compiled default is 5).
  int backlog = 1024;
  // Requests served on one keep-alive connection before it is closed.
  int keep_alive_requests = 10000;
};

class HttpServer {
 public:
  enum class Routes {
    kInference,  // The v2 protocol endpoints.
    kMetrics,    // GET /metrics only.
  };

  // Binds host:port (TCP_NODELAY, the configured backlog) and starts
  // serving `routes` on a background thread. Unavailable when the address
  // cannot be bound. `service` must outlive the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(InferenceService* service,
                                                           Routes routes,
                                                           const HttpOptions& options);
  // Stops (as Stop()).
  ~HttpServer();

  // The bound port (the chosen one when options.port was 0).
  int port() const { return port_; }
  // Closes the listening socket, finishes the requests being handled and
  // joins the threads. Idempotent.
  void Stop();

 private:
  HttpServer() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace gati::serve

#endif  // GATI_SERVE_HTTP_SERVER_H_
