// The registry of predictor variants, the spec-string grammar, and the
// table of feature kinds (cache/feature_kinds.h): one entry per kind.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cache/feature_kinds.h"
#include "cache/kernels.h"
#include "gati/cache.h"

namespace gati {
namespace cache_internal {
namespace {

// "PREFIXN" with N >= 1.
bool ParseCount(absl::string_view text, absl::string_view prefix, int* count) {
  return absl::ConsumePrefix(&text, prefix) && absl::SimpleAtoi(text, count) && *count >= 1;
}

// C x H x W: [conv1x1-N:]gap | [conv1x1-N:]poolK.
bool ParseAverage(const std::vector<absl::string_view>& parts, VariantSpec* variant,
                  std::string* why) {
  absl::string_view pool = parts.back();
  if (pool != "gap" && !absl::StartsWith(pool, "pool")) return false;
  if (parts.size() == 2 && !ParseCount(parts[0], "conv1x1-", &variant->conv_channels)) {
    *why = "expected conv1x1-N before the pooling";
    return true;
  }
  variant->pool = 1;
  if (pool != "gap" && !ParseCount(pool, "pool", &variant->pool)) {
    *why = "expected poolK with K >= 1";
  } else if (variant->pool > kMaxPool) {
    *why = absl::StrCat("pools over more than ", kMaxPool, " bins per side are not supported");
  }
  return true;
}

// At most K bins per side, and no more bins than the side has positions.
int Bins(int k, int64_t side) { return static_cast<int>(std::min<int64_t>(k, side)); }

int64_t AverageSize(const VariantSpec& variant, const ActivationShape& shape, int64_t channels) {
  return channels * Bins(variant.pool, shape.height) * Bins(variant.pool, shape.width);
}

void AveragePool(const VariantSpec& variant, const ActivationShape& shape, const float* input,
                 int64_t channels, float* output) {
  AdaptiveAvgPool(input, channels, shape.height, shape.width, Bins(variant.pool, shape.height),
                  Bins(variant.pool, shape.width), output);
}

// Tokens: one word, no prefix.
template <PoolKind kKind>
bool ParseToken(const std::vector<absl::string_view>& parts, VariantSpec* variant,
                std::string* why) {
  static constexpr const char* kName = kKind == PoolKind::kTokenMean    ? "tok-mean"
                                       : kKind == PoolKind::kFirstToken ? "cls"
                                                                        : "tok-meanmax";
  if (parts.back() != kName) return false;
  if (parts.size() != 1) *why = "token pools take no conv1x1 prefix";
  variant->pool_kind = kKind;
  return true;
}

int64_t TokenSize(const VariantSpec& variant, const ActivationShape&, int64_t channels) {
  return variant.pool_kind == PoolKind::kTokenMeanMax ? 2 * channels : channels;
}

void TokenPoolKind(const VariantSpec& variant, const ActivationShape& shape, const float* input,
                   int64_t channels, float* output) {
  TokenPool(input, shape.height, channels, variant.pool_kind == PoolKind::kFirstToken,
            variant.pool_kind == PoolKind::kTokenMeanMax, output);
}

// Vectors: id | projN.
bool ParseVector(const std::vector<absl::string_view>& parts, VariantSpec* variant,
                 std::string* why) {
  absl::string_view pool = parts.back();
  if (pool != "id" && !absl::StartsWith(pool, "proj")) return false;
  variant->pool_kind = PoolKind::kIdentity;
  if (parts.size() != 1) {
    *why = "vector pools take no prefix (projN is the projection)";
  } else if (pool != "id" && !ParseCount(pool, "proj", &variant->conv_channels)) {
    *why = "expected projN with N >= 1";
  }
  return true;
}

int64_t VectorSize(const VariantSpec&, const ActivationShape&, int64_t channels) {
  return channels;
}

void VectorPool(const VariantSpec&, const ActivationShape&, const float* input,
                int64_t channels, float* output) {
  std::copy(input, input + channels, output);
}

std::vector<FeatureKind> MakeKinds() {
  return {
      {PoolKind::kAverage, ActivationLayout::kChannels, "gap, poolK, conv1x1-N:POOL",
       ParseAverage, AverageSize, AveragePool, /*linear=*/true},
      {PoolKind::kTokenMean, ActivationLayout::kTokens, "tok-mean",
       ParseToken<PoolKind::kTokenMean>, TokenSize, TokenPoolKind, false},
      {PoolKind::kFirstToken, ActivationLayout::kTokens, "cls",
       ParseToken<PoolKind::kFirstToken>, TokenSize, TokenPoolKind, false},
      {PoolKind::kTokenMeanMax, ActivationLayout::kTokens, "tok-meanmax",
       ParseToken<PoolKind::kTokenMeanMax>, TokenSize, TokenPoolKind, false},
      {PoolKind::kIdentity, ActivationLayout::kVector, "id, projN", ParseVector,
       VectorSize, VectorPool, true},
  };
}

}  // namespace

const std::vector<FeatureKind>& FeatureKinds() {
  static const std::vector<FeatureKind>* kinds = new std::vector<FeatureKind>(MakeKinds());
  return *kinds;
}

const FeatureKind& KindOf(PoolKind kind) {
  for (const FeatureKind& entry : FeatureKinds()) {
    if (entry.kind == kind) return entry;
  }
  return FeatureKinds().front();  // Unreachable: every PoolKind has an entry.
}

void PoolRows(const VariantSpec& variant, const ActivationShape& shape, const float* input,
              int64_t rows, float* output) {
  const FeatureKind& kind = KindOf(variant.pool_kind);
  const int64_t features = kind.size(variant, shape, shape.channels);
  for (int64_t r = 0; r < rows; ++r) {
    kind.pool(variant, shape, input + r * shape.size(), shape.channels, output + r * features);
  }
}

std::vector<float> PoolingMatrix(const VariantSpec& variant, const ActivationShape& shape) {
  const FeatureKind& kind = KindOf(variant.pool_kind);
  const int64_t positions = shape.height * shape.width;
  const int64_t per_plane = kind.size(variant, shape, 1);
  std::vector<float> matrix(positions * per_plane);
  std::vector<float> unit(positions, 0.0f);
  for (int64_t p = 0; p < positions; ++p) {
    unit[p] = 1.0f;
    kind.pool(variant, shape, unit.data(), 1, matrix.data() + p * per_plane);
    unit[p] = 0.0f;
  }
  return matrix;
}

}  // namespace cache_internal

namespace {

using cache_internal::FeatureKind;
using cache_internal::FeatureKinds;
using cache_internal::KindOf;

// Parses "POOL...:HEAD" through the kinds' own grammars.
absl::StatusOr<VariantSpec> ParseGrammar(const std::string& spec) {
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("variant '", spec, "': ", why));
  };
  if (parts.size() < 2 || parts.size() > 3) return bad("expected POOL:HEAD");
  VariantSpec variant;
  variant.name = spec;
  absl::string_view head = parts.back();
  parts.pop_back();
  if (head != "linear") {
    int width = 0;
    if (!absl::ConsumePrefix(&head, "mlp") || !absl::SimpleAtoi(head, &width) || width < 1) {
      return bad("head must be linear or mlpW");
    }
    variant.hidden = {width};
  }
  std::vector<std::string> forms;
  for (const FeatureKind& kind : FeatureKinds()) {
    std::string why;
    if (kind.parse(parts, &variant, &why)) {
      if (!why.empty()) return bad(why);
      return variant;
    }
    forms.push_back(kind.grammar);
  }
  return bad(absl::StrCat("pooling must be one of: ", absl::StrJoin(forms, ", ")));
}

std::vector<VariantSpec> MakeRegistry() {
  const std::pair<const char*, const char*> entries[] = {
      {"gap:linear", "global average pool, linear layer"},
      {"gap:mlp64", "global average pool, MLP with 64 hidden units"},
      {"pool2:linear", "2x2 average pool, linear layer"},
      {"pool2:mlp128", "2x2 average pool, MLP with 128 hidden units"},
      {"pool4:linear", "4x4 average pool, linear layer"},
      {"pool4:mlp256", "4x4 average pool, MLP with 256 hidden units"},
      {"conv1x1-8:pool4:linear",
       "trainable 1x1 conv to 8 channels + ReLU, 4x4 average pool, linear"},
      {"conv1x1-16:gap:mlp64",
       "trainable 1x1 conv to 16 channels + ReLU, global average pool, MLP 64"},
      {"tok-mean:linear", "tokens: mean over tokens, linear layer"},
      {"tok-mean:mlp64", "tokens: mean over tokens, MLP with 64 hidden units"},
      {"cls:linear", "tokens: the first (class) token, linear layer"},
      {"cls:mlp64", "tokens: the first (class) token, MLP with 64 hidden units"},
      {"tok-meanmax:mlp128", "tokens: mean and max over tokens, MLP with 128 hidden units"},
      {"id:linear", "vectors: the vector itself, linear layer"},
      {"id:mlp64", "vectors: the vector itself, MLP with 64 hidden units"},
      {"id:mlp256", "vectors: the vector itself, MLP with 256 hidden units"},
      {"proj16:linear", "vectors: trainable projection to 16 + ReLU, linear layer"},
      {"proj64:mlp64", "vectors: trainable projection to 64 + ReLU, MLP with 64 hidden units"},
  };
  std::vector<VariantSpec> registry;
  for (const auto& [spec, description] : entries) {
    VariantSpec variant = *ParseGrammar(spec);
    variant.description = description;
    registry.push_back(variant);
  }
  return registry;
}

}  // namespace

const std::vector<VariantSpec>& KnownVariants() {
  static const std::vector<VariantSpec>* registry =
      new std::vector<VariantSpec>(MakeRegistry());
  return *registry;
}

std::vector<std::string> DefaultVariantSpecsFor(ActivationLayout layout) {
  switch (layout) {
    case ActivationLayout::kTokens:
      return {"tok-mean:linear", "tok-mean:mlp64", "cls:linear", "cls:mlp64",
              "tok-meanmax:mlp128"};
    case ActivationLayout::kVector:
      return {"id:linear", "id:mlp64", "id:mlp256", "proj16:linear"};
    case ActivationLayout::kChannels:
      break;
  }
  return {"gap:linear", "gap:mlp64", "pool2:mlp128", "pool4:mlp256", "conv1x1-8:pool4:linear"};
}

std::vector<std::string> DefaultVariantSpecs() {
  return DefaultVariantSpecsFor(ActivationLayout::kChannels);
}

bool VariantFits(const VariantSpec& variant, const ActivationShape& shape) {
  return KindOf(variant.pool_kind).layout == shape.layout;
}

std::string VariantsThatFit(ActivationLayout layout) {
  std::vector<std::string> forms;
  for (const FeatureKind& kind : FeatureKinds()) {
    if (kind.layout == layout) forms.push_back(kind.grammar);
  }
  return absl::StrJoin(forms, ", ");
}

absl::StatusOr<VariantSpec> ParseVariantSpec(const std::string& spec) {
  std::vector<std::string> names;
  for (const VariantSpec& variant : KnownVariants()) {
    if (variant.name == spec) return variant;
    names.push_back(variant.name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown variant '", spec, "'; known: ", absl::StrJoin(names, ", ")));
}

std::string ActivationShapeToString(const ActivationShape& shape) {
  switch (shape.layout) {
    case ActivationLayout::kTokens:
      return absl::StrCat("tokens:", shape.height, "x", shape.channels);
    case ActivationLayout::kVector:
      return absl::StrCat("vector:", shape.channels);
    case ActivationLayout::kChannels:
      break;
  }
  return absl::StrCat(shape.channels, "x", shape.height, "x", shape.width);
}

absl::StatusOr<ActivationShape> ParseActivationShape(const std::string& text) {
  int64_t a = 0, b = 0, c = 0;
  char rest = 0;
  ActivationShape shape;
  if (std::sscanf(text.c_str(), "tokens:%ldx%ld%c", &a, &b, &rest) == 2) {
    shape = {b, a, 1, ActivationLayout::kTokens};
  } else if (std::sscanf(text.c_str(), "vector:%ld%c", &a, &rest) == 1) {
    shape = {a, 1, 1, ActivationLayout::kVector};
  } else if (std::sscanf(text.c_str(), "%ldx%ldx%ld%c", &a, &b, &c, &rest) == 3) {
    shape = {a, b, c};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("activation shape '", text, "' is not CxHxW, tokens:LxD or vector:D"));
  }
  if (shape.channels < 1 || shape.height < 1 || shape.width < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation shape '", text, "' has an empty dimension"));
  }
  return shape;
}

absl::StatusOr<ActivationShape> DetectActivationShape(const std::vector<int64_t>& dims,
                                                      const std::string& where) {
  ActivationShape shape;
  switch (dims.size()) {
    case 1:
      shape = {dims[0], 1, 1, ActivationLayout::kVector};
      break;
    case 2:  // [L, D]: tokens (a transformer's), token-major.
      shape = {dims[1], dims[0], 1, ActivationLayout::kTokens};
      break;
    case 3:
      shape = {dims[0], dims[1], dims[2]};
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": activations of ", dims.size(),
          " dimensions per input are not supported (a vector [D], tokens [L, D] or "
          "channels [C, H, W])"));
  }
  if (shape.channels < 1 || shape.height < 1 || shape.width < 1) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": empty activation"));
  }
  return shape;
}

int64_t FeatureSize(const VariantSpec& variant, const ActivationShape& shape) {
  return KindOf(variant.pool_kind)
      .size(variant, shape, variant.streams() ? variant.conv_channels : shape.channels);
}

}  // namespace gati
