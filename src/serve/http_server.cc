#include "serve/http_server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace gati::serve {
namespace {

using json = nlohmann::json;

constexpr char kJson[] = "application/json";
constexpr char kHeaderLength[] = "Inference-Header-Content-Length";
// Model routes: name, optional version, optional action.
constexpr char kModelRoute[] = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/config|/stats)?)";
constexpr char kInferRoute[] = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?/infer)";
constexpr char kLoadRoute[] = R"(/v2/repository/models/([^/]+)/load)";

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), kJson);
}

void SendError(httplib::Response& res, const absl::Status& status) {
  res.status = HttpStatusOf(status);
  if (res.status == 503) res.set_header("Retry-After", "1");
  res.set_content(ErrorBody(std::string(status.message())), kJson);
}

json TensorsJson(const std::vector<TensorDescription>& tensors) {
  json out = json::array();
  for (const TensorDescription& t : tensors) {
    out.push_back({{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}});
  }
  return out;
}

json ConfigJson(const ServedModel& model, const ModelDescription& description) {
  json inputs = json::array(), outputs = json::array();
  for (const TensorDescription& t : description.inputs) {
    inputs.push_back({{"name", t.name}, {"data_type", "TYPE_" + t.datatype}, {"dims", t.shape}});
  }
  for (const TensorDescription& t : description.outputs) {
    outputs.push_back({{"name", t.name}, {"data_type", "TYPE_" + t.datatype}, {"dims", t.shape}});
  }
  const ModelMetadata& metadata = model.engine->metadata();
  return {{"name", model.name},
          {"platform", kPlatform},
          {"backend", "gati"},
          {"max_batch_size", 0},
          {"input", inputs},
          {"output", outputs},
          {"gati",
           {{"version", model.version},
            {"bundle", model.bundle_dir},
            {"base_model", metadata.name},
            {"normalization", {{"mean", metadata.mean}, {"std", metadata.std}}},
            {"class_names", metadata.class_names},
            {"planned_taps", model.engine->planned_taps()},
            {"predicted_mean_ms", model.engine->predicted_mean_ms()},
            {"predicted_base_ms", model.engine->predicted_base_ms()}}}};
}

json DurationJson(int64_t count, double seconds) {
  return {{"count", count}, {"ns", static_cast<int64_t>(seconds * 1e9)}};
}

// One model's entry in the statistics extension's format, plus gati's own.
json StatsJson(const ServedModel& model) {
  const ModelMetrics& m = *model.metrics;
  int64_t failures = 0;
  for (const auto& count : m.failures) failures += count.load();
  const auto request = m.request.Read(), queue = m.queue.Read(), compute = m.compute.Read();
  const EngineStats stats = model.engine->Stats();
  json taps = json::array();
  for (const TapStats& tap : stats.taps) {
    taps.push_back({{"tap", tap.tap},
                    {"variant", tap.variant},
                    {"threshold", tap.threshold},
                    {"epsilon", tap.epsilon},
                    {"lookups", tap.lookups},
                    {"hits", tap.hits},
                    {"feedback_checked_hits", tap.feedback_hits},
                    {"false_hits", tap.feedback_false_hits},
                    {"disabled", tap.disabled},
                    {"updates_accepted", tap.updates_accepted},
                    {"updates_rejected", tap.updates_rejected}});
  }
  return {{"name", model.name},
          {"version", model.version_string()},
          {"last_inference", m.last_inference_ms.load()},
          {"inference_count", m.inferences.load()},
          {"execution_count", m.successes.load()},
          {"inference_stats",
           {{"success", DurationJson(request.count, request.sum_seconds)},
            {"fail", DurationJson(failures, 0)},
            {"queue", DurationJson(queue.count, queue.sum_seconds)},
            {"compute_infer", DurationJson(compute.count, compute.sum_seconds)}}},
          {"gati",
           {{"cache_version", stats.cache_version},
            {"base_answers", stats.base_answers},
            {"cache_hits", stats.cache_hits},
            {"exact_hits", stats.exact_hits},
            {"feedback_bytes", stats.feedback_bytes},
            {"updates_accepted", stats.updates_accepted},
            {"updates_rejected", stats.updates_rejected},
            {"taps", taps}}}};
}

std::string Match(const httplib::Request& req, size_t index) {
  return index < req.matches.size() ? req.matches[index].str() : std::string();
}

// Decodes an infer request body, with the binary extension's header.
absl::StatusOr<DecodedRequest> DecodeHttpRequest(const httplib::Request& req,
                                                 const DecodeLimits& limits) {
  std::optional<int64_t> header_length;
  if (req.has_header(kHeaderLength)) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(req.get_header_value(kHeaderLength), &value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          kHeaderLength, " must be an integer, not '", req.get_header_value(kHeaderLength), "'"));
    }
    header_length = value;
  }
  return DecodeInferRequest(req.body, header_length, limits);
}

void HandleInfer(InferenceService* service, const httplib::Request& req,
                 httplib::Response& res) {
  const double received = service->NowMicros();
  const std::string model = Match(req, 1), version = Match(req, 2);
  absl::StatusOr<InferReply> reply = service->Infer(
      model, version, DecodeHttpRequest(req, service->options().limits), received);
  if (!reply.ok()) return SendError(res, reply.status());
  EncodedResponse encoded =
      EncodeInferResponse(reply->model->name, reply->model->version_string(), reply->id,
                          reply->parameters, reply->outputs);
  res.status = 200;
  if (encoded.header_length) {
    res.set_header(kHeaderLength, std::to_string(*encoded.header_length));
    res.set_content(std::move(encoded.body), "application/octet-stream");
  } else {
    res.set_content(std::move(encoded.body), kJson);
  }
  service->RecordLatency(*reply, received);
}

void InstallInferenceRoutes(httplib::Server& server, InferenceService* service) {
  ModelRepository* repository = service->repository();
  server.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"live", true}});
  });
  server.Get("/v2/health/ready", [service](const httplib::Request&, httplib::Response& res) {
    const bool ready = service->Ready();
    SendJson(res, ready ? 200 : 400, {{"ready", ready}});
  });
  server.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200,
             {{"name", kServerName}, {"version", kServerVersion}, {"extensions", ServerExtensions()}});
  });
  server.Get("/v2/models/stats", [repository](const httplib::Request&, httplib::Response& res) {
    json stats = json::array();
    for (const auto& model : repository->Loaded()) stats.push_back(StatsJson(*model));
    SendJson(res, 200, {{"model_stats", stats}});
  });
  server.Get(kModelRoute, [service, repository](const httplib::Request& req,
                                                httplib::Response& res) {
    const std::string model = Match(req, 1), version = Match(req, 2), action = Match(req, 3);
    if (action == "/ready") {
      absl::StatusOr<bool> ready = service->ModelReady(model, version);
      if (!ready.ok()) return SendError(res, ready.status());
      return SendJson(res, *ready ? 200 : 400, {{"name", model}, {"ready", *ready}});
    }
    auto served = repository->Get(model, version);
    if (!served.ok()) return SendError(res, served.status());
    const ModelDescription description = DescribeModel(**served);
    if (action == "/config") return SendJson(res, 200, ConfigJson(**served, description));
    if (action == "/stats") return SendJson(res, 200, {{"model_stats", {StatsJson(**served)}}});
    SendJson(res, 200,
             {{"name", description.name},
              {"versions", description.versions},
              {"platform", description.platform},
              {"inputs", TensorsJson(description.inputs)},
              {"outputs", TensorsJson(description.outputs)}});
  });
  server.Post(kInferRoute, [service](const httplib::Request& req, httplib::Response& res) {
    HandleInfer(service, req, res);
  });
  server.Post("/v2/repository/index", [repository](const httplib::Request&,
                                                   httplib::Response& res) {
    json index = json::array();
    for (const ModelState& state : repository->States()) {
      json entry = {{"name", state.name}, {"state", state.ready ? "READY" : "UNAVAILABLE"}};
      if (state.version > 0) entry["version"] = std::to_string(state.version);
      if (!state.reason.empty()) entry["reason"] = state.reason;
      index.push_back(entry);
    }
    SendJson(res, 200, index);
  });
  server.Post(kLoadRoute, [repository](const httplib::Request& req, httplib::Response& res) {
    const std::string model = Match(req, 1);
    if (repository->MetricsOf(model) == nullptr) {
      return SendError(res, absl::NotFoundError(absl::StrCat("unknown model '", model, "'")));
    }
    absl::Status loaded = repository->Load(model);
    if (!loaded.ok()) {
      // The old version (if any) keeps serving; the load itself was bad.
      return SendError(res, absl::InvalidArgumentError(std::string(loaded.message())));
    }
    auto served = repository->Get(model);
    SendJson(res, 200,
             {{"name", model}, {"version", served.ok() ? (*served)->version_string() : ""}});
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(InferenceService* service,
                                                              Routes routes,
                                                              const HttpOptions& options) {
  if (options.threads < 1 || options.backlog < 1 || options.max_body_bytes < 1) {
    return absl::InvalidArgumentError("HTTP threads, backlog and body limit must be positive");
  }
  std::unique_ptr<HttpServer> http(new HttpServer());
  http->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *http->server_;
  const int threads = options.threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_tcp_nodelay(true);
  server.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
  server.set_keep_alive_max_count(static_cast<size_t>(options.keep_alive_requests));
  // The compiled library listens with a backlog of 5: keep the listening
  // socket here and listen(2) again with ours once bound (Linux applies the
  // new backlog). SO_REUSEADDR as the library's default does, but not
  // SO_REUSEPORT, so a second server on the same port fails to bind.
  auto listen_fd = std::make_shared<int>(-1);
  server.set_socket_options([listen_fd](socket_t fd) {
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *listen_fd = fd;
  });
  const int64_t max_body = options.max_body_bytes;
  server.set_error_handler([max_body](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message;
    switch (res.status) {
      case 404: message = absl::StrCat("unknown endpoint: ", req.method, " ", req.path); break;
      case 413: message = absl::StrCat("the request body exceeds ", max_body, " bytes"); break;
      case 400: message = "malformed HTTP request"; break;
      default: message = absl::StrCat("HTTP ", res.status); break;
    }
    res.set_content(ErrorBody(message), kJson);
  });
  server.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("{} {}: {}", req.method, req.path, what);
        res.status = 500;
        res.set_content(ErrorBody(absl::StrCat("internal error: ", what)), kJson);
      });
  if (routes == Routes::kInference) {
    InstallInferenceRoutes(server, service);
  } else {
    server.Get("/metrics", [service](const httplib::Request&, httplib::Response& res) {
      res.set_content(service->RenderMetrics(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }
  if (options.port == 0) {
    http->port_ = server.bind_to_any_port(options.host);
  } else {
    http->port_ = server.bind_to_port(options.host, options.port) ? options.port : -1;
  }
  if (http->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.host, ":",
                                               options.port, " (address in use, or not local)"));
  }
  if (*listen_fd >= 0 && ::listen(*listen_fd, options.backlog) != 0) {
    return absl::UnavailableError(absl::StrCat("listen(", options.backlog,
                                               ") failed: ", std::strerror(errno)));
  }
  httplib::Server* raw = &server;
  http->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  return http;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace gati::serve
