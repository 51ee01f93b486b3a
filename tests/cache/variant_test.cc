#include <gtest/gtest.h>

#include "cache/cache_testutil.h"
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

TEST(VariantTest, EveryLayoutHasDefaultsThatFitIt) {
  for (auto [layout, shape] : {std::pair{ActivationLayout::kChannels, ActivationShape{8, 4, 4}},
                               {ActivationLayout::kTokens,
                                ActivationShape{8, 5, 1, ActivationLayout::kTokens}},
                               {ActivationLayout::kVector,
                                ActivationShape{8, 1, 1, ActivationLayout::kVector}}}) {
    ASSERT_FALSE(DefaultVariantSpecsFor(layout).empty());
    for (const std::string& spec : DefaultVariantSpecsFor(layout)) {
      auto variant = ParseVariantSpec(spec);
      ASSERT_TRUE(variant.ok()) << variant.status();
      EXPECT_TRUE(VariantFits(*variant, shape)) << spec;
      EXPECT_GT(FeatureSize(*variant, shape), 0) << spec;
    }
  }
  // A kind fits one layout only.
  EXPECT_FALSE(VariantFits(*ParseVariantSpec("id:linear"), ActivationShape{8, 1, 1}));
  EXPECT_FALSE(VariantFits(*ParseVariantSpec("gap:linear"),
                           ActivationShape{8, 1, 1, ActivationLayout::kVector}));
  EXPECT_EQ(VariantsThatFit(ActivationLayout::kVector), "id, projN");
}

TEST(VariantTest, VectorVariantsAreIdentityOrProjection) {
  const ActivationShape vector{40, 1, 1, ActivationLayout::kVector};
  auto identity = ParseVariantSpec("id:mlp64");
  ASSERT_TRUE(identity.ok());
  EXPECT_EQ(identity->pool_kind, PoolKind::kIdentity);
  EXPECT_FALSE(identity->streams());
  EXPECT_EQ(FeatureSize(*identity, vector), 40);
  auto projection = ParseVariantSpec("proj16:linear");
  ASSERT_TRUE(projection.ok());
  EXPECT_TRUE(projection->streams());
  EXPECT_EQ(projection->conv_channels, 16);
  EXPECT_EQ(FeatureSize(*projection, vector), 16);
}

TEST(VariantTest, AveragePoolsTakeNoMoreBinsThanPositions) {
  const VariantSpec pool4 = *ParseVariantSpec("pool4:mlp256");
  EXPECT_EQ(FeatureSize(pool4, ActivationShape{512, 1, 1}), 512);
  EXPECT_EQ(FeatureSize(pool4, ActivationShape{512, 2, 7}), 512 * 2 * 4);
  EXPECT_EQ(FeatureSize(*ParseVariantSpec("conv1x1-8:pool4:linear"), ActivationShape{64, 3, 3}),
            8 * 9);
}

TEST(VariantTest, ACacheMadeBeforeBinsWereCappedAsksForARebuild) {
  const ActivationShape small{8, 2, 2};
  CacheWeights weights = testing::RandomCacheWeights("pool4:mlp256", 3, small, 5, 1);
  ASSERT_TRUE(LearnedCache::Create(weights).ok());
  // Its first layer as an older build made it: 4 x 4 bins of a 2 x 2 map.
  std::mt19937 rng(2);
  weights.predictor[0] = testing::RandomLayer(8 * 16, 256, rng);
  EXPECT_ERROR(LearnedCache::Create(weights).status(), absl::StatusCode::kInvalidArgument,
               "(128 features, now 32); rebuild the bundle");
}

TEST(VariantTest, ActivationShapesRoundTripAndDetectTheirLayout) {
  for (ActivationShape shape : {ActivationShape{16, 7, 5},
                                ActivationShape{64, 17, 1, ActivationLayout::kTokens},
                                ActivationShape{300, 1, 1, ActivationLayout::kVector}}) {
    auto parsed = ParseActivationShape(ActivationShapeToString(shape));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, shape) << ActivationShapeToString(shape);
  }
  EXPECT_EQ(ActivationShapeToString(*DetectActivationShape({300}, "tap 0")), "vector:300");
  EXPECT_EQ(ActivationShapeToString(*DetectActivationShape({17, 64}, "tap 0")), "tokens:17x64");
  EXPECT_EQ(ActivationShapeToString(*DetectActivationShape({16, 7, 5}, "tap 0")), "16x7x5");
  EXPECT_ERROR(DetectActivationShape({1, 2, 3, 4}, "tap 3").status(),
               absl::StatusCode::kInvalidArgument, "tap 3: activations of 4 dimensions");
  EXPECT_ERROR(DetectActivationShape({0, 4}, "tap 1").status(),
               absl::StatusCode::kInvalidArgument, "tap 1: empty activation");
  EXPECT_FALSE(ParseActivationShape("vector:0").ok());
  EXPECT_FALSE(ParseActivationShape("3x4").ok());
  EXPECT_FALSE(ParseActivationShape("tokens:3x4x5").ok());
}

}  // namespace
}  // namespace gati
