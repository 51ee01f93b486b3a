// The plain lookup kernels must give the answers LibTorch gives for the same
// weights: same class, same hit decision, scores equal to float rounding.
#include <gtest/gtest.h>
#include <torch/script.h>

#include "cache/cache_testutil.h"
#include "cache/head_trainer.h"
#include "cache/kernels.h"
#include "cache/feature_kinds.h"
#include "gati/cache.h"

namespace gati {
namespace {

at::Tensor RandomActivations(int64_t batch, const ActivationShape& shape, int seed) {
  at::manual_seed(seed);
  return at::relu(at::randn({batch, shape.channels, shape.height, shape.width}));
}

TEST(LookupPathTest, PoolingMatchesAdaptiveAvgPool) {
  for (ActivationShape shape : {ActivationShape{16, 28, 28}, ActivationShape{64, 7, 7},
                                ActivationShape{3, 5, 9}, ActivationShape{8, 1, 1}}) {
    at::Tensor x = RandomActivations(1, shape, 3);
    for (auto [kh, kw] : {std::pair{1, 1}, {2, 2}, {4, 4}, {1, 3}, {3, 2}}) {
      at::Tensor want = at::adaptive_avg_pool2d(x, {kh, kw}).flatten();
      std::vector<float> got(shape.channels * kh * kw);
      cache_internal::AdaptiveAvgPool(x.data_ptr<float>(), shape.channels,
                                      shape.height, shape.width, kh, kw, got.data());
      for (int64_t i = 0; i < want.numel(); ++i) {
        EXPECT_NEAR(got[i], want[i].item<float>(), 1e-5)
            << ActivationShapeToString(shape) << " k=" << kh << "x" << kw << " i=" << i;
      }
    }
  }
}

// LibTorch's own pooling of [B, C, H, W] activations as the variant reads
// them: average pools of at most H x W bins; a vector as it is.
at::Tensor TorchPool(const at::Tensor& x, const VariantSpec& variant, const ActivationShape& shape) {
  if (shape.layout == ActivationLayout::kVector) return x.flatten(1);
  const int64_t kh = std::min<int64_t>(variant.pool, shape.height);
  const int64_t kw = std::min<int64_t>(variant.pool, shape.width);
  return at::adaptive_avg_pool2d(x, {kh, kw}).flatten(1);
}

struct VariantCase {
  std::string spec;
  ActivationShape shape;
};

class LookupPathVariantTest : public ::testing::TestWithParam<VariantCase> {};

TEST_P(LookupPathVariantTest, PlainKernelsAgreeWithLibTorch) {
  const VariantSpec variant = *ParseVariantSpec(GetParam().spec);
  const ActivationShape shape = GetParam().shape;
  ASSERT_TRUE(VariantFits(variant, shape));
  // A briefly trained head, so weights are not symmetric random ones.
  PredictorTrainer trainer(variant, 2, shape, 10, DistillationOptions{}, 11);
  at::Tensor train_x = RandomActivations(64, shape, 1);
  at::Tensor teacher = at::randn({64, 10});
  at::Tensor train_input = variant.streams() ? train_x : TorchPool(train_x, variant, shape);
  for (int step = 0; step < 20; ++step) trainer.Step(train_input, teacher);

  CacheWeights weights = trainer.Export();
  weights.selector = testing::RandomCacheWeights("gap:linear", 2, shape, 10, 4).selector;
  weights.enabled = true;
  weights.threshold = 0.5f;
  auto cache = LearnedCache::Create(weights);
  ASSERT_TRUE(cache.ok()) << cache.status();

  at::Tensor x = RandomActivations(50, shape, 2).contiguous();
  at::Tensor input = variant.streams() ? x : TorchPool(x, variant, shape);
  if (!variant.streams()) {
    ASSERT_EQ(input.size(1), FeatureSize(variant, shape));
    // The builder's feature bank pools through the same kind as lookups.
    std::vector<float> rows(50 * FeatureSize(variant, shape));
    cache_internal::PoolRows(variant, shape, x.data_ptr<float>(), 50, rows.data());
    at::Tensor bank = at::from_blob(rows.data(), input.sizes(), at::kFloat);
    EXPECT_TRUE(at::allclose(bank, input, 1e-5, 1e-5));
  }
  at::Tensor want = trainer.Logits(input).contiguous();
  for (int64_t b = 0; b < 50; ++b) {
    float logits[10];
    (*cache)->Predict(x[b].data_ptr<float>(), logits);
    const float* expected = want[b].data_ptr<float>();
    int want_class = static_cast<int>(want[b].argmax().item<int64_t>());
    EXPECT_EQ(cache_internal::ArgMax(logits, 10), want_class);
    for (int k = 0; k < 10; ++k) EXPECT_NEAR(logits[k], expected[k], 1e-4);
    // The hit decision from the plain logits equals the one from LibTorch's.
    float score_plain = (*cache)->SelectorScore(logits);
    float score_torch = (*cache)->SelectorScore(expected);
    EXPECT_NEAR(score_plain, score_torch, 1e-5);
    LookupResult result = (*cache)->Lookup(x[b].data_ptr<float>());
    EXPECT_EQ(result.label, want_class);
    if (std::abs(score_torch - 0.5f) > 1e-4) {
      EXPECT_EQ(result.hit, score_torch >= 0.5f);
    }
    if (!variant.streams()) {
      float from_features[10];
      (*cache)->PredictFromFeatures(input[b].contiguous().data_ptr<float>(),
                                    from_features);
      for (int k = 0; k < 10; ++k) EXPECT_NEAR(from_features[k], expected[k], 1e-4);
    }
  }
}

// The streaming trainer's conv: LibTorch's conv2d and adaptive pool, as the
// lookup kernels compute them.
TEST(LookupPathTest, StreamingTrainerPoolsLikeConv2dAndAdaptivePool) {
  const VariantSpec variant = *ParseVariantSpec("conv1x1-8:pool4:linear");
  const ActivationShape shape{6, 7, 5};
  PredictorTrainer trainer(variant, 0, shape, 4, DistillationOptions{}, 3);
  const CacheWeights weights = trainer.Export();
  at::Tensor x = RandomActivations(5, shape, 9);
  at::Tensor w = at::from_blob(const_cast<float*>(weights.conv.weight.data()), {8, 6, 1, 1});
  at::Tensor bias = at::from_blob(const_cast<float*>(weights.conv.bias.data()), {8});
  at::Tensor features = at::adaptive_avg_pool2d(at::relu(at::conv2d(x, w, bias)), {4, 4}).flatten(1);
  const DenseLayer& head = weights.predictor[0];
  at::Tensor want = at::linear(
      features, at::from_blob(const_cast<float*>(head.weight.data()), {head.out, head.in}),
      at::from_blob(const_cast<float*>(head.bias.data()), {head.out}));
  EXPECT_TRUE(at::allclose(trainer.Logits(x), want, 1e-4, 1e-5));
}

std::vector<VariantCase> VariantCases() {
  std::vector<VariantCase> cases;
  for (const char* spec : {"gap:linear", "gap:mlp64", "pool2:mlp128", "pool4:mlp256",
                           "conv1x1-8:pool4:linear", "conv1x1-16:gap:mlp64"}) {
    cases.push_back({spec, ActivationShape{16, 14, 14}});
  }
  // Fewer positions than bins: pool4 of 3 x 2 is 3 x 2 bins, not 16.
  cases.push_back({"pool4:mlp256", ActivationShape{16, 3, 2}});
  cases.push_back({"conv1x1-8:pool4:linear", ActivationShape{16, 1, 3}});
  for (const char* spec : {"id:linear", "id:mlp64", "id:mlp256", "proj16:linear", "proj64:mlp64"}) {
    cases.push_back({spec, ActivationShape{24, 1, 1, ActivationLayout::kVector}});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(
    Variants, LookupPathVariantTest, ::testing::ValuesIn(VariantCases()),
    [](const ::testing::TestParamInfo<VariantCase>& info) {
      std::string name = info.param.spec + "_" + ActivationShapeToString(info.param.shape);
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

// Token taps ([L, D], token-major): the plain token pools and heads agree
// with LibTorch's mean / first token / mean-and-max over the token axis.
at::Tensor TokenPoolTorch(const at::Tensor& x, const VariantSpec& variant) {
  switch (variant.pool_kind) {
    case PoolKind::kTokenMean:
      return x.mean(1);
    case PoolKind::kFirstToken:
      return x.select(1, 0).contiguous();
    default:
      return at::cat({x.mean(1), std::get<0>(x.max(1))}, 1);
  }
}

class TokenVariantTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenVariantTest, TokenPoolsAgreeWithLibTorch) {
  const VariantSpec variant = *ParseVariantSpec(GetParam());
  const ActivationShape shape{16, 9, 1, ActivationLayout::kTokens};  // 9 tokens of 16.
  EXPECT_TRUE(VariantFits(variant, shape));
  EXPECT_FALSE(VariantFits(variant, ActivationShape{16, 9, 1}));
  EXPECT_EQ(ActivationShapeToString(shape), "tokens:9x16");
  PredictorTrainer trainer(variant, 2, shape, 10, DistillationOptions{}, 11);
  at::manual_seed(4);
  at::Tensor train_x = at::randn({64, 9, 16});
  for (int step = 0; step < 20; ++step) {
    trainer.Step(TokenPoolTorch(train_x, variant), at::randn({64, 10}));
  }
  CacheWeights weights = trainer.Export();
  EXPECT_EQ(weights.shape, shape);
  weights.selector = testing::RandomCacheWeights("gap:linear", 2, shape, 10, 4).selector;
  weights.enabled = true;
  weights.threshold = 0.5f;
  auto cache = LearnedCache::Create(weights);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ((*cache)->training_input_size(), FeatureSize(variant, shape));
  at::Tensor x = at::randn({20, 9, 16}).contiguous();
  at::Tensor want = trainer.Logits(TokenPoolTorch(x, variant)).contiguous();
  for (int64_t b = 0; b < 20; ++b) {
    float logits[10];
    (*cache)->Predict(x[b].data_ptr<float>(), logits);
    for (int k = 0; k < 10; ++k) {
      EXPECT_NEAR(logits[k], want[b][k].item<float>(), 1e-4) << "sample " << b;
    }
  }
  // A token variant does not fit a C x H x W tap, nor an average pool a
  // token tap.
  CacheWeights channels = weights;
  channels.shape = ActivationShape{16, 9, 1};
  EXPECT_FALSE(LearnedCache::Create(channels).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Tokens, TokenVariantTest,
    ::testing::Values("tok-mean:linear", "tok-mean:mlp64", "cls:linear", "cls:mlp64",
                      "tok-meanmax:mlp128"),
    [](const ::testing::TestParamInfo<std::string>& info) {
      std::string name = info.param;
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

TEST(LookupPathTest, SelectorFeaturesAreSortedProbabilitiesMarginEntropy) {
  const float logits[4] = {2.0f, 0.0f, 1.0f, -1.0f};
  float features[kSelectorInputs];
  SelectorFeatures(logits, 4, features);
  at::Tensor p = at::softmax(at::tensor({2.0f, 0.0f, 1.0f, -1.0f}), 0);
  EXPECT_NEAR(features[0], p[0].item<float>(), 1e-6);
  EXPECT_NEAR(features[1], p[2].item<float>(), 1e-6);
  EXPECT_NEAR(features[2], p[1].item<float>(), 1e-6);
  EXPECT_NEAR(features[3], (p[0] - p[2]).item<float>(), 1e-6);
  EXPECT_NEAR(features[4], -(p * p.log()).sum().item<float>(), 1e-5);
}

}  // namespace
}  // namespace gati
