// The HTTP routes without sockets: which route a request line names, what
// each answers (on the fake engine), and restricted APIs.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "nlohmann/json.hpp"
#include "serve/access.h"
#include "serve/http_routes.h"
#include "serve/inference_service.h"
#include "serve/model_repository.h"
#include "serve/serve_testutil.h"

namespace gati::serve {
namespace {

using json = nlohmann::json;
using Kind = Route::Kind;

TEST(ParseRouteTest, NamesEveryEndpointAndItsMethod) {
  struct Case {
    const char* method;
    const char* path;
    Kind kind;
    bool allowed;
  };
  const Case cases[] = {
      {"GET", "/v2", Kind::kServerMetadata, true},
      {"GET", "/v2/", Kind::kServerMetadata, true},
      {"GET", "/v2/health/live", Kind::kLive, true},
      {"GET", "/v2/health/ready", Kind::kReady, true},
      {"GET", "/v2/models/stats", Kind::kAllStats, true},
      {"GET", "/v2/models/m", Kind::kModelMetadata, true},
      {"GET", "/v2/models/m/versions/3", Kind::kModelMetadata, true},
      {"GET", "/v2/models/m/versions/3/ready", Kind::kModelReady, true},
      {"GET", "/v2/models/m/config", Kind::kModelConfig, true},
      {"GET", "/v2/models/m/stats", Kind::kModelStats, true},
      {"POST", "/v2/models/m/infer", Kind::kInfer, true},
      {"POST", "/v2/models/m/versions/1/infer", Kind::kInfer, true},
      {"GET", "/v2/models/m/infer", Kind::kInfer, false},
      {"POST", "/v2/repository/index", Kind::kIndex, true},
      {"POST", "/v2/repository/models/m/load", Kind::kLoad, true},
      {"POST", "/v2/repository/models/m/unload", Kind::kUnload, true},
      {"DELETE", "/v2", Kind::kServerMetadata, false},
      {"GET", "/v2/models/m/explode", Kind::kNotFound, false},
      {"GET", "/v2//models", Kind::kNotFound, false},
      {"GET", "/v3", Kind::kNotFound, false},
      {"GET", "/metrics", Kind::kNotFound, false},  // Only on the metrics port.
  };
  for (const Case& c : cases) {
    const Route route = ParseRoute(c.method, c.path, HttpRoutes::kInference);
    EXPECT_EQ(route.kind, c.kind) << c.method << " " << c.path;
    EXPECT_EQ(route.method_allowed, c.allowed) << c.method << " " << c.path;
  }
  const Route versioned = ParseRoute("POST", "/v2/models/m/versions/7/infer", HttpRoutes::kInference);
  EXPECT_EQ(versioned.model, "m");
  EXPECT_EQ(versioned.version, "7");
  EXPECT_TRUE(versioned.blocking);
  EXPECT_FALSE(ParseRoute("GET", "/v2/health/live", HttpRoutes::kInference).blocking);
  EXPECT_EQ(ParseRoute("GET", "/metrics", HttpRoutes::kMetrics).kind, Kind::kMetrics);
  EXPECT_EQ(ParseRoute("GET", "/v2", HttpRoutes::kMetrics).kind, Kind::kNotFound);
}

TEST(AccessPolicyTest, ParsesTritonsSpecAndRejectsMalformedOnes) {
  AccessPolicy policy;
  ASSERT_TRUE(policy.Add("model-repository,statistics:Admin-Key=s3cret").ok());
  EXPECT_TRUE(policy.restricted(Api::kModelRepository));
  EXPECT_TRUE(policy.restricted(Api::kStatistics));
  EXPECT_FALSE(policy.restricted(Api::kInference));
  std::map<std::string, std::string> headers;
  auto lookup = [&headers](const std::string& key) -> std::optional<std::string> {
    auto found = headers.find(key);
    if (found == headers.end()) return std::nullopt;
    return found->second;
  };
  EXPECT_TRUE(absl::IsPermissionDenied(policy.Check(Api::kModelRepository, lookup)));
  headers["admin-key"] = "wrong";
  EXPECT_TRUE(absl::IsPermissionDenied(policy.Check(Api::kModelRepository, lookup)));
  headers["admin-key"] = "s3cret";  // Looked up by its lower-case name.
  EXPECT_TRUE(policy.Check(Api::kModelRepository, lookup).ok());
  EXPECT_TRUE(policy.Check(Api::kInference, lookup).ok());
  for (const char* bad : {"model-repository", "model-repository:key", ":k=v", "nope:k=v",
                          "inference:=v", "inference:k=", "statistics:k=v", "health:k y=v"}) {
    absl::Status status = policy.Add(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << bad;
    EXPECT_NE(status.message().find(bad), absl::string_view::npos) << status;
  }
}

class HttpRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(repository_.Register("m", "/bundles/m").ok());
    ASSERT_TRUE(repository_.LoadAll().ok());
  }

  Reply Call(const std::string& method, const std::string& path, const std::string& body = "",
             std::map<std::string, std::string> headers = {}) {
    HttpRequest request;
    request.method = method;
    request.path = path;
    request.body = &body;
    request.header = [&headers](const std::string& name) -> std::optional<std::string> {
      auto found = headers.find(name);
      if (found == headers.end()) return std::nullopt;
      return found->second;
    };
    return Handle(service_, &access_, ParseRoute(method, path, HttpRoutes::kInference), request);
  }

  FakeFactory factory_;
  ModelRepository repository_{factory_.Make()};
  InferenceService service_{&repository_, ServiceOptions{}};
  AccessPolicy access_;
};

TEST_F(HttpRoutesTest, AnInferRequestWithoutOutputsGetsEveryOutput) {
  const std::string body =
      R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,1,2,2],"data":[2,0,0,0]}]})";
  const Reply reply = Call("POST", "/v2/models/m/infer", body);
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_TRUE(reply.compressible);
  const json answer = json::parse(reply.body);
  ASSERT_EQ(answer["outputs"].size(), 2u);
  EXPECT_EQ(answer["outputs"][0]["name"], "class");
  EXPECT_EQ(answer["outputs"][0]["data"], json::array({2}));
  EXPECT_EQ(answer["outputs"][1]["name"], "probabilities");
  EXPECT_EQ(answer["outputs"][1]["shape"], json::array({1, 10}));
  // Metadata and other answers are never marked for compression.
  EXPECT_FALSE(Call("GET", "/v2/models/m").compressible);
  // A rank-3 input for a model that declares [-1, 1, 2, 2] is refused.
  const Reply rank3 = Call("POST", "/v2/models/m/infer",
      R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,2,2],"data":[2,0,0,0]}]})");
  EXPECT_EQ(rank3.status, 400);
  EXPECT_NE(rank3.body.find("[-1, 1, 2, 2]"), std::string::npos) << rank3.body;
}

TEST_F(HttpRoutesTest, WrongMethodsAndUnknownPathsAreNamed) {
  const Reply wrong = Call("GET", "/v2/models/m/infer");
  EXPECT_EQ(wrong.status, 405);
  ASSERT_EQ(wrong.headers.size(), 1u);
  EXPECT_EQ(wrong.headers[0], (std::pair<std::string, std::string>{"Allow", "POST"}));
  const Reply unknown = Call("GET", "/v2/nothing");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.body.find("GET /v2/nothing"), std::string::npos);
  // A body-less POST (Triton's client sends the index request so).
  EXPECT_EQ(Call("POST", "/v2/repository/index").status, 200);
}

TEST_F(HttpRoutesTest, LoadRefusesConfigOverridesAndUnloadStopsServing) {
  const Reply config = Call("POST", "/v2/repository/models/m/load",
                            R"({"parameters":{"config":"{\"max_batch_size\":8}"}})");
  EXPECT_EQ(config.status, 400);
  EXPECT_NE(config.body.find("'config' is not supported"), std::string::npos) << config.body;
  EXPECT_EQ(Call("POST", "/v2/repository/models/m/load", R"({"parameters":{"x":1}})").status,
            400);
  EXPECT_EQ(Call("POST", "/v2/repository/models/m/load", "[1]").status, 400);
  EXPECT_EQ(Call("POST", "/v2/repository/models/absent/load").status, 404);
  EXPECT_EQ(Call("POST", "/v2/repository/models/m/unload",
                 R"({"parameters":{"unload_dependents":false}})").status, 200);
  const std::string body =
      R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,1,2,2],"data":[2,0,0,0]}]})";
  const Reply gone = Call("POST", "/v2/models/m/infer", body);
  EXPECT_EQ(gone.status, 503);
  EXPECT_NE(gone.body.find("unloaded"), std::string::npos) << gone.body;
  const json index = json::parse(Call("POST", "/v2/repository/index").body);
  EXPECT_EQ(index[0]["state"], "UNAVAILABLE");
  EXPECT_EQ(index[0]["reason"], "unloaded");
  EXPECT_EQ(Call("POST", "/v2/repository/models/m/load").status, 200);
  EXPECT_EQ(Call("POST", "/v2/models/m/infer", body).status, 200);
}

TEST_F(HttpRoutesTest, RestrictedApisNeedTheirHeader) {
  ASSERT_TRUE(access_.Add("model-repository:admin-key=k1").ok());
  const Reply denied = Call("POST", "/v2/repository/models/m/unload");
  EXPECT_EQ(denied.status, 403);
  EXPECT_NE(denied.body.find("admin-key"), std::string::npos);
  EXPECT_TRUE(repository_.Get("m").ok());  // Nothing happened.
  EXPECT_EQ(Call("POST", "/v2/repository/index", "", {{"admin-key", "k1"}}).status, 200);
  EXPECT_EQ(Call("GET", "/v2/health/ready").status, 200);  // Not restricted.
}

TEST_F(HttpRoutesTest, ConfigNamesTheBundleButNotWhereItLies) {
  const Reply config = Call("GET", "/v2/models/m/config");
  ASSERT_EQ(config.status, 200);
  const json parsed = json::parse(config.body);
  EXPECT_EQ(parsed["gati"]["bundle"], "m");
  EXPECT_EQ(config.body.find("/bundles"), std::string::npos) << config.body;
  // Without batching: max_batch_size 0 and dims with the batch dimension.
  EXPECT_EQ(parsed["max_batch_size"], 0);
  EXPECT_EQ(parsed["input"][0]["dims"], json::array({-1, 1, 2, 2}));
  EXPECT_FALSE(parsed.contains("dynamic_batching"));
}

TEST(HttpConfigTest, ABatchingModelsConfigSaysHowItBatchesAsTritonWritesIt) {
  FakeFactory factory;
  ModelRepository repository(factory.Make());
  BatchingOptions batching = DynamicBatching(8);
  batching.preferred_batch_sizes = {4};
  batching.max_queue_delay_us = 250;
  repository.SetBatchingDefaults(batching);
  ASSERT_TRUE(repository.Register("m", "/bundles/m").ok());
  ASSERT_TRUE(repository.LoadAll().ok());
  InferenceService service(&repository, ServiceOptions{});
  AccessPolicy access;
  const std::string empty;
  HttpRequest request;
  request.method = "GET";
  request.path = "/v2/models/m/config";
  request.body = &empty;
  request.header = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  const Reply reply =
      Handle(service, &access, ParseRoute("GET", request.path, HttpRoutes::kInference), request);
  ASSERT_EQ(reply.status, 200);
  const json config = json::parse(reply.body);
  EXPECT_EQ(config["max_batch_size"], 8);
  // With max_batch_size above 0, dims are one sample's.
  EXPECT_EQ(config["input"][0]["dims"], json::array({1, 2, 2}));
  EXPECT_EQ(config["output"][0]["dims"], json::array({1}));
  EXPECT_EQ(config["output"][1]["dims"], json::array({10}));
  EXPECT_EQ(config["dynamic_batching"]["preferred_batch_size"], json::array({4}));
  EXPECT_EQ(config["dynamic_batching"]["max_queue_delay_microseconds"], 250);
}

}  // namespace
}  // namespace gati::serve
