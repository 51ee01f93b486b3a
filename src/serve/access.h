// Restricted APIs (gati serve --restricted-api), as Triton's
// --http-restricted-api / --grpc-restricted-api: a group of endpoints
// answers only requests that carry a given header (HTTP) or metadata key
// (gRPC) with a given value. Unrestricted groups answer everyone.
#ifndef GATI_SERVE_ACCESS_H_
#define GATI_SERVE_ACCESS_H_

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "gati/status.h"

namespace gati::serve {

// Endpoint groups, by Triton's names.
enum class Api {
  kHealth,           // health/live, health/ready, model ready
  kMetadata,         // server and model metadata
  kInference,        // infer (HTTP), ModelInfer and ModelStreamInfer (gRPC)
  kModelConfig,      // model config
  kModelRepository,  // repository index, load, unload
  kStatistics,       // model statistics
};
inline constexpr int kApiCount = 6;

class AccessPolicy {
 public:
  // Adds "API[,API...]:KEY=VALUE" (API: health, metadata, inference,
  // model-config, model-repository, statistics). InvalidArgument, quoting
  // the spec, for a malformed spec, an unknown API, an empty key or value,
  // or a group restricted twice.
  absl::Status Add(std::string_view spec);

  // OK when `api` is unrestricted or `header(key)` returns its value;
  // otherwise PermissionDenied naming the key it expects. `header` looks a
  // header up by its lower-case name (nullopt: absent). Thread-safe (const).
  absl::Status Check(Api api,
                     const std::function<std::optional<std::string>(const std::string&)>& header)
      const;

  bool restricted(Api api) const { return rules_[static_cast<int>(api)].has_value(); }

 private:
  struct Rule {
    std::string key;  // Lower case.
    std::string value;
  };
  std::array<std::optional<Rule>, kApiCount> rules_;
};

}  // namespace gati::serve

#endif  // GATI_SERVE_ACCESS_H_
