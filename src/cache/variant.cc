// The registry of predictor variants and the spec-string grammar.
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gati/cache.h"

namespace gati {
namespace {

// Parses "[conv1x1-N:]POOL:HEAD"; nullopt-like error string on failure.
absl::StatusOr<VariantSpec> ParseGrammar(const std::string& spec) {
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  VariantSpec variant;
  variant.name = spec;
  size_t next = 0;
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("variant '", spec, "': ", why));
  };
  if (parts.size() == 3) {
    absl::string_view conv = parts[0];
    int channels = 0;
    if (!absl::ConsumePrefix(&conv, "conv1x1-") ||
        !absl::SimpleAtoi(conv, &channels) || channels < 1) {
      return bad("expected conv1x1-N before the pooling");
    }
    variant.conv_channels = channels;
    next = 1;
  } else if (parts.size() != 2) {
    return bad("expected [conv1x1-N:]POOL:HEAD");
  }
  absl::string_view pool = parts[next];
  if (pool == "tok-mean" || pool == "cls" || pool == "tok-meanmax") {
    if (variant.streams()) return bad("token pools take no conv1x1 prefix");
    variant.pool_kind = pool == "tok-mean" ? PoolKind::kTokenMean
                        : pool == "cls"    ? PoolKind::kFirstToken
                                           : PoolKind::kTokenMeanMax;
  } else if (pool == "gap") {
    variant.pool = 1;
  } else if (!absl::ConsumePrefix(&pool, "pool") ||
             !absl::SimpleAtoi(pool, &variant.pool) || variant.pool < 1) {
    return bad("pooling must be gap, poolK, tok-mean, cls or tok-meanmax");
  }
  absl::string_view head = parts[next + 1];
  if (head != "linear") {
    int width = 0;
    if (!absl::ConsumePrefix(&head, "mlp") || !absl::SimpleAtoi(head, &width) ||
        width < 1) {
      return bad("head must be linear or mlpW");
    }
    variant.hidden = {width};
  }
  return variant;
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

std::vector<std::string> DefaultVariantSpecs() {
  return {"gap:linear", "gap:mlp64", "pool2:mlp128", "pool4:mlp256",
          "conv1x1-8:pool4:linear"};
}

std::vector<std::string> DefaultTokenVariantSpecs() {
  return {"tok-mean:linear", "tok-mean:mlp64", "cls:linear", "cls:mlp64",
          "tok-meanmax:mlp128"};
}

bool VariantFits(const VariantSpec& variant, const ActivationShape& shape) {
  return variant.pools_tokens() == (shape.layout == ActivationLayout::kTokens);
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
  if (shape.layout == ActivationLayout::kTokens) {
    return absl::StrCat("tokens:", shape.height, "x", shape.channels);
  }
  return absl::StrCat(shape.channels, "x", shape.height, "x", shape.width);
}

int64_t FeatureSize(const VariantSpec& variant, const ActivationShape& shape) {
  switch (variant.pool_kind) {
    case PoolKind::kTokenMean:
    case PoolKind::kFirstToken:
      return shape.channels;
    case PoolKind::kTokenMeanMax:
      return 2 * shape.channels;
    case PoolKind::kAverage:
      break;
  }
  int64_t channels = variant.streams() ? variant.conv_channels : shape.channels;
  return channels * variant.pool * variant.pool;
}

}  // namespace gati
