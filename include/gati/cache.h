// A learned cache at one tap: predictor (features -> class scores), selector
// (predictor output -> probability that the predictor agrees with the base
// model) and a calibrated threshold. This header holds the trained object and
// its per-request lookup; training lives in gati/build.h.
//
// Layouts, stated once: an activation of one input is a C-order float array
// of shape [C, H, W] (a 2-D [batch, D] activation is taken as [D, 1, 1]);
// component (c, y, x) is at activation[c * H * W + y * W + x]. Token
// activations ([batch, L, D], a transformer's) keep the model's token-major
// order: feature d of token t is at activation[t * D + d]; their
// ActivationShape has layout kTokens, channels = D, height = L. A dense layer
// maps in -> out with weight [out, in] row-major: y[o] = bias[o] +
// sum_i weight[o * in + i] * x[i].
#ifndef GATI_CACHE_H_
#define GATI_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gati/status.h"

namespace gati {

// A predictor variant, made from a spec string such as "pool4:mlp256":
//   [conv1x1-N:]POOL:HEAD
// POOL is `gap` (global average pool, C values) or `poolK` (adaptive K x K
// average pool, C*K*K values); HEAD is `linear` or `mlpW` (one hidden ReLU
// layer of width W). `conv1x1-N:` puts a trainable 1x1 convolution with N
// output channels and a ReLU on the raw activation before pooling; such a
// variant trains on streamed activations instead of stored features.
// How a variant pools an activation into features.
enum class PoolKind {
  kAverage,        // gap / poolK: K x K average pool of [C, H, W].
  kTokenMean,      // tok-mean: the mean over tokens (D values).
  kFirstToken,     // cls: the first token (D values).
  kTokenMeanMax,   // tok-meanmax: mean and max over tokens (2 D values).
};

// Token variants: tok-mean:HEAD, cls:HEAD and tok-meanmax:HEAD pool a
// [L, D] token activation (no conv1x1 prefix); the others pool [C, H, W].
struct VariantSpec {
  std::string name;            // The canonical spec string.
  PoolKind pool_kind = PoolKind::kAverage;
  int pool = 1;                // K of the K x K average pool; 1 = global.
  int conv_channels = 0;       // Output channels of the 1x1 conv; 0 = none.
  std::vector<int> hidden;     // Hidden widths; empty = linear.
  std::string description;     // One line for help texts.

  // True when the variant needs raw activations (not pooled features).
  bool streams() const { return conv_channels > 0; }
  bool pools_tokens() const { return pool_kind != PoolKind::kAverage; }
  // One key per distinct pooling (features computed once per tap and key).
  int pool_key() const { return pools_tokens() ? -static_cast<int>(pool_kind) : pool; }
};

// The registry: looks `spec` up among the known variants. InvalidArgument
// listing the known specs otherwise.
absl::StatusOr<VariantSpec> ParseVariantSpec(const std::string& spec);
// Every spec the registry knows, in a stable order.
const std::vector<VariantSpec>& KnownVariants();
// The variants `gati build` trains when none are named, for C x H x W taps
// and for token taps.
std::vector<std::string> DefaultVariantSpecs();
std::vector<std::string> DefaultTokenVariantSpecs();

// How one input's activation at a tap is laid out.
enum class ActivationLayout {
  kChannels,  // [C, H, W] (also [D] as [D, 1, 1]).
  kTokens,    // [L, D] token-major: channels = D, height = L, width = 1.
};

// Shape of one input's activation at a tap.
struct ActivationShape {
  int64_t channels = 0;
  int64_t height = 1;
  int64_t width = 1;
  ActivationLayout layout = ActivationLayout::kChannels;
  int64_t size() const { return channels * height * width; }
  bool operator==(const ActivationShape& other) const {
    return channels == other.channels && height == other.height &&
           width == other.width && layout == other.layout;
  }
};

// "CxHxW", or "tokens:LxD", for messages and manifests.
std::string ActivationShapeToString(const ActivationShape& shape);
// Whether `variant` can pool activations of `shape`'s layout: token
// variants need tokens; average pools need C x H x W (a token tap takes
// none of them, since its "H" is the token axis).
bool VariantFits(const VariantSpec& variant, const ActivationShape& shape);

// Number of pooled features the variant's first dense layer reads.
int64_t FeatureSize(const VariantSpec& variant, const ActivationShape& shape);

struct DenseLayer {
  int64_t in = 0;
  int64_t out = 0;
  std::vector<float> weight;  // [out, in] row-major.
  std::vector<float> bias;    // [out].
};

// Selector inputs computed from the predictor's logits: the 3 largest
// softmax probabilities (descending), margin (p1 - p2) and entropy (nats).
inline constexpr int kSelectorInputs = 5;
// Writes kSelectorInputs values to `out`. REQUIRES: num_classes >= 2.
void SelectorFeatures(const float* logits, int num_classes, float* out);

// Widest selector layer a cache may have.
inline constexpr int kMaxSelectorWidth = 64;

// Everything that defines a trained cache; what the bundle stores.
struct CacheWeights {
  VariantSpec variant;
  int tap = 0;
  ActivationShape shape;
  int num_classes = 0;
  // The 1x1 convolution as a dense layer over channels (in = C, out = N);
  // empty unless variant.streams().
  DenseLayer conv;
  // Predictor layers; ReLU between consecutive layers, none after the last.
  std::vector<DenseLayer> predictor;
  // Selector layers over the kSelectorInputs; ReLU between, sigmoid at the
  // end (the last layer has out = 1).
  std::vector<DenseLayer> selector;
  // A lookup hits when the selector score >= threshold. false = the
  // calibration found no threshold that keeps the bound (never hits).
  bool enabled = false;
  float threshold = 1.0f;
};

struct LookupResult {
  bool hit = false;
  int label = -1;      // The predictor's class (also reported on a miss).
  float score = 0.0f;  // The selector's probability of agreement.
};

// A trained, validated cache. Immutable; Lookup and friends are thread-safe
// and allocate nothing after the first call on a thread.
class LearnedCache {
 public:
  // Validates that the layer sizes chain (conv, pooling, predictor, selector)
  // and match the variant, shape and class count; InvalidArgument naming the
  // first mismatch otherwise.
  static absl::StatusOr<std::unique_ptr<LearnedCache>> Create(
      CacheWeights weights);

  // The per-request path on one activation (layout above): features,
  // predictor, selector, threshold. When `probabilities` is not null it
  // receives num_classes softmax probabilities of the predictor.
  LookupResult Lookup(const float* activation,
                      float* probabilities = nullptr) const;

  // Predictor logits (num_classes values) for one activation.
  void Predict(const float* activation, float* logits) const;
  // Predictor logits from already pooled features (FeatureSize values).
  // REQUIRES: !variant.streams().
  void PredictFromFeatures(const float* features, float* logits) const;
  // Selector score for the predictor's logits.
  float SelectorScore(const float* logits) const;

  // What the online learner stores per request and trains on: the pooled
  // features (FeatureSize values) for pooled variants; for conv variants,
  // whose trainable convolution runs before pooling, the whole activation.
  // This is the `input` layout of PredictorTrainer::Step, flattened.
  int64_t training_input_size() const;
  void ExtractTrainingInput(const float* activation, float* out) const;
  // Predictor logits from a training input (num_classes values).
  void PredictFromTrainingInput(const float* input, float* logits) const;

  const CacheWeights& weights() const { return weights_; }
  int num_classes() const { return weights_.num_classes; }
  // Bytes of parameters plus per-thread scratch a lookup needs.
  int64_t memory_bytes() const;

 private:
  explicit LearnedCache(CacheWeights weights);
  CacheWeights weights_;
  // Weights transposed to [in, out] for kernels that vectorize over `out`.
  std::vector<std::vector<float>> predictor_transposed_;
  std::vector<float> conv_transposed_;
  int64_t predictor_widest_ = 0;
  // Offsets into the per-thread scratch buffer (floats).
  int64_t features_offset_ = 0;
  int64_t conv_offset_ = 0;
  int64_t logits_offset_ = 0;
  int64_t scratch_floats_ = 0;
};

// Median wall time (µs) of `cache`'s Lookup on an activation of uniform
// random values seeded by `seed`, over `repetitions` timed calls after
// `warmup` untimed ones; what the build profiles and the engine decides
// inline lookups by. REQUIRES: repetitions >= 1.
double MedianLookupMicros(const LearnedCache& cache, int repetitions, uint64_t seed,
                          int warmup = 20);

}  // namespace gati

#endif  // GATI_CACHE_H_
