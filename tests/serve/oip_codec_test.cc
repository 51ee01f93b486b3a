// Open Inference Protocol request decoding (JSON and binary) and response
// encoding.
#include "serve/oip_codec.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "nlohmann/json.hpp"

namespace gati::serve {
namespace {

using json = nlohmann::json;

std::string Bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

void ExpectError(std::string_view body, std::optional<int64_t> header, const std::string& part) {
  auto decoded = DecodeInferRequest(body, header);
  ASSERT_FALSE(decoded.ok()) << body;
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find(part), std::string::npos)
      << "wanted '" << part << "' in: " << decoded.status().message();
}

TEST(OipCodecTest, DecodesFlatAndNestedJsonData) {
  auto flat = DecodeInferRequest(
      R"({"id": "r1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2, 2],
          "data": [1, 2.5, -3, 4]}]})",
      std::nullopt);
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_EQ(flat->id, "r1");
  ASSERT_EQ(flat->inputs.size(), 1u);
  EXPECT_EQ(flat->inputs[0].shape, (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(flat->inputs[0].data, (std::vector<float>{1, 2.5f, -3, 4}));
  auto nested = DecodeInferRequest(
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2, 2],
          "data": [[[1, 2.5], [-3, 4]]]}], "outputs": [{"name": "class"}]})",
      std::nullopt);
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_EQ(nested->inputs[0].data, flat->inputs[0].data);
  ASSERT_EQ(nested->outputs.size(), 1u);
  EXPECT_EQ(nested->outputs[0].name, "class");
  EXPECT_FALSE(nested->outputs[0].binary);
}

TEST(OipCodecTest, DecodesBinaryTensorData) {
  const std::vector<float> values = {0.5f, -1.0f, 2.0f, 3.25f, 4.0f, 5.0f};
  const std::string header =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6],
          "parameters": {"binary_data_size": 24}}],
          "outputs": [{"name": "class", "parameters": {"binary_data": true}},
                      {"name": "probabilities"}]})";
  auto decoded = DecodeInferRequest(header + Bytes(values), header.size());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->inputs[0].data, values);
  EXPECT_TRUE(decoded->outputs[0].binary);
  EXPECT_FALSE(decoded->outputs[1].binary);
  // binary_data_output makes every output binary unless it says otherwise.
  const std::string all_binary =
      R"({"parameters": {"binary_data_output": true}, "inputs": [{"name": "x",
          "datatype": "FP32", "shape": [6], "parameters": {"binary_data_size": 24}}],
          "outputs": [{"name": "class"}]})";
  auto both = DecodeInferRequest(all_binary + Bytes(values), all_binary.size());
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_TRUE(both->binary_output);
  EXPECT_TRUE(both->outputs[0].binary);
}

TEST(OipCodecTest, RejectsBadRequestsWithTheReason) {
  ExpectError("{not json", std::nullopt, "not valid JSON");
  ExpectError("[1, 2]", std::nullopt, "must be a JSON object");
  ExpectError(R"({"inputs": []})", std::nullopt, "non-empty array 'inputs'");
  ExpectError(R"({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]})", std::nullopt,
              "needs a string 'name'");
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}]})",
              std::nullopt, "datatype INT64 is not supported");
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]})",
              std::nullopt, "data has 1 values; shape needs 2");
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1, 2]}]})",
              std::nullopt, "more values than the shape holds");
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": []}]})",
              std::nullopt, "non-negative integers");
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, "a"]}]})",
              std::nullopt, "not a number");
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1e300]}]})",
              std::nullopt, "not a finite FP32 number");
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "FP32",
                  "shape": [100000, 100000, 100000], "data": []}]})",
              std::nullopt, "more than");
  ExpectError(R"({"id": 7, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})",
              std::nullopt, "'id' must be a string");
  // A key given twice: parsers disagree on which counts, so it is refused.
  ExpectError(R"({"inputs": [{"name": "x", "name": "y", "datatype": "FP32", "shape": [1],
                  "data": [1]}]})",
              std::nullopt, "key 'name' is given twice");
  ExpectError(R"({"id": "a", "id": "b", "inputs": [{"name": "x", "datatype": "FP32",
                  "shape": [1], "data": [1]}]})",
              std::nullopt, "key 'id' is given twice");
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1],
                  "parameters": {"binary_data_size": 4, "binary_data_size": 0}}]})",
              std::nullopt, "given twice");
  std::string deep(40, '[');
  ExpectError(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": )" + deep +
                  "1" + std::string(40, ']') + "}]}",
              std::nullopt, "nested too deeply");
}

TEST(OipCodecTest, RejectsInconsistentBinaryData) {
  const std::string header =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2],
          "parameters": {"binary_data_size": 8}}]})";
  const std::string two = Bytes({1.0f, 2.0f});
  ExpectError(header + two, header.size() + two.size() + 1, "but the body has");
  ExpectError(header + two.substr(0, 4), header.size(), "only 4 remain");
  ExpectError(header + two + "xx", header.size(), "2 bytes of binary data that no input declares");
  const std::string wrong_size =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3],
          "parameters": {"binary_data_size": 8}}]})";
  ExpectError(wrong_size + two, wrong_size.size(), "shape needs 12");
  const std::string both =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2],
          "parameters": {"binary_data_size": 8}}]})";
  ExpectError(both + two, both.size(), "both 'data' and binary_data_size");
  float nan = std::nanf("");
  ExpectError(header + Bytes({1.0f, nan}), header.size(), "value 1 is not finite");
}

TEST(OipCodecTest, EncodesJsonAndBinaryOutputs) {
  ResponseOutput label{"class", {1}, {}, {7}, "INT64", false};
  ResponseOutput probabilities{"probabilities", {1, 3}, {0.25f, 0.5f, 0.25f}, {}, "FP32", true};
  EncodedResponse response = EncodeInferResponse(
      "resnet", "1", "req-9", {{"gati_exit_tap", int64_t{3}}, {"gati_cache_hit", true}},
      {label, probabilities});
  ASSERT_TRUE(response.header_length.has_value());
  const std::string text = response.body.substr(0, *response.header_length);
  json root = json::parse(text);
  EXPECT_EQ(root["id"], "req-9");
  EXPECT_EQ(root["model_name"], "resnet");
  EXPECT_EQ(root["parameters"]["gati_exit_tap"], 3);
  EXPECT_EQ(root["parameters"]["gati_cache_hit"], true);
  EXPECT_EQ(root["outputs"][0]["data"], json::array({7}));
  EXPECT_EQ(root["outputs"][1]["parameters"]["binary_data_size"], 12);
  ASSERT_EQ(response.body.size(), *response.header_length + 12u);
  float decoded[3];
  std::memcpy(decoded, response.body.data() + *response.header_length, 12);
  EXPECT_EQ(decoded[1], 0.5f);
  // All-JSON responses need no header length.
  probabilities.binary = false;
  EncodedResponse plain = EncodeInferResponse("resnet", "1", "", {}, {label, probabilities});
  EXPECT_FALSE(plain.header_length.has_value());
  json again = json::parse(plain.body);
  EXPECT_FALSE(again.contains("id"));
  EXPECT_EQ(again["outputs"][1]["data"][1], 0.5);
}

TEST(OipCodecTest, MakeInputChecksRawBytesAgainstTheShape) {
  const float values[4] = {1, 2, 3, 4};
  const std::string_view bytes(reinterpret_cast<const char*>(values), sizeof(values));
  auto input = MakeInput("input", "FP32", {1, 2, 2}, bytes);
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ(input->data, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_NE(MakeInput("input", "FP32", {1, 2, 3}, bytes).status().message().find(
                "holds 16 bytes; shape needs 24"),
            std::string_view::npos);
  EXPECT_NE(MakeInput("input", "INT8", {4}, bytes).status().message().find("datatype INT8"),
            std::string_view::npos);
  EXPECT_NE(MakeInput("input", "FP32", {-4}, bytes).status().message().find("non-negative"),
            std::string_view::npos);
  DecodeLimits small;
  small.max_elements = 3;
  EXPECT_NE(MakeInput("input", "FP32", {4}, bytes, small).status().message().find(
                "more than 3 elements"),
            std::string_view::npos);
  const float infinite[1] = {std::numeric_limits<float>::infinity()};
  EXPECT_NE(MakeInput("x", "FP32", {1},
                      std::string_view(reinterpret_cast<const char*>(infinite), 4))
                .status()
                .message()
                .find("input 'x': value 0 is not finite"),
            std::string_view::npos);
}

TEST(OipCodecTest, DecodesUint8ImagesInJsonBinaryAndRawBytes) {
  auto json_body = DecodeInferRequest(
      R"({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [2, 2],
                       "data": [[0, 255], [7, 128]]}]})",
      std::nullopt);
  ASSERT_TRUE(json_body.ok()) << json_body.status();
  EXPECT_EQ(json_body->inputs[0].datatype, "UINT8");
  EXPECT_EQ(json_body->inputs[0].data, (std::vector<float>{0, 255, 7, 128}));
  ExpectError(R"({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [2],
                              "data": [3, 256]}]})",
              std::nullopt, "value 1 (256) is not a UINT8 (0..255)");
  ExpectError(R"({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [2],
                              "data": [3, 1.5]}]})",
              std::nullopt, "value 1 (1.5) is not a UINT8");
  ExpectError(R"({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [2],
                              "data": [-1, 2]}]})",
              std::nullopt, "is not a UINT8");
  // Binary: one byte per element.
  const std::string header =
      R"({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [3],
                      "parameters": {"binary_data_size": 3}}]})";
  const std::string body = header + std::string("\x01\xff\x10", 3);
  auto binary = DecodeInferRequest(body, static_cast<int64_t>(header.size()));
  ASSERT_TRUE(binary.ok()) << binary.status();
  EXPECT_EQ(binary->inputs[0].data, (std::vector<float>{1, 255, 16}));
  const std::string wrong =
      R"({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [3],
                      "parameters": {"binary_data_size": 12}}]})";
  ExpectError(wrong + std::string(12, '\0'), static_cast<int64_t>(wrong.size()),
              "binary_data_size is 12 bytes; shape needs 3 (UINT8)");
  // Raw bytes (gRPC).
  auto raw = MakeInput("input", "UINT8", {2}, std::string_view("\x02\x03", 2));
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->data, (std::vector<float>{2, 3}));
  EXPECT_FALSE(MakeInput("input", "UINT8", {3}, std::string_view("\x02\x03", 2)).ok());
}

TEST(OipCodecTest, ErrorBodyIsJson) {
  json error = json::parse(ErrorBody("bad \"input\"\n"));
  EXPECT_EQ(error["error"], "bad \"input\"\n");
}

}  // namespace
}  // namespace gati::serve
