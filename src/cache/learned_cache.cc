// LearnedCache: validation of trained weights and the per-request lookup.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cache/feature_kinds.h"
#include "cache/kernels.h"
#include "gati/cache.h"

namespace gati {
namespace {

// The variant's features of an activation (after its projection, if any,
// with `channels` planes), through its kind's own pooling.
void PoolFeatures(const VariantSpec& variant, const ActivationShape& shape, const float* input,
                  int64_t channels, float* features) {
  cache_internal::KindOf(variant.pool_kind).pool(variant, shape, input, channels, features);
}
using cache_internal::ArgMax;
using cache_internal::Conv1x1Relu;
using cache_internal::DenseTransposed;
using cache_internal::ReluInPlace;

std::vector<float> Transpose(const DenseLayer& layer) {
  std::vector<float> transposed(layer.weight.size());
  for (int64_t o = 0; o < layer.out; ++o) {
    for (int64_t i = 0; i < layer.in; ++i) {
      transposed[i * layer.out + o] = layer.weight[o * layer.in + i];
    }
  }
  return transposed;
}

absl::Status CheckLayer(const DenseLayer& layer, int64_t want_in,
                        const std::string& what) {
  if (layer.in != want_in || layer.out < 1 ||
      layer.weight.size() != static_cast<size_t>(layer.in * layer.out) ||
      layer.bias.size() != static_cast<size_t>(layer.out)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": expected ", want_in, " inputs, has in=", layer.in,
        " out=", layer.out, " with ", layer.weight.size(), " weights and ",
        layer.bias.size(), " biases"));
  }
  for (float value : layer.weight) {
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(what + ": non-finite weight");
    }
  }
  for (float value : layer.bias) {
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(what + ": non-finite bias");
    }
  }
  return absl::OkStatus();
}

// Scratch buffer reused by every lookup on this thread.
float* Scratch(int64_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < static_cast<size_t>(floats)) buffer.resize(floats);
  return buffer.data();
}

}  // namespace

void SelectorFeatures(const float* logits, int num_classes, float* out) {
  float max_logit = logits[ArgMax(logits, num_classes)];
  double total = 0;
  for (int k = 0; k < num_classes; ++k) total += std::exp(logits[k] - max_logit);
  float top[3] = {0, 0, 0};
  double entropy = 0;
  for (int k = 0; k < num_classes; ++k) {
    float p = static_cast<float>(std::exp(logits[k] - max_logit) / total);
    if (p > 0) entropy -= p * std::log(static_cast<double>(p));
    if (p > top[2]) {
      top[2] = p;
      if (top[2] > top[1]) std::swap(top[1], top[2]);
      if (top[1] > top[0]) std::swap(top[0], top[1]);
    }
  }
  out[0] = top[0];
  out[1] = top[1];
  out[2] = top[2];
  out[3] = top[0] - top[1];
  out[4] = static_cast<float>(entropy);
}

LearnedCache::LearnedCache(CacheWeights weights) : weights_(std::move(weights)) {
  for (const DenseLayer& layer : weights_.predictor) {
    predictor_transposed_.push_back(Transpose(layer));
    predictor_widest_ = std::max(predictor_widest_, layer.out);
  }
  if (weights_.variant.streams()) conv_transposed_ = Transpose(weights_.conv);
  const ActivationShape& shape = weights_.shape;
  // Scratch layout: two ping-pong layer buffers, pooled features, conv
  // planes, logits.
  features_offset_ = 2 * predictor_widest_;
  conv_offset_ = features_offset_ + FeatureSize(weights_.variant, shape);
  logits_offset_ = conv_offset_ + (weights_.variant.streams()
                                       ? weights_.variant.conv_channels *
                                             shape.height * shape.width
                                       : 0);
  scratch_floats_ = logits_offset_ + weights_.num_classes;
}

absl::StatusOr<std::unique_ptr<LearnedCache>> LearnedCache::Create(
    CacheWeights weights) {
  const std::string where = absl::StrCat("cache ", weights.variant.name,
                                         " at tap ", weights.tap);
  const ActivationShape& shape = weights.shape;
  if (shape.channels < 1 || shape.height < 1 || shape.width < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": bad activation shape ",
                     ActivationShapeToString(shape)));
  }
  if (shape.width > cache_internal::kMaxPoolWidth ||
      weights.variant.pool > cache_internal::kMaxPool) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": activations wider than ", cache_internal::kMaxPoolWidth,
        " or pools over ", cache_internal::kMaxPool, " bins per side are not supported"));
  }
  if (weights.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": needs at least 2 classes"));
  }
  if (!VariantFits(weights.variant, shape)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": the variant does not fit activations of shape ",
        ActivationShapeToString(shape), " (they take ", VariantsThatFit(shape.layout), ")"));
  }
  if (weights.variant.streams()) {
    GATI_RETURN_IF_ERROR(
        CheckLayer(weights.conv, shape.channels, where + " conv"));
    if (weights.conv.out != weights.variant.conv_channels) {
      return absl::InvalidArgumentError(where + ": conv channels differ from the variant");
    }
  }
  if (weights.predictor.size() != weights.variant.hidden.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": has ", weights.predictor.size(), " predictor layers, variant needs ",
        weights.variant.hidden.size() + 1));
  }
  int64_t width = FeatureSize(weights.variant, shape);
  if (!weights.predictor.empty() && weights.variant.pool_kind == PoolKind::kAverage &&
      weights.predictor[0].in != width &&
      weights.predictor[0].in ==
          (weights.variant.streams() ? weights.variant.conv_channels : shape.channels) *
              weights.variant.pool * weights.variant.pool) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": made before average pools took at most as many bins as the ",
        ActivationShapeToString(shape), " tap has positions (", weights.predictor[0].in,
        " features, now ", width, "); rebuild the bundle"));
  }
  for (size_t l = 0; l < weights.predictor.size(); ++l) {
    GATI_RETURN_IF_ERROR(CheckLayer(weights.predictor[l], width,
                                    absl::StrCat(where, " predictor layer ", l)));
    width = weights.predictor[l].out;
    int64_t want = l < weights.variant.hidden.size()
                       ? weights.variant.hidden[l]
                       : weights.num_classes;
    if (width != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " predictor layer ", l, ": has ", width, " outputs, needs ", want));
    }
  }
  if (weights.selector.empty()) {
    return absl::InvalidArgumentError(where + ": has no selector");
  }
  width = kSelectorInputs;
  for (size_t l = 0; l < weights.selector.size(); ++l) {
    GATI_RETURN_IF_ERROR(CheckLayer(weights.selector[l], width,
                                    absl::StrCat(where, " selector layer ", l)));
    width = weights.selector[l].out;
    if (width > kMaxSelectorWidth) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " selector layer ", l, ": wider than ", kMaxSelectorWidth));
    }
  }
  if (width != 1) {
    return absl::InvalidArgumentError(where + ": selector must end in one output");
  }
  if (!std::isfinite(weights.threshold)) {
    return absl::InvalidArgumentError(where + ": non-finite threshold");
  }
  return std::unique_ptr<LearnedCache>(new LearnedCache(std::move(weights)));
}

void LearnedCache::PredictFromFeatures(const float* features,
                                       float* logits) const {
  float* scratch = Scratch(scratch_floats_);
  float* buffers[2] = {scratch, scratch + predictor_widest_};
  const float* x = features;
  const size_t layers = weights_.predictor.size();
  for (size_t l = 0; l < layers; ++l) {
    const DenseLayer& layer = weights_.predictor[l];
    float* y = l + 1 == layers ? logits : buffers[l % 2];
    DenseTransposed(x, layer.in, layer.out, predictor_transposed_[l].data(),
                    layer.bias.data(), y);
    if (l + 1 < layers) ReluInPlace(y, layer.out);
    x = y;
  }
}

void LearnedCache::Predict(const float* activation, float* logits) const {
  const ActivationShape& shape = weights_.shape;
  const VariantSpec& variant = weights_.variant;
  float* scratch = Scratch(scratch_floats_);
  float* features = scratch + features_offset_;
  const float* pool_input = activation;
  int64_t channels = shape.channels;
  if (variant.streams()) {
    float* planes = scratch + conv_offset_;
    Conv1x1Relu(activation, shape.channels, shape.height * shape.width,
                variant.conv_channels, conv_transposed_.data(),
                weights_.conv.bias.data(), planes);
    pool_input = planes;
    channels = variant.conv_channels;
  }
  PoolFeatures(variant, shape, pool_input, channels, features);
  PredictFromFeatures(features, logits);
}

float LearnedCache::SelectorScore(const float* logits) const {
  float input[kSelectorInputs];
  SelectorFeatures(logits, weights_.num_classes, input);
  float buffers[2][kMaxSelectorWidth];
  const float* x = input;
  const size_t layers = weights_.selector.size();
  float out = 0;
  for (size_t l = 0; l < layers; ++l) {
    const DenseLayer& layer = weights_.selector[l];
    float* y = l + 1 == layers ? &out : buffers[l % 2];
    // Row-major dot products: the selector is tiny.
    for (int64_t o = 0; o < layer.out; ++o) {
      float sum = layer.bias[o];
      for (int64_t i = 0; i < layer.in; ++i) {
        sum += layer.weight[o * layer.in + i] * x[i];
      }
      y[o] = l + 1 < layers ? std::max(sum, 0.0f) : sum;
    }
    x = y;
  }
  return 1.0f / (1.0f + std::exp(-out));
}

LookupResult LearnedCache::Lookup(const float* activation,
                                  float* probabilities) const {
  float* logits = Scratch(scratch_floats_) + logits_offset_;
  Predict(activation, logits);
  LookupResult result;
  result.label = ArgMax(logits, weights_.num_classes);
  result.score = SelectorScore(logits);
  result.hit = weights_.enabled && result.score >= weights_.threshold;
  if (probabilities != nullptr) {
    float max_logit = logits[result.label];
    float total = 0;
    for (int k = 0; k < weights_.num_classes; ++k) {
      probabilities[k] = std::exp(logits[k] - max_logit);
      total += probabilities[k];
    }
    for (int k = 0; k < weights_.num_classes; ++k) probabilities[k] /= total;
  }
  return result;
}

void LearnedCache::LookupBatch(int64_t n, const float* activations, LookupResult* results,
                               float* probabilities) const {
  const int64_t row = weights_.shape.size();
  const int classes = weights_.num_classes;
  for (int64_t i = 0; i < n; ++i) {
    results[i] = Lookup(activations + i * row,
                        probabilities != nullptr ? probabilities + i * classes : nullptr);
  }
}

int64_t LearnedCache::training_input_size() const {
  return weights_.variant.streams() ? weights_.shape.size()
                                    : FeatureSize(weights_.variant, weights_.shape);
}

void LearnedCache::ExtractTrainingInput(const float* activation,
                                        float* out) const {
  const ActivationShape& shape = weights_.shape;
  if (weights_.variant.streams()) {
    std::copy(activation, activation + shape.size(), out);
    return;
  }
  PoolFeatures(weights_.variant, shape, activation, shape.channels, out);
}

void LearnedCache::PredictFromTrainingInput(const float* input,
                                            float* logits) const {
  if (weights_.variant.streams()) {
    Predict(input, logits);
  } else {
    PredictFromFeatures(input, logits);
  }
}

int64_t LearnedCache::memory_bytes() const {
  int64_t floats = scratch_floats_;
  auto add = [&floats](const DenseLayer& layer) {
    floats += 2 * static_cast<int64_t>(layer.weight.size()) + layer.bias.size();
  };
  add(weights_.conv);
  for (const DenseLayer& layer : weights_.predictor) add(layer);
  for (const DenseLayer& layer : weights_.selector) add(layer);
  return floats * static_cast<int64_t>(sizeof(float));
}

double MedianLookupMicros(const LearnedCache& cache, int repetitions, uint64_t seed,
                          int warmup) {
  return MedianBatchLookupMicros(cache, 1, repetitions, seed, warmup);
}

double MedianBatchLookupMicros(const LearnedCache& cache, int64_t batch, int repetitions,
                               uint64_t seed, int warmup) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  const int64_t row = cache.weights().shape.size();
  std::vector<float> activations(std::max<int64_t>(batch, 1) * row);
  for (float& value : activations) value = uniform(rng);
  std::vector<LookupResult> results(std::max<int64_t>(batch, 1));
  std::vector<double> micros;
  for (int r = 0; r < repetitions + warmup; ++r) {
    const auto start = std::chrono::steady_clock::now();
    if (batch <= 1) {
      results[0] = cache.Lookup(activations.data());
    } else {
      cache.LookupBatch(batch, activations.data(), results.data());
    }
    const auto end = std::chrono::steady_clock::now();
    if (results[0].label < 0) break;  // Keeps the call from being optimized out.
    if (r >= warmup) micros.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }
  if (micros.empty()) return 0;
  // The nearest-rank median, as gati::Percentile(…, 0.5) takes it.
  const size_t index = (micros.size() + 1) / 2 - 1;
  std::nth_element(micros.begin(), micros.begin() + index, micros.end());
  return micros[index];
}

}  // namespace gati
