#include "serve/oip_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "simdjson.h"

namespace gati::serve {
namespace {

using json = nlohmann::json;

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

// A thread's JSON parser keeps buffers for bodies up to this size.
constexpr size_t kKeptParserBytes = 1 << 20;

// Deepest nesting of a 'data' array (a tensor rank far beyond any model's).
constexpr int kMaxDepth = 32;

using simdjson::dom::element;
using simdjson::dom::element_type;

const char* TypeName(element value) {
  switch (value.type()) {
    case element_type::ARRAY: return "array";
    case element_type::OBJECT: return "object";
    case element_type::STRING: return "string";
    case element_type::BOOL: return "boolean";
    case element_type::NULL_VALUE: return "null";
    default: return "number";
  }
}

bool IsNumber(element value) {
  const element_type type = value.type();
  return type == element_type::INT64 || type == element_type::UINT64 ||
         type == element_type::DOUBLE;
}

bool IsInteger(element value) {
  return value.type() == element_type::INT64 || value.type() == element_type::UINT64;
}

// InvalidArgument naming the key when an object gives one twice: parsers
// disagree on which of the two counts (the first here, the last in others),
// so a request that two of them could read differently is refused.
absl::Status UniqueKeys(simdjson::dom::object object, const std::string& where) {
  std::vector<std::string_view> keys;
  for (simdjson::dom::key_value_pair field : object) {
    if (std::find(keys.begin(), keys.end(), field.key) != keys.end()) {
      return Bad(absl::StrCat(where, ": key '", std::string(field.key), "' is given twice"));
    }
    keys.push_back(field.key);
  }
  return absl::OkStatus();
}

// The member `key` of an object (nullopt when absent).
std::optional<element> Member(simdjson::dom::object object, std::string_view key) {
  element value;
  if (object.at_key(key).get(value) != simdjson::SUCCESS) return std::nullopt;
  return value;
}

std::optional<std::string> StringOf(element value) {
  std::string_view text;
  if (value.get_string().get(text) != simdjson::SUCCESS) return std::nullopt;
  return std::string(text);
}

// Appends the numbers of a (possibly nested) JSON array, row-major.
absl::Status Flatten(element value, const std::string& where, int64_t limit,
                     std::vector<float>* out, int depth = 0) {
  if (value.type() == element_type::ARRAY) {
    if (depth >= kMaxDepth) return Bad(where + ": data is nested too deeply");
    for (element item : simdjson::dom::array(value)) {
      GATI_RETURN_IF_ERROR(Flatten(item, where, limit, out, depth + 1));
    }
    return absl::OkStatus();
  }
  if (!IsNumber(value)) {
    return Bad(absl::StrCat(where, ": data holds ", TypeName(value), ", not a number"));
  }
  if (static_cast<int64_t>(out->size()) >= limit) {
    return Bad(absl::StrCat(where, ": more values than the shape holds"));
  }
  double number = 0;  // Integers convert.
  if (value.get_double().get(number) != simdjson::SUCCESS) {
    return Bad(absl::StrCat(where, ": value ", out->size(), " is not a number"));
  }
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

absl::StatusOr<RequestInput> DecodeInput(element item, size_t index, std::string_view* binary,
                                         const DecodeLimits& limits) {
  std::string where = absl::StrCat("inputs[", index, "]");
  if (item.type() != element_type::OBJECT) return Bad(where + ": not an object");
  const simdjson::dom::object object(item);
  GATI_RETURN_IF_ERROR(UniqueKeys(object, where));
  RequestInput input;
  const std::optional<element> name = Member(object, "name");
  std::optional<std::string> name_text = name ? StringOf(*name) : std::nullopt;
  if (!name_text) return Bad(where + ": needs a string 'name'");
  input.name = std::move(*name_text);
  where = absl::StrCat("input '", input.name, "'");
  const std::optional<element> datatype = Member(object, "datatype");
  std::optional<std::string> datatype_text = datatype ? StringOf(*datatype) : std::nullopt;
  if (!datatype_text) return Bad(where + ": needs a string 'datatype'");
  input.datatype = std::move(*datatype_text);
  if (!SupportedDatatype(input.datatype)) {
    return Bad(absl::StrCat(where, ": datatype ", input.datatype,
                            " is not supported; the model takes FP32 (normalized inputs) or "
                            "UINT8 (raw images)"));
  }
  const int64_t element_bytes = ElementBytes(input.datatype);
  const std::optional<element> shape = Member(object, "shape");
  if (!shape || shape->type() != element_type::ARRAY) {
    return Bad(where + ": needs an array 'shape'");
  }
  for (element dim : simdjson::dom::array(*shape)) {
    int64_t value = 0;
    if (!IsInteger(dim) || dim.get_int64().get(value) != simdjson::SUCCESS) {
      return Bad(where + ": shape entries must be non-negative integers");
    }
    input.shape.push_back(value);
  }
  GATI_ASSIGN_OR_RETURN(const int64_t elements, CountElements(input.shape, where, limits));
  std::optional<int64_t> binary_size;
  if (const std::optional<element> parameters = Member(object, "parameters")) {
    if (parameters->type() != element_type::OBJECT) {
      return Bad(where + ": 'parameters' must be an object");
    }
    GATI_RETURN_IF_ERROR(UniqueKeys(simdjson::dom::object(*parameters), where + " parameters"));
    if (const std::optional<element> size =
            Member(simdjson::dom::object(*parameters), "binary_data_size")) {
      int64_t value = -1;
      if (!IsInteger(*size) || size->get_int64().get(value) != simdjson::SUCCESS || value < 0) {
        return Bad(where + ": binary_data_size must be a non-negative integer");
      }
      binary_size = value;
    }
  }
  const std::optional<element> data = Member(object, "data");
  if (binary_size) {
    if (data) return Bad(where + ": has both 'data' and binary_data_size");
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
  if (!data) return Bad(where + ": needs 'data' or binary_data_size");
  input.data.reserve(elements);
  GATI_RETURN_IF_ERROR(Flatten(*data, where, elements, &input.data));
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
  // One parser per thread: it keeps its buffers from request to request,
  // up to kKeptParserBytes; after a larger body it starts afresh, so that no
  // thread holds a large body's buffers for good.
  thread_local simdjson::dom::parser parser;
  struct Shrink {
    ~Shrink() {
      if (parser.capacity() > kKeptParserBytes) parser = simdjson::dom::parser();
    }
  } shrink;
  element root;
  if (const simdjson::error_code error =
          parser.parse(text.data(), text.size(), /*realloc_if_needed=*/true).get(root);
      error != simdjson::SUCCESS) {
    return Bad(absl::StrCat("the request is not valid JSON (", simdjson::error_message(error),
                            ")"));
  }
  if (root.type() != element_type::OBJECT) return Bad("the request must be a JSON object");
  const simdjson::dom::object object(root);
  GATI_RETURN_IF_ERROR(UniqueKeys(object, "the request"));
  DecodedRequest request;
  if (const std::optional<element> id = Member(object, "id")) {
    std::optional<std::string> id_text = StringOf(*id);
    if (!id_text) return Bad("'id' must be a string");
    request.id = std::move(*id_text);
  }
  if (const std::optional<element> parameters = Member(object, "parameters")) {
    if (parameters->type() != element_type::OBJECT) return Bad("'parameters' must be an object");
    GATI_RETURN_IF_ERROR(UniqueKeys(simdjson::dom::object(*parameters), "'parameters'"));
    if (const std::optional<element> flag =
            Member(simdjson::dom::object(*parameters), "binary_data_output")) {
      if (flag->type() != element_type::BOOL) return Bad("binary_data_output must be a boolean");
      request.binary_output = bool(*flag);
    }
  }
  const std::optional<element> inputs = Member(object, "inputs");
  if (!inputs || inputs->type() != element_type::ARRAY ||
      simdjson::dom::array(*inputs).size() == 0) {
    return Bad("the request needs a non-empty array 'inputs'");
  }
  size_t index = 0;
  for (element item : simdjson::dom::array(*inputs)) {
    GATI_ASSIGN_OR_RETURN(RequestInput input, DecodeInput(item, index++, &binary, limits));
    request.inputs.push_back(std::move(input));
  }
  if (!binary.empty()) {
    return Bad(absl::StrCat("the body holds ", binary.size(),
                            " bytes of binary data that no input declares"));
  }
  if (const std::optional<element> outputs = Member(object, "outputs")) {
    if (outputs->type() != element_type::ARRAY) return Bad("'outputs' must be an array");
    for (element item : simdjson::dom::array(*outputs)) {
      std::optional<std::string> name;
      if (item.type() == element_type::OBJECT) {
        GATI_RETURN_IF_ERROR(UniqueKeys(simdjson::dom::object(item), "an output"));
        if (const std::optional<element> value = Member(simdjson::dom::object(item), "name")) {
          name = StringOf(*value);
        }
      }
      if (!name) return Bad("each output needs a string 'name'");
      RequestOutput output;
      output.name = std::move(*name);
      output.binary = request.binary_output;
      if (const std::optional<element> parameters =
              Member(simdjson::dom::object(item), "parameters")) {
        if (parameters->type() != element_type::OBJECT) {
          return Bad("output '" + output.name + "': 'parameters' must be an object");
        }
        if (const std::optional<element> flag =
                Member(simdjson::dom::object(*parameters), "binary_data")) {
          if (flag->type() != element_type::BOOL) {
            return Bad("output '" + output.name + "': binary_data must be a boolean");
          }
          output.binary = bool(*flag);
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
