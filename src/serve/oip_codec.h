// Open Inference Protocol (KServe / Triton "v2") request decoding and
// response encoding for HTTP/REST, including Triton's binary tensor data
// extension. No HTTP here: the front end hands over the body and the value
// of the Inference-Header-Content-Length header.
//
// Binary extension, as the decoder reads it: when the header is present,
// the body is that many bytes of JSON followed by tensor data; each input
// whose parameters carry "binary_data_size" takes that many bytes, in input
// order, little-endian, row-major, no padding. An output requested with
// parameters {"binary_data": true} (or every output, when the request's
// parameters say "binary_data_output": true) is returned the same way.
#ifndef GATI_SERVE_OIP_CODEC_H_
#define GATI_SERVE_OIP_CODEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "gati/status.h"

namespace gati::serve {

// One input tensor, its values converted to float32 (row-major): FP32 as
// sent (normalized model inputs), UINT8 as 0..255 (raw image pixels, which
// the service normalizes).
struct RequestInput {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// An output the client asked for by name.
struct RequestOutput {
  std::string name;
  bool binary = false;  // parameters.binary_data
};

struct DecodedRequest {
  std::string id;  // Echoed in the response; empty when absent.
  std::vector<RequestInput> inputs;
  // Empty = every output the model has, in JSON unless binary_output.
  std::vector<RequestOutput> outputs;
  bool binary_output = false;  // parameters.binary_data_output
};

struct DecodeLimits {
  // Most elements one input may hold (guards shape products).
  int64_t max_elements = int64_t{1} << 24;
};

// Decodes an inference request body. `header_length` is the value of
// Inference-Header-Content-Length (nullopt: the whole body is JSON).
// InvalidArgument saying what is wrong and where: malformed JSON, a missing
// or mistyped field, a datatype other than FP32 or UINT8, a UINT8 value
// outside 0..255 or not an integer, a negative or oversized
// shape, an element count that does not match the shape, a non-number or
// non-finite value, binary sizes that do not match the shape or the body,
// data given both in JSON and as binary.
absl::StatusOr<DecodedRequest> DecodeInferRequest(std::string_view body,
                                                  std::optional<int64_t> header_length,
                                                  const DecodeLimits& limits = {});

// Builds one FP32 input from fields already split out (the gRPC front end):
// `fp32_bytes` holds the values little-endian, row-major. InvalidArgument,
// naming the input, for another datatype, a negative or oversized shape, a
// byte count that does not match the shape, or a non-finite value.
absl::StatusOr<RequestInput> MakeInput(std::string name, std::string datatype,
                                       std::vector<int64_t> shape, std::string_view fp32_bytes,
                                       const DecodeLimits& limits = {});

// One output tensor of a response: FP32 or INT64 values.
struct ResponseOutput {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> fp32;    // Used when datatype is "FP32".
  std::vector<int64_t> int64;  // Used when datatype is "INT64".
  std::string datatype = "FP32";
  bool binary = false;  // Send as binary data after the JSON.
};

using ParameterValue = std::variant<bool, int64_t, std::string>;

struct EncodedResponse {
  std::string body;
  // Set when some output is binary: the JSON's length, for the
  // Inference-Header-Content-Length response header.
  std::optional<int64_t> header_length;
};

// Encodes an inference response (model_name, model_version, id when not
// empty, parameters, outputs).
EncodedResponse EncodeInferResponse(
    const std::string& model_name, const std::string& model_version, const std::string& id,
    const std::vector<std::pair<std::string, ParameterValue>>& parameters,
    const std::vector<ResponseOutput>& outputs);

// {"error": "<message>"}, JSON-escaped.
std::string ErrorBody(std::string_view message);

}  // namespace gati::serve

#endif  // GATI_SERVE_OIP_CODEC_H_
