#include "serve/oip_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace gati::serve {
namespace {

using json = nlohmann::json;

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

// Deepest nesting of a 'data' array (a tensor rank far beyond any model's).
constexpr int kMaxDepth = 32;

// Appends the numbers of a (possibly nested) JSON array, row-major.
absl::Status Flatten(const json& value, const std::string& where, int64_t limit,
                     std::vector<float>* out, int depth = 0) {
  if (value.is_array()) {
    if (depth >= kMaxDepth) return Bad(where + ": data is nested too deeply");
    for (const json& item : value) {
      GATI_RETURN_IF_ERROR(Flatten(item, where, limit, out, depth + 1));
    }
    return absl::OkStatus();
  }
  if (!value.is_number()) {
    return Bad(absl::StrCat(where, ": data holds ", value.type_name(), ", not a number"));
  }
  if (static_cast<int64_t>(out->size()) >= limit) {
    return Bad(absl::StrCat(where, ": more values than the shape holds"));
  }
  const double number = value.get<double>();
  const float as_float = static_cast<float>(number);
  if (!std::isfinite(as_float)) {
    return Bad(absl::StrCat(where, ": value ", out->size(), " is not a finite FP32 number"));
  }
  out->push_back(as_float);
  return absl::OkStatus();
}

// UINT8 data: every value an integer in 0..255.
absl::Status CheckUint8(const std::vector<float>& values, const std::string& where) {
  for (size_t i = 0; i < values.size(); ++i) {
    const float v = values[i];
    if (!(v >= 0 && v <= 255) || v != std::floor(v)) {
      return Bad(absl::StrCat(where, ": value ", i, " (", v, ") is not a UINT8 (0..255)"));
    }
  }
  return absl::OkStatus();
}

bool SupportedDatatype(const std::string& datatype) {
  return datatype == "FP32" || datatype == "UINT8";
}

int64_t ElementBytes(const std::string& datatype) { return datatype == "UINT8" ? 1 : 4; }

void CopyUint8(std::string_view bytes, std::vector<float>* out) {
  out->resize(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    (*out)[i] = static_cast<float>(static_cast<unsigned char>(bytes[i]));
  }
}

// The element count of `shape`: InvalidArgument for a negative dimension
// or more than limits.max_elements elements.
absl::StatusOr<int64_t> CountElements(const std::vector<int64_t>& shape, const std::string& where,
                                      const DecodeLimits& limits) {
  int64_t elements = 1;
  for (const int64_t d : shape) {
    if (d < 0) return Bad(where + ": shape entries must be non-negative integers");
    if (d > 0 && elements > limits.max_elements / d) {
      return Bad(absl::StrCat(where, ": shape holds more than ", limits.max_elements,
                              " elements"));
    }
    elements *= d;
  }
  return elements;
}

// Copies little-endian FP32 values out of `bytes`, checking each is finite.
absl::Status CopyFp32(std::string_view bytes, const std::string& where, std::vector<float>* out) {
  out->resize(bytes.size() / sizeof(float));
  if (!out->empty()) std::memcpy(out->data(), bytes.data(), out->size() * sizeof(float));
  for (size_t i = 0; i < out->size(); ++i) {
    if (!std::isfinite((*out)[i])) {
      return Bad(absl::StrCat(where, ": value ", i, " is not finite"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RequestInput> DecodeInput(const json& item, size_t index,
                                         std::string_view* binary, const DecodeLimits& limits) {
  std::string where = absl::StrCat("inputs[", index, "]");
  if (!item.is_object()) return Bad(where + ": not an object");
  RequestInput input;
  if (!item.contains("name") || !item["name"].is_string()) {
    return Bad(where + ": needs a string 'name'");
  }
  input.name = item["name"].get<std::string>();
  where = absl::StrCat("input '", input.name, "'");
  if (!item.contains("datatype") || !item["datatype"].is_string()) {
    return Bad(where + ": needs a string 'datatype'");
  }
  input.datatype = item["datatype"].get<std::string>();
  if (!SupportedDatatype(input.datatype)) {
    return Bad(absl::StrCat(where, ": datatype ", input.datatype,
                            " is not supported; the model takes FP32 (normalized inputs) or "
                            "UINT8 (raw images)"));
  }
  const int64_t element_bytes = ElementBytes(input.datatype);
  if (!item.contains("shape") || !item["shape"].is_array()) {
    return Bad(where + ": needs an array 'shape'");
  }
  for (const json& dim : item["shape"]) {
    if (!dim.is_number_integer()) {
      return Bad(where + ": shape entries must be non-negative integers");
    }
    input.shape.push_back(dim.get<int64_t>());
  }
  GATI_ASSIGN_OR_RETURN(const int64_t elements, CountElements(input.shape, where, limits));
  std::optional<int64_t> binary_size;
  if (item.contains("parameters")) {
    const json& parameters = item["parameters"];
    if (!parameters.is_object()) return Bad(where + ": 'parameters' must be an object");
    if (parameters.contains("binary_data_size")) {
      if (!parameters["binary_data_size"].is_number_integer() ||
          parameters["binary_data_size"].get<int64_t>() < 0) {
        return Bad(where + ": binary_data_size must be a non-negative integer");
      }
      binary_size = parameters["binary_data_size"].get<int64_t>();
    }
  }
  if (binary_size) {
    if (item.contains("data")) return Bad(where + ": has both 'data' and binary_data_size");
    if (*binary_size != elements * element_bytes) {
      return Bad(absl::StrCat(where, ": binary_data_size is ", *binary_size, " bytes; shape ",
                              "needs ", elements * element_bytes, " (", input.datatype, ")"));
    }
    if (*binary_size > static_cast<int64_t>(binary->size())) {
      return Bad(absl::StrCat(where, ": binary_data_size is ", *binary_size,
                              " bytes but only ", binary->size(), " remain in the body"));
    }
    if (input.datatype == "UINT8") {
      CopyUint8(binary->substr(0, *binary_size), &input.data);
    } else {
      GATI_RETURN_IF_ERROR(CopyFp32(binary->substr(0, *binary_size), where, &input.data));
    }
    binary->remove_prefix(*binary_size);
    return input;
  }
  if (!item.contains("data")) return Bad(where + ": needs 'data' or binary_data_size");
  input.data.reserve(elements);
  GATI_RETURN_IF_ERROR(Flatten(item["data"], where, elements, &input.data));
  if (static_cast<int64_t>(input.data.size()) != elements) {
    return Bad(absl::StrCat(where, ": data has ", input.data.size(), " values; shape needs ",
                            elements));
  }
  if (input.datatype == "UINT8") GATI_RETURN_IF_ERROR(CheckUint8(input.data, where));
  return input;
}

}  // namespace

absl::StatusOr<DecodedRequest> DecodeInferRequest(std::string_view body,
                                                  std::optional<int64_t> header_length,
                                                  const DecodeLimits& limits) {
  std::string_view text = body;
  std::string_view binary;
  if (header_length) {
    if (*header_length < 0 || *header_length > static_cast<int64_t>(body.size())) {
      return Bad(absl::StrCat("Inference-Header-Content-Length is ", *header_length,
                              " but the body has ", body.size(), " bytes"));
    }
    text = body.substr(0, *header_length);
    binary = body.substr(*header_length);
  }
  json root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Bad("the request is not valid JSON");
  if (!root.is_object()) return Bad("the request must be a JSON object");
  DecodedRequest request;
  if (root.contains("id")) {
    if (!root["id"].is_string()) return Bad("'id' must be a string");
    request.id = root["id"].get<std::string>();
  }
  if (root.contains("parameters")) {
    const json& parameters = root["parameters"];
    if (!parameters.is_object()) return Bad("'parameters' must be an object");
    if (parameters.contains("binary_data_output")) {
      if (!parameters["binary_data_output"].is_boolean()) {
        return Bad("binary_data_output must be a boolean");
      }
      request.binary_output = parameters["binary_data_output"].get<bool>();
    }
  }
  if (!root.contains("inputs") || !root["inputs"].is_array() || root["inputs"].empty()) {
    return Bad("the request needs a non-empty array 'inputs'");
  }
  size_t index = 0;
  for (const json& item : root["inputs"]) {
    GATI_ASSIGN_OR_RETURN(RequestInput input, DecodeInput(item, index++, &binary, limits));
    request.inputs.push_back(std::move(input));
  }
  if (!binary.empty()) {
    return Bad(absl::StrCat("the body holds ", binary.size(),
                            " bytes of binary data that no input declares"));
  }
  if (root.contains("outputs")) {
    if (!root["outputs"].is_array()) return Bad("'outputs' must be an array");
    for (const json& item : root["outputs"]) {
      if (!item.is_object() || !item.contains("name") || !item["name"].is_string()) {
        return Bad("each output needs a string 'name'");
      }
      RequestOutput output;
      output.name = item["name"].get<std::string>();
      output.binary = request.binary_output;
      if (item.contains("parameters")) {
        const json& parameters = item["parameters"];
        if (!parameters.is_object()) {
          return Bad("output '" + output.name + "': 'parameters' must be an object");
        }
        if (parameters.contains("binary_data")) {
          if (!parameters["binary_data"].is_boolean()) {
            return Bad("output '" + output.name + "': binary_data must be a boolean");
          }
          output.binary = parameters["binary_data"].get<bool>();
        }
      }
      request.outputs.push_back(std::move(output));
    }
  }
  return request;
}

absl::StatusOr<RequestInput> MakeInput(std::string name, std::string datatype,
                                       std::vector<int64_t> shape, std::string_view fp32_bytes,
                                       const DecodeLimits& limits) {
  const std::string where = absl::StrCat("input '", name, "'");
  if (!SupportedDatatype(datatype)) {
    return Bad(absl::StrCat(where, ": datatype ", datatype,
                            " is not supported; the model takes FP32 (normalized inputs) or "
                            "UINT8 (raw images)"));
  }
  GATI_ASSIGN_OR_RETURN(const int64_t elements, CountElements(shape, where, limits));
  const int64_t element_bytes = ElementBytes(datatype);
  if (static_cast<int64_t>(fp32_bytes.size()) != elements * element_bytes) {
    return Bad(absl::StrCat(where, ": holds ", fp32_bytes.size(), " bytes; shape needs ",
                            elements * element_bytes, " (", datatype, ")"));
  }
  RequestInput input;
  input.name = std::move(name);
  input.datatype = std::move(datatype);
  input.shape = std::move(shape);
  if (input.datatype == "UINT8") {
    CopyUint8(fp32_bytes, &input.data);
  } else {
    GATI_RETURN_IF_ERROR(CopyFp32(fp32_bytes, where, &input.data));
  }
  return input;
}

EncodedResponse EncodeInferResponse(
    const std::string& model_name, const std::string& model_version, const std::string& id,
    const std::vector<std::pair<std::string, ParameterValue>>& parameters,
    const std::vector<ResponseOutput>& outputs) {
  json root = {{"model_name", model_name}, {"model_version", model_version}};
  if (!id.empty()) root["id"] = id;
  if (!parameters.empty()) {
    json object = json::object();
    for (const auto& [key, value] : parameters) {
      std::visit([&object, &key = key](const auto& v) { object[key] = v; }, value);
    }
    root["parameters"] = object;
  }
  std::string binary;
  json list = json::array();
  for (const ResponseOutput& output : outputs) {
    json item = {{"name", output.name}, {"datatype", output.datatype}, {"shape", output.shape}};
    const bool is_int = output.datatype == "INT64";
    const char* bytes = is_int ? reinterpret_cast<const char*>(output.int64.data())
                               : reinterpret_cast<const char*>(output.fp32.data());
    const size_t size = is_int ? output.int64.size() * sizeof(int64_t)
                               : output.fp32.size() * sizeof(float);
    if (output.binary) {
      item["parameters"] = {{"binary_data_size", size}};
      binary.append(bytes, size);
    } else if (is_int) {
      item["data"] = output.int64;
    } else {
      item["data"] = output.fp32;
    }
    list.push_back(std::move(item));
  }
  root["outputs"] = std::move(list);
  EncodedResponse response;
  response.body = root.dump(-1, ' ', false, json::error_handler_t::replace);
  if (!binary.empty() || std::any_of(outputs.begin(), outputs.end(),
                                     [](const ResponseOutput& o) { return o.binary; })) {
    response.header_length = static_cast<int64_t>(response.body.size());
    response.body += binary;
  }
  return response;
}

std::string ErrorBody(std::string_view message) {
  return json{{"error", std::string(message)}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

}  // namespace gati::serve
