#include "serve/access.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace gati::serve {
namespace {

std::optional<Api> ApiNamed(std::string_view name) {
  static constexpr std::pair<std::string_view, Api> kNames[] = {
      {"health", Api::kHealth},
      {"metadata", Api::kMetadata},
      {"inference", Api::kInference},
      {"model-config", Api::kModelConfig},
      {"model-repository", Api::kModelRepository},
      {"statistics", Api::kStatistics}};
  for (const auto& [known, api] : kNames) {
    if (name == known) return api;
  }
  return std::nullopt;
}

}  // namespace

absl::Status AccessPolicy::Add(std::string_view spec_in) {
  const absl::string_view spec(spec_in.data(), spec_in.size());
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--restricted-api '", spec, "': ", why,
        " (expected API[,API...]:KEY=VALUE, API one of health, metadata, inference, "
        "model-config, model-repository, statistics)"));
  };
  const size_t colon = spec.find(':');
  if (colon == absl::string_view::npos) return bad("no ':'");
  const absl::string_view apis = spec.substr(0, colon), pair = spec.substr(colon + 1);
  const size_t equals = pair.find('=');
  if (equals == absl::string_view::npos) return bad("no '=' after ':'");
  Rule rule{absl::AsciiStrToLower(pair.substr(0, equals)), std::string(pair.substr(equals + 1))};
  if (rule.key.empty() || rule.value.empty()) return bad("empty key or value");
  for (char c : rule.key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) {
      return bad("the key must be letters, digits, '-' or '_'");
    }
  }
  if (apis.empty()) return bad("no API named");
  for (absl::string_view name : absl::StrSplit(apis, ',')) {
    const std::optional<Api> api = ApiNamed(std::string_view(name.data(), name.size()));
    if (!api) return bad(absl::StrCat("unknown API '", name, "'"));
    std::optional<Rule>& slot = rules_[static_cast<int>(*api)];
    if (slot) return bad(absl::StrCat("API '", name, "' is restricted twice"));
    slot = rule;
  }
  return absl::OkStatus();
}

absl::Status AccessPolicy::Check(
    Api api, const std::function<std::optional<std::string>(const std::string&)>& header) const {
  const std::optional<Rule>& rule = rules_[static_cast<int>(api)];
  if (!rule) return absl::OkStatus();
  const std::optional<std::string> given = header(rule->key);
  if (given && *given == rule->value) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "this API is restricted: it expects header '", rule->key, "' with the configured value"));
}

}  // namespace gati::serve
