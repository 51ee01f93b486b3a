#include "serve/http_routes.h"

#include <exception>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace gati::serve {
namespace {

using json = nlohmann::json;
using Kind = Route::Kind;

constexpr char kJson[] = "application/json";
constexpr char kHeaderLength[] = "inference-header-content-length";

Reply JsonReply(int status, const json& body) {
  Reply reply;
  reply.status = status;
  reply.body = body.dump();
  return reply;
}

Reply StatusReply(const absl::Status& status) {
  return ErrorReply(HttpStatusOf(status), status.message());
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
    inputs.push_back(
        {{"name", t.name}, {"data_type", "TYPE_" + t.datatype}, {"dims", ConfigDims(model, t)}});
  }
  for (const TensorDescription& t : description.outputs) {
    outputs.push_back(
        {{"name", t.name}, {"data_type", "TYPE_" + t.datatype}, {"dims", ConfigDims(model, t)}});
  }
  const ModelMetadata& metadata = model.engine->metadata();
  json config = {{"name", model.name},
          {"platform", kPlatform},
          {"backend", "gati"},
          {"max_batch_size", ConfigMaxBatchSize(model)},
          {"input", inputs},
          {"output", outputs},
          {"gati",
           {{"version", model.version},
            // The bundle's directory name only: where it lies is the
            // operator's business, not the client's.
            {"bundle", std::filesystem::path(model.bundle_dir).filename().string()},
            {"base_model", metadata.name},
            {"normalization", {{"mean", metadata.mean}, {"std", metadata.std}}},
            {"class_names", metadata.class_names},
            {"planned_taps", model.engine->planned_taps()},
            {"predicted_mean_ms", model.engine->predicted_mean_ms()},
            {"predicted_base_ms", model.engine->predicted_base_ms()},
            // Both predictions are per row of a batch of this size when it
            // is above 1 (a plan made with gati plan --batch).
            {"plan_batch", model.engine->plan_batch()}}}};
  if (model.batcher != nullptr) {
    config["dynamic_batching"] = {
        {"preferred_batch_size", model.batching.preferred_batch_sizes},
        {"max_queue_delay_microseconds", model.batching.max_queue_delay_us}};
  }
  return config;
}

json DurationJson(int64_t count, double seconds) {
  return {{"count", count}, {"ns", static_cast<int64_t>(seconds * 1e9)}};
}

// One model's entry in the statistics extension's format, plus gati's own.
json StatsJson(const ServedModel& model) {
  const ModelStatistics s = StatisticsOf(model);
  const EngineStats& stats = s.engine;
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
          {"last_inference", s.last_inference_ms},
          {"inference_count", s.inference_count},
          {"execution_count", s.execution_count},
          {"inference_stats",
           {{"success", DurationJson(s.success.count, s.success.seconds)},
            {"fail", DurationJson(s.fail.count, s.fail.seconds)},
            {"queue", DurationJson(s.queue.count, s.queue.seconds)},
            {"compute_input", DurationJson(0, 0)},
            {"compute_infer", DurationJson(s.compute.count, s.compute.seconds)},
            {"compute_output", DurationJson(0, 0)},
            {"cache_hit", DurationJson(0, 0)},
            {"cache_miss", DurationJson(0, 0)}}},
          {"batch_stats", json::array()},
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

// Decodes an infer request body, with the binary extension's header.
absl::StatusOr<DecodedRequest> DecodeHttpRequest(const HttpRequest& request,
                                                 const DecodeLimits& limits) {
  std::optional<int64_t> header_length;
  if (std::optional<std::string> value = request.header(kHeaderLength)) {
    int64_t parsed = 0;
    if (!absl::SimpleAtoi(*value, &parsed)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Inference-Header-Content-Length must be an integer, not '", *value, "'"));
    }
    header_length = parsed;
  }
  return DecodeInferRequest(*request.body, header_length, limits);
}

Reply HandleInfer(InferenceService& service, const Route& route, const HttpRequest& request) {
  const double received = service.NowMicros();
  absl::StatusOr<InferReply> reply =
      service.Infer(route.model, route.version,
                    DecodeHttpRequest(request, service.options().limits), received);
  if (!reply.ok()) return StatusReply(reply.status());
  EncodedResponse encoded =
      EncodeInferResponse(reply->model->name, reply->model->version_string(), reply->id,
                          reply->parameters, reply->outputs);
  Reply out;
  out.compressible = true;
  out.engine_us = reply->engine_us;
  out.transport = request.header(kHeaderLength) ? Transport::kHttpBinary : Transport::kHttpJson;
  if (encoded.header_length) {
    out.headers.emplace_back("Inference-Header-Content-Length",
                             std::to_string(*encoded.header_length));
    out.content_type = "application/octet-stream";
  }
  out.body = std::move(encoded.body);
  service.RecordLatency(*reply, received);
  return out;
}

// The parameter names of a load or unload request body (which may be
// empty); InvalidArgument for a malformed body.
absl::StatusOr<std::vector<std::string>> RepositoryParameters(const HttpRequest& request,
                                                              const std::string& action) {
  std::vector<std::string> names;
  if (request.body->empty()) return names;
  json body = json::parse(*request.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", action, " request body must be a JSON object"));
  }
  if (!body.contains("parameters")) return names;
  const json& parameters = body["parameters"];
  if (!parameters.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(action, ": 'parameters' must be an object"));
  }
  for (const auto& [key, value] : parameters.items()) names.push_back(key);
  return names;
}

Reply HandleLoad(InferenceService& service, const Route& route, const HttpRequest& request) {
  absl::StatusOr<std::vector<std::string>> parameters = RepositoryParameters(request, "load");
  if (!parameters.ok()) return StatusReply(parameters.status());
  absl::StatusOr<LoadResult> loaded = service.Load(route.model, *parameters);
  if (!loaded.ok()) return StatusReply(loaded.status());
  return JsonReply(200, {{"name", route.model},
                         {"version", std::to_string(loaded->version)},
                         {"changed", loaded->changed}});
}

Reply HandleUnload(InferenceService& service, const Route& route, const HttpRequest& request) {
  absl::StatusOr<std::vector<std::string>> parameters = RepositoryParameters(request, "unload");
  if (!parameters.ok()) return StatusReply(parameters.status());
  absl::Status unloaded = service.Unload(route.model, *parameters);
  if (!unloaded.ok()) return StatusReply(unloaded);
  return JsonReply(200, {{"name", route.model}});
}

Reply HandleModel(InferenceService& service, const Route& route) {
  if (route.kind == Kind::kModelReady) {
    absl::StatusOr<bool> ready = service.ModelReady(route.model, route.version);
    if (!ready.ok()) return StatusReply(ready.status());
    return JsonReply(*ready ? 200 : 400, {{"name", route.model}, {"ready", *ready}});
  }
  auto served = service.repository()->Get(route.model, route.version);
  if (!served.ok()) return StatusReply(served.status());
  const ModelDescription description = DescribeModel(**served);
  if (route.kind == Kind::kModelConfig) return JsonReply(200, ConfigJson(**served, description));
  if (route.kind == Kind::kModelStats) {
    return JsonReply(200, {{"model_stats", {StatsJson(**served)}}});
  }
  return JsonReply(200, {{"name", description.name},
                         {"versions", description.versions},
                         {"platform", description.platform},
                         {"inputs", TensorsJson(description.inputs)},
                         {"outputs", TensorsJson(description.outputs)}});
}

std::optional<Api> ApiOf(Kind kind) {
  switch (kind) {
    case Kind::kLive:
    case Kind::kReady:
    case Kind::kModelReady: return Api::kHealth;
    case Kind::kServerMetadata:
    case Kind::kModelMetadata: return Api::kMetadata;
    case Kind::kAllStats:
    case Kind::kModelStats: return Api::kStatistics;
    case Kind::kModelConfig: return Api::kModelConfig;
    case Kind::kInfer: return Api::kInference;
    case Kind::kIndex:
    case Kind::kLoad:
    case Kind::kUnload: return Api::kModelRepository;
    default: return std::nullopt;
  }
}

Reply Dispatch(InferenceService& service, const AccessPolicy* access, const Route& route,
               const HttpRequest& request) {
  if (route.kind == Kind::kNotFound) {
    return ErrorReply(404, absl::StrCat("unknown endpoint: ", request.method, " ",
                                        std::string(request.path)));
  }
  if (!route.method_allowed) {
    Reply reply = ErrorReply(405, absl::StrCat(request.method, " is not allowed on ",
                                               std::string(request.path), "; use ",
                                               route.method));
    reply.headers.emplace_back("Allow", route.method);
    return reply;
  }
  if (access != nullptr) {
    if (std::optional<Api> api = ApiOf(route.kind)) {
      absl::Status allowed = access->Check(*api, request.header);
      if (!allowed.ok()) return StatusReply(allowed);
    }
  }
  ModelRepository& repository = *service.repository();
  switch (route.kind) {
    case Kind::kLive: return JsonReply(200, {{"live", true}});
    case Kind::kReady: {
      const bool ready = service.Ready();
      return JsonReply(ready ? 200 : 400, {{"ready", ready}});
    }
    case Kind::kServerMetadata:
      return JsonReply(200, {{"name", kServerName},
                             {"version", kServerVersion},
                             {"extensions", ServerExtensions()}});
    case Kind::kAllStats: {
      json stats = json::array();
      for (const auto& model : repository.Loaded()) stats.push_back(StatsJson(*model));
      return JsonReply(200, {{"model_stats", stats}});
    }
    case Kind::kModelMetadata:
    case Kind::kModelReady:
    case Kind::kModelConfig:
    case Kind::kModelStats: return HandleModel(service, route);
    case Kind::kInfer: return HandleInfer(service, route, request);
    case Kind::kIndex: {
      // {"ready": true} lists only the models ready now.
      bool only_ready = false;
      if (!request.body->empty()) {
        json body = json::parse(*request.body, nullptr, /*allow_exceptions=*/false);
        if (body.is_discarded() || !body.is_object() ||
            (body.contains("ready") && !body["ready"].is_boolean())) {
          return ErrorReply(400, "the index request body must be a JSON object with an "
                                 "optional boolean 'ready'");
        }
        only_ready = body.value("ready", false);
      }
      json index = json::array();
      for (const ModelState& state : repository.States()) {
        if (only_ready && !state.ready) continue;
        json entry = {{"name", state.name}, {"state", StateName(state)}};
        if (state.version > 0) entry["version"] = std::to_string(state.version);
        if (!state.reason.empty()) entry["reason"] = state.reason;
        index.push_back(entry);
      }
      return JsonReply(200, index);
    }
    case Kind::kLoad: return HandleLoad(service, route, request);
    case Kind::kUnload: return HandleUnload(service, route, request);
    case Kind::kMetrics: {
      Reply reply;
      reply.body = service.RenderMetrics();
      reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return reply;
    }
    case Kind::kNotFound: break;
  }
  return ErrorReply(404, "unknown endpoint");
}

}  // namespace

Reply ErrorReply(int status, absl::string_view message) {
  Reply reply;
  reply.status = status;
  reply.body = ErrorBody(std::string_view(message.data(), message.size()));
  if (status == 503) reply.headers.emplace_back("Retry-After", "1");
  return reply;
}

Reply Overloaded(absl::string_view message) { return ErrorReply(503, message); }

Route ParseRoute(std::string_view method, std::string_view path, HttpRoutes routes) {
  Route route;
  auto take = [&](Kind kind, const char* wanted, bool blocking = false) {
    route.kind = kind;
    route.method = wanted;
    route.method_allowed = method == wanted;
    route.blocking = blocking;
  };
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(path.data(), path.size()), '/');
  // A leading '/' gives an empty first part; a trailing one is tolerated.
  if (parts.size() < 2 || !parts[0].empty()) return route;
  parts.erase(parts.begin());
  if (parts.size() > 1 && parts.back().empty()) parts.pop_back();
  for (absl::string_view part : parts) {
    if (part.empty()) return route;
  }
  if (routes == HttpRoutes::kMetrics) {
    if (parts.size() == 1 && parts[0] == "metrics") take(Kind::kMetrics, "GET");
    return route;
  }
  if (parts[0] != "v2") return route;
  const size_t n = parts.size();
  if (n == 1) {
    take(Kind::kServerMetadata, "GET");
  } else if (n == 3 && parts[1] == "health") {
    if (parts[2] == "live") take(Kind::kLive, "GET");
    if (parts[2] == "ready") take(Kind::kReady, "GET");
  } else if (parts[1] == "repository") {
    if (n == 3 && parts[2] == "index") take(Kind::kIndex, "POST");
    if (n == 5 && parts[2] == "models") {
      route.model = std::string(parts[3]);
      if (parts[4] == "load") take(Kind::kLoad, "POST", true);
      if (parts[4] == "unload") take(Kind::kUnload, "POST", true);
    }
  } else if (parts[1] == "models" && n >= 3) {
    if (n == 3 && parts[2] == "stats") {
      take(Kind::kAllStats, "GET");
      return route;
    }
    route.model = std::string(parts[2]);
    size_t next = 3;
    if (n >= 5 && parts[3] == "versions") {
      route.version = std::string(parts[4]);
      next = 5;
    }
    if (next == n) {
      take(Kind::kModelMetadata, "GET");
    } else if (next + 1 == n) {
      const absl::string_view action = parts[next];
      if (action == "ready") take(Kind::kModelReady, "GET");
      if (action == "config") take(Kind::kModelConfig, "GET");
      if (action == "stats") take(Kind::kModelStats, "GET");
      if (action == "infer") take(Kind::kInfer, "POST", true);
    }
  }
  return route;
}

Reply Handle(InferenceService& service, const AccessPolicy* access, const Route& route,
             const HttpRequest& request) {
  try {
    return Dispatch(service, access, route, request);
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", request.method, std::string(request.path), e.what());
    return ErrorReply(500, absl::StrCat("internal error: ", e.what()));
  } catch (...) {
    spdlog::error("{} {}: unknown exception", request.method, std::string(request.path));
    return ErrorReply(500, "internal error");
  }
}

}  // namespace gati::serve
