// Random but well-formed cache weights for tests that need a cache without
// training one.
#ifndef GATI_TESTS_CACHE_CACHE_TESTUTIL_H_
#define GATI_TESTS_CACHE_CACHE_TESTUTIL_H_

#include <cmath>
#include <random>
#include <string>

#include "gati/cache.h"

namespace gati::testing {

inline DenseLayer RandomLayer(int64_t in, int64_t out, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1, 1);
  DenseLayer layer;
  layer.in = in;
  layer.out = out;
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  for (int64_t i = 0; i < in * out; ++i) layer.weight.push_back(bound * uniform(rng));
  for (int64_t i = 0; i < out; ++i) layer.bias.push_back(bound * uniform(rng));
  return layer;
}

inline CacheWeights RandomCacheWeights(const std::string& spec, int tap,
                                       ActivationShape shape, int num_classes,
                                       uint32_t seed) {
  std::mt19937 rng(seed);
  CacheWeights weights;
  weights.variant = *ParseVariantSpec(spec);
  weights.tap = tap;
  weights.shape = shape;
  weights.num_classes = num_classes;
  if (weights.variant.streams()) {
    weights.conv = RandomLayer(shape.channels, weights.variant.conv_channels, rng);
  }
  int64_t width = FeatureSize(weights.variant, shape);
  for (int hidden : weights.variant.hidden) {
    weights.predictor.push_back(RandomLayer(width, hidden, rng));
    width = hidden;
  }
  weights.predictor.push_back(RandomLayer(width, num_classes, rng));
  weights.selector = {RandomLayer(kSelectorInputs, 16, rng), RandomLayer(16, 1, rng)};
  weights.enabled = true;
  weights.threshold = 0.5f;
  return weights;
}

inline std::vector<float> RandomActivation(const ActivationShape& shape,
                                           uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(0, 2);
  std::vector<float> activation(shape.size());
  for (float& value : activation) value = std::max(0.0f, uniform(rng) - 0.5f);
  return activation;
}

}  // namespace gati::testing

#endif  // GATI_TESTS_CACHE_CACHE_TESTUTIL_H_
