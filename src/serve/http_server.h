// The HTTP/REST front end of `gati serve` (Open Inference Protocol v2, with
// Triton's binary tensor data, statistics and model repository extensions),
// and the Prometheus metrics endpoint: an event-driven HTTP/1.1 server on
// Boost.Beast (asio).
//
// Endpoints (the `/versions/{v}` forms also work for the per-model ones):
//   GET  /v2/health/live, /v2/health/ready, /v2
//   GET  /v2/models/{m}, /v2/models/{m}/ready, /v2/models/{m}/config,
//        /v2/models/{m}/stats, /v2/models/stats
//   POST /v2/models/{m}/infer
//   POST /v2/repository/index, /v2/repository/models/{m}/load,
//        /v2/repository/models/{m}/unload
//   GET  /metrics                        (the metrics server only)
// Errors are {"error": "..."}: 400 / 403 / 404 / 405 / 413 / 415 / 417 /
// 431 / 501 / 503 / 500.
//
// Connections cost memory, not threads: a few I/O threads read and write
// every connection; requests that may block (inference, loads) run on a
// pool of worker threads. When every worker is taken, an inference request
// gets 503 at once. Limits are enforced as bytes arrive: the header block
// (431), the body, chunked or not (413), and a deadline for each request to
// arrive whole (past it, the connection is closed). Message framing follows RFC 9112 strictly: more than
// one Content-Length, Content-Length together with Transfer-Encoding, or a
// malformed length get 400; a transfer coding other than chunked gets 501.
// A POST without a body and without Content-Length has a body of length 0.
// Request bodies may be gzip- or deflate-compressed (Content-Encoding; the
// inflated size counts against the body limit). Inference responses of at
// least 1 KiB are compressed when the client accepts gzip or deflate; no
// other response is.
#ifndef GATI_SERVE_HTTP_SERVER_H_
#define GATI_SERVE_HTTP_SERVER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "gati/status.h"
#include "serve/access.h"
#include "serve/http_routes.h"
#include "serve/inference_service.h"

namespace gati::serve {

struct HttpOptions {
  std::string host = "0.0.0.0";
  int port = 8000;  // 0: any free port (see HttpServer::port()).
  // Threads that run inference and repository requests. When all are busy,
  // further inference requests get 503 at once.
  int threads = 96;
  // Threads that read and write connections.
  int io_threads = 2;
  // Largest request body, after decompression; larger ones get 413.
  int64_t max_body_bytes = int64_t{64} << 20;
  // Largest request line plus header block; larger ones get 431.
  int64_t max_header_bytes = int64_t{64} << 10;
  // Open connections at most; further connections are closed on accept.
  int max_connections = 4096;
  // Bytes of request bodies received and held at once, all connections
  // together, charged as they arrive (and inflated bodies while held); the
  // request whose bytes would pass it gets 503. At least max_body_bytes.
  int64_t max_bodies_bytes = int64_t{1} << 30;
  // listen(2) backlog.
  int backlog = 1024;
  // Requests served on one keep-alive connection before it is closed.
  int keep_alive_requests = 10000;
  // An idle keep-alive connection is closed after this long.
  std::chrono::milliseconds idle_timeout{60000};
  // A request must arrive whole (headers and body) within this long of its
  // headers; otherwise the connection is closed.
  std::chrono::milliseconds request_timeout{30000};
  // Who may call what (gati serve --restricted-api); not owned, may be
  // null; must outlive the server.
  const AccessPolicy* access = nullptr;
};

class HttpServer {
 public:
  using Routes = HttpRoutes;

  // Binds host:port (TCP_NODELAY, the configured backlog) and starts
  // serving `routes` on background threads. Unavailable when the address
  // cannot be bound; InvalidArgument for options out of range. `service`
  // must outlive the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(InferenceService* service,
                                                           Routes routes,
                                                           const HttpOptions& options);
  // Stops (as Stop(0), waiting for requests still running).
  ~HttpServer();

  // The bound port (the chosen one when options.port was 0).
  int port() const;
  // Stops accepting, closes idle connections, lets the requests being
  // handled finish and write their responses for up to `grace`, then closes
  // every connection and joins the threads. Returns the number of requests
  // that had not finished within `grace`. Those are waited for, unless
  // `abandon`: then no thread is waited for (the caller is about to exit
  // the process; what the threads use stays allocated). Idempotent (later
  // calls return 0).
  int64_t Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(0),
               bool abandon = false);

  struct Impl;

 private:
  explicit HttpServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace gati::serve

#endif  // GATI_SERVE_HTTP_SERVER_H_
