// The HTTP endpoints of `gati serve`, apart from the transport: which route
// a request line names and what it answers. The server (http_server.cc)
// reads requests and writes these replies; nothing here knows about
// sockets, so the routes are tested directly.
#ifndef GATI_SERVE_HTTP_ROUTES_H_
#define GATI_SERVE_HTTP_ROUTES_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "serve/access.h"
#include "serve/inference_service.h"

namespace gati::serve {

enum class HttpRoutes {
  kInference,  // The v2 protocol endpoints.
  kMetrics,    // GET /metrics only.
};

// A request as the routes see it. `body` and `header` stay valid while the
// request is handled; `header` takes a lower-case name (nullopt: absent).
struct HttpRequest {
  std::string method;
  std::string_view path;  // Without the query string.
  const std::string* body = nullptr;
  std::function<std::optional<std::string>(const std::string&)> header;
};

struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  bool compressible = false;  // Inference responses only, as Triton does.
  // An answered inference request: the engine's time, and the front end
  // it came through (for the server's overhead metric); -1 otherwise.
  double engine_us = -1;
  Transport transport = Transport::kHttpJson;
};

struct Route {
  enum class Kind {
    kNotFound,
    kLive,
    kReady,
    kServerMetadata,
    kAllStats,
    kModelMetadata,
    kModelReady,
    kModelConfig,
    kModelStats,
    kInfer,
    kIndex,
    kLoad,
    kUnload,
    kMetrics,
  };
  Kind kind = Kind::kNotFound;
  std::string model, version;
  // The method the route takes ("GET" or "POST"); a request with another
  // gets 405.
  std::string method;
  bool method_allowed = false;
  // Runs on a worker thread (may block: inference, loads).
  bool blocking = false;
};

// The route `method path` names on a server of `routes`.
Route ParseRoute(std::string_view method, std::string_view path, HttpRoutes routes);

// Answers `request` on `route`. Never throws: a failure becomes a 500
// reply naming it. `access` may be null (nothing restricted).
Reply Handle(InferenceService& service, const AccessPolicy* access, const Route& route,
             const HttpRequest& request);

// {"error": message} with `status`; 503 carries Retry-After.
Reply ErrorReply(int status, absl::string_view message);
// 503 for a server with no free worker.
Reply Overloaded(absl::string_view message);

}  // namespace gati::serve

#endif  // GATI_SERVE_HTTP_ROUTES_H_
