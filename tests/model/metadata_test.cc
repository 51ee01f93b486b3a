#include <gtest/gtest.h>

#include "gati/model.h"
#include "nlohmann/json.hpp"
#include "testutil.h"

namespace gati {
namespace {

using Json = nlohmann::json;

Json ValidJson() {
  return Json::parse(R"({
    "format_version": 1, "name": "m",
    "input": {"shape": [3, 4, 4], "dtype": "float32"},
    "normalization": {"mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]},
    "class_names": ["a", "b"], "stage_names": ["s0", "s1"]})");
}

TEST(ModelMetadataTest, ParsesEveryField) {
  auto metadata = ParseModelMetadata(ValidJson().dump(), "m.pt");
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  EXPECT_EQ(metadata->format_version, 1);
  EXPECT_EQ(metadata->name, "m");
  EXPECT_EQ(metadata->input_shape, (std::vector<int64_t>{3, 4, 4}));
  EXPECT_EQ(metadata->input_dtype, "float32");
  EXPECT_FLOAT_EQ(metadata->mean[2], 0.3f);
  EXPECT_FLOAT_EQ(metadata->std[1], 2.0f);
  EXPECT_EQ(metadata->class_names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(metadata->stage_names, (std::vector<std::string>{"s0", "s1"}));
}

TEST(ModelMetadataTest, RoundTripsThroughJson) {
  auto metadata = ParseModelMetadata(ValidJson().dump(), "m.pt");
  ASSERT_TRUE(metadata.ok());
  auto again = ParseModelMetadata(ModelMetadataToJson(*metadata), "again");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->input_shape, metadata->input_shape);
  EXPECT_EQ(again->mean, metadata->mean);
  EXPECT_EQ(again->stage_names, metadata->stage_names);
}

struct BadCase {
  const char* description;
  std::function<void(Json&)> mutate;
  const char* message;
};

TEST(ModelMetadataTest, RejectsInvalidMetadataNamingTheProblem) {
  std::vector<BadCase> cases = {
      {"no version", [](Json& j) { j.erase("format_version"); },
       "'format_version' missing"},
      {"future version", [](Json& j) { j["format_version"] = 2; },
       "format_version 2 is not supported"},
      {"no input", [](Json& j) { j.erase("input"); }, "'input' missing"},
      {"negative dim", [](Json& j) { j["input"]["shape"][1] = -4; },
       "positive integers"},
      {"string dim", [](Json& j) { j["input"]["shape"][1] = "4"; },
       "positive integers"},
      {"float64", [](Json& j) { j["input"]["dtype"] = "float64"; },
       "only float32"},
      {"mean count", [](Json& j) { j["normalization"]["mean"] = {0.5}; },
       "has 1 values for 3 input channels"},
      {"zero std", [](Json& j) { j["normalization"]["std"] = {1, 0, 1}; },
       "must be > 0"},
      {"no classes", [](Json& j) { j["class_names"] = Json::array(); },
       "'class_names' missing or empty"},
      {"number stage", [](Json& j) { j["stage_names"][0] = 3; },
       "'stage_names' must hold strings"},
      {"name type", [](Json& j) { j["name"] = 5; }, "'name' not a string"},
  };
  for (const BadCase& bad : cases) {
    Json json = ValidJson();
    bad.mutate(json);
    SCOPED_TRACE(bad.description);
    EXPECT_ERROR(ParseModelMetadata(json.dump(), "m.pt").status(),
                 absl::StatusCode::kInvalidArgument, bad.message);
  }
}

TEST(ModelMetadataTest, ResizeRuleIsOptionalAndRoundTrips) {
  auto plain = ParseModelMetadata(ValidJson().dump(), "m.pt");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->resize_shorter_side, 0);
  EXPECT_EQ(ModelMetadataToJson(*plain).find("resize"), std::string::npos);
  Json json = ValidJson();
  json["input"]["resize"] = {{"shorter_side", 256}};
  auto resized = ParseModelMetadata(json.dump(), "m.pt");
  ASSERT_TRUE(resized.ok()) << resized.status();
  EXPECT_EQ(resized->resize_shorter_side, 256);
  auto again = ParseModelMetadata(ModelMetadataToJson(*resized), "again");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->resize_shorter_side, 256);
  for (const Json& bad : {Json{{"shorter_side", 0}}, Json{{"side", 5}}, Json(7)}) {
    json["input"]["resize"] = bad;
    auto rejected = ParseModelMetadata(json.dump(), "m.pt");
    ASSERT_FALSE(rejected.ok()) << bad.dump();
    EXPECT_NE(rejected.status().message().find("'input.resize'"), std::string::npos);
  }
}

TEST(ModelMetadataTest, RejectsTextThatIsNotAJsonObject) {
  EXPECT_ERROR(ParseModelMetadata("{oops", "x.pt").status(),
               absl::StatusCode::kInvalidArgument, "x.pt: invalid gati.json");
  EXPECT_ERROR(ParseModelMetadata("[1, 2]", "x.pt").status(),
               absl::StatusCode::kInvalidArgument, "not an object");
}

}  // namespace
}  // namespace gati
