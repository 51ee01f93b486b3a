// Parsing and validation of the gati.json metadata inside a staged model.
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "gati/model.h"
#include "nlohmann/json.hpp"

namespace gati {
namespace {

using Json = nlohmann::json;

absl::Status Invalid(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": invalid ", kMetadataFileName, ": ", what));
}

}  // namespace

absl::StatusOr<ModelMetadata> ParseModelMetadata(const std::string& json_text,
                                                 const std::string& source) {
  Json json = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Invalid(source, "not valid JSON");
  if (!json.is_object()) return Invalid(source, "top level is not an object");

  ModelMetadata metadata;
  // nlohmann's typed getters throw on type mismatch; every field is checked
  // for type first so that nothing throws.
  const auto& version = json["format_version"];
  if (!version.is_number_integer()) {
    return Invalid(source, "'format_version' missing or not an integer");
  }
  metadata.format_version = version.get<int>();
  if (metadata.format_version != kModelFormatVersion) {
    return Invalid(source, absl::StrCat("format_version ",
                                        metadata.format_version,
                                        " is not supported (this build reads ",
                                        kModelFormatVersion, ")"));
  }
  if (json.contains("name")) {
    if (!json["name"].is_string()) return Invalid(source, "'name' not a string");
    metadata.name = json["name"].get<std::string>();
  }

  const auto& input = json["input"];
  if (!input.is_object()) return Invalid(source, "'input' missing");
  const auto& shape = input["shape"];
  if (!shape.is_array() || shape.empty()) {
    return Invalid(source, "'input.shape' missing or empty");
  }
  for (const auto& dim : shape) {
    if (!dim.is_number_integer() || dim.get<int64_t>() <= 0) {
      return Invalid(source, "'input.shape' must hold positive integers");
    }
    metadata.input_shape.push_back(dim.get<int64_t>());
  }
  if (!input["dtype"].is_string()) {
    return Invalid(source, "'input.dtype' missing");
  }
  metadata.input_dtype = input["dtype"].get<std::string>();
  if (input.contains("resize")) {
    const auto& resize = input["resize"];
    if (!resize.is_object() || !resize.contains("shorter_side") ||
        !resize.at("shorter_side").is_number_integer() ||
        resize.at("shorter_side").get<int64_t>() < 1) {
      return Invalid(source, "'input.resize' must be {\"shorter_side\": N} with N >= 1");
    }
    metadata.resize_shorter_side = resize.at("shorter_side").get<int64_t>();
  }
  if (metadata.input_dtype != "float32") {
    return Invalid(source, absl::StrCat("input dtype '", metadata.input_dtype,
                                        "' is not supported (only float32)"));
  }

  const auto& normalization = json["normalization"];
  if (!normalization.is_object()) {
    return Invalid(source, "'normalization' missing");
  }
  for (const char* key : {"mean", "std"}) {
    const auto& values = normalization[key];
    auto& out = std::string(key) == "mean" ? metadata.mean : metadata.std;
    if (!values.is_array()) {
      return Invalid(source, absl::StrCat("'normalization.", key, "' missing"));
    }
    for (const auto& value : values) {
      if (!value.is_number() || !std::isfinite(value.get<double>())) {
        return Invalid(source, absl::StrCat("'normalization.", key,
                                            "' must hold finite numbers"));
      }
      out.push_back(value.get<float>());
    }
    if (out.size() != static_cast<size_t>(metadata.input_shape[0])) {
      return Invalid(source,
                     absl::StrCat("'normalization.", key, "' has ", out.size(),
                                  " values for ", metadata.input_shape[0],
                                  " input channels"));
    }
  }
  for (float s : metadata.std) {
    if (s <= 0) return Invalid(source, "'normalization.std' must be > 0");
  }

  for (const char* key : {"class_names", "stage_names"}) {
    const auto& names = json[key];
    auto& out = std::string(key) == "class_names" ? metadata.class_names
                                                   : metadata.stage_names;
    if (!names.is_array() || names.empty()) {
      return Invalid(source, absl::StrCat("'", key, "' missing or empty"));
    }
    for (const auto& name : names) {
      if (!name.is_string()) {
        return Invalid(source, absl::StrCat("'", key, "' must hold strings"));
      }
      out.push_back(name.get<std::string>());
    }
  }
  return metadata;
}

std::string ModelMetadataToJson(const ModelMetadata& metadata) {
  Json json = {
      {"format_version", metadata.format_version},
      {"name", metadata.name},
      {"input", {{"shape", metadata.input_shape},
                 {"dtype", metadata.input_dtype}}},
      {"normalization", {{"mean", metadata.mean}, {"std", metadata.std}}},
      {"class_names", metadata.class_names},
      {"stage_names", metadata.stage_names},
  };
  if (metadata.resize_shorter_side > 0) {
    json["input"]["resize"] = {{"shorter_side", metadata.resize_shorter_side}};
  }
  return json.dump(1);
}

}  // namespace gati
