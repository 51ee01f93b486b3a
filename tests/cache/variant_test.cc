#include <gtest/gtest.h>

#include "gati/cache.h"
#include "testutil.h"

namespace gati {
namespace {

TEST(VariantTest, RegistryParsesEveryDefaultSpec) {
  for (const std::string& spec : DefaultVariantSpecs()) {
    auto variant = ParseVariantSpec(spec);
    ASSERT_TRUE(variant.ok()) << variant.status();
    EXPECT_EQ(variant->name, spec);
    EXPECT_FALSE(variant->description.empty());
  }
}

TEST(VariantTest, SpecsMapToTheirStructure) {
  auto mlp = ParseVariantSpec("pool4:mlp256");
  ASSERT_TRUE(mlp.ok());
  EXPECT_EQ(mlp->pool, 4);
  EXPECT_EQ(mlp->hidden, std::vector<int>{256});
  EXPECT_FALSE(mlp->streams());
  auto conv = ParseVariantSpec("conv1x1-8:pool4:linear");
  ASSERT_TRUE(conv.ok());
  EXPECT_EQ(conv->conv_channels, 8);
  EXPECT_TRUE(conv->streams());
  EXPECT_TRUE(conv->hidden.empty());
  EXPECT_EQ(ParseVariantSpec("gap:linear")->pool, 1);
}

TEST(VariantTest, UnknownSpecListsTheKnownOnes) {
  auto variant = ParseVariantSpec("pool3:mlp7");
  EXPECT_ERROR(variant.status(), absl::StatusCode::kInvalidArgument,
               "unknown variant 'pool3:mlp7'");
  EXPECT_ERROR(variant.status(), absl::StatusCode::kInvalidArgument,
               "gap:linear, gap:mlp64");
  EXPECT_FALSE(ParseVariantSpec("").ok());
  EXPECT_FALSE(ParseVariantSpec("gap:linear:").ok());
}

TEST(VariantTest, FeatureSizeCountsPooledValues) {
  ActivationShape shape{16, 28, 28};
  EXPECT_EQ(FeatureSize(*ParseVariantSpec("gap:linear"), shape), 16);
  EXPECT_EQ(FeatureSize(*ParseVariantSpec("pool2:mlp128"), shape), 64);
  EXPECT_EQ(FeatureSize(*ParseVariantSpec("pool4:mlp256"), shape), 256);
  EXPECT_EQ(FeatureSize(*ParseVariantSpec("conv1x1-8:pool4:linear"), shape), 128);
}

}  // namespace
}  // namespace gati
