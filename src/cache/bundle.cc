// Bundle manifest, weight files and atomic bundle writes.
#include "gati/bundle.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "data/file_io.h"
#include "data/safetensors.h"

namespace gati {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

FloatTensor ToTensor(const std::vector<float>& data, std::vector<int64_t> shape) {
  return FloatTensor{std::move(shape), data};
}

void AddLayer(const std::string& prefix, const DenseLayer& layer, TensorFile* file) {
  file->tensors[prefix + ".weight"] = ToTensor(layer.weight, {layer.out, layer.in});
  file->tensors[prefix + ".bias"] = ToTensor(layer.bias, {layer.out});
}

absl::StatusOr<DenseLayer> TakeLayer(const std::string& prefix, TensorFile* file,
                                     const std::string& source) {
  auto weight = file->tensors.find(prefix + ".weight");
  auto bias = file->tensors.find(prefix + ".bias");
  if (weight == file->tensors.end() || bias == file->tensors.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": missing tensors of ", prefix));
  }
  if (weight->second.shape.size() != 2 || bias->second.shape.size() != 1 ||
      bias->second.shape[0] != weight->second.shape[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": tensors of ", prefix, " have mismatched shapes"));
  }
  DenseLayer layer;
  layer.out = weight->second.shape[0];
  layer.in = weight->second.shape[1];
  layer.weight = std::move(weight->second.data);
  layer.bias = std::move(bias->second.data);
  file->tensors.erase(weight);
  file->tensors.erase(bias);
  return layer;
}

absl::StatusOr<std::string> SerializeWeights(const CacheWeights& weights) {
  TensorFile file;
  file.metadata = {{"format", "gati-cache"},
                   {"variant", weights.variant.name},
                   {"tap", std::to_string(weights.tap)},
                   {"activation_shape", ActivationShapeToString(weights.shape)},
                   {"num_classes", std::to_string(weights.num_classes)}};
  if (weights.variant.streams()) AddLayer("conv", weights.conv, &file);
  for (size_t l = 0; l < weights.predictor.size(); ++l) {
    AddLayer(absl::StrCat("predictor.", l), weights.predictor[l], &file);
  }
  for (size_t l = 0; l < weights.selector.size(); ++l) {
    AddLayer(absl::StrCat("selector.", l), weights.selector[l], &file);
  }
  return SerializeSafetensors(file);
}

// Rebuilds the weights of `entry` from its file's bytes.
absl::StatusOr<CacheWeights> ParseWeights(const std::string& bytes,
                                          const CacheEntry& entry,
                                          const std::string& source) {
  GATI_ASSIGN_OR_RETURN(TensorFile file, ParseSafetensors(bytes, source));
  auto bad = [&source](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", why));
  };
  CacheWeights weights;
  GATI_ASSIGN_OR_RETURN(weights.variant, ParseVariantSpec(entry.variant));
  weights.tap = entry.tap;
  if (file.metadata["variant"] != entry.variant ||
      file.metadata["tap"] != std::to_string(entry.tap)) {
    return bad("holds variant '" + file.metadata["variant"] + "' at tap " +
               file.metadata["tap"] + ", the manifest expects '" +
               entry.variant + "' at tap " + std::to_string(entry.tap));
  }
  absl::StatusOr<ActivationShape> shape =
      ParseActivationShape(file.metadata["activation_shape"]);
  if (!shape.ok()) return bad(std::string(shape.status().message()));
  weights.shape = *shape;
  try {
    weights.num_classes = std::stoi(file.metadata["num_classes"]);
  } catch (const std::exception&) {
    return bad("bad num_classes metadata");
  }
  if (weights.variant.streams()) {
    GATI_ASSIGN_OR_RETURN(weights.conv, TakeLayer("conv", &file, source));
  }
  for (size_t l = 0; l <= weights.variant.hidden.size(); ++l) {
    GATI_ASSIGN_OR_RETURN(DenseLayer layer,
                          TakeLayer(absl::StrCat("predictor.", l), &file, source));
    weights.predictor.push_back(std::move(layer));
  }
  for (size_t l = 0; file.tensors.count(absl::StrCat("selector.", l, ".weight"));
       ++l) {
    GATI_ASSIGN_OR_RETURN(DenseLayer layer,
                          TakeLayer(absl::StrCat("selector.", l), &file, source));
    weights.selector.push_back(std::move(layer));
  }
  if (!file.tensors.empty()) {
    return bad("unexpected tensor '" + file.tensors.begin()->first + "'");
  }
  weights.enabled = entry.enabled;
  weights.threshold = entry.threshold;
  return weights;
}

// Field access with errors that name the manifest and the field.
class JsonReader {
 public:
  explicit JsonReader(std::string source) : source_(std::move(source)) {}

  template <typename T>
  absl::Status Get(const json& object, const char* key, T* out,
                   const std::string& where = "") const {
    if (!object.is_object() || !object.contains(key)) {
      return Error(where + key, "is missing");
    }
    try {
      *out = object.at(key).get<T>();
    } catch (const json::exception&) {
      return Error(where + key, "has the wrong type");
    }
    return absl::OkStatus();
  }

  absl::Status Error(const std::string& field, const std::string& why) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": field '", field, "' ", why));
  }

 private:
  std::string source_;
};

}  // namespace

namespace {

std::string RecordKey(int tap, const std::string& variant) {
  return absl::StrCat("tap", tap, ".", variant);
}

absl::StatusOr<std::string> SerializeRecords(const PlanningRecords& records) {
  TensorFile file;
  const int64_t n = static_cast<int64_t>(records.base_classes.size());
  file.metadata = {{"format", "gati-planning"}};
  file.tensors["base_class"] = FloatTensor{
      {n}, std::vector<float>(records.base_classes.begin(), records.base_classes.end())};
  for (const CacheRecords& c : records.caches) {
    if (static_cast<int64_t>(c.scores.size()) != n ||
        static_cast<int64_t>(c.classes.size()) != n) {
      return absl::InvalidArgumentError(absl::StrCat(
          "planning records of ", c.variant, " at tap ", c.tap, " have another length"));
    }
    const std::string key = RecordKey(c.tap, c.variant);
    file.tensors[key + ".score"] = FloatTensor{{n}, c.scores};
    file.tensors[key + ".class"] =
        FloatTensor{{n}, std::vector<float>(c.classes.begin(), c.classes.end())};
  }
  return SerializeSafetensors(file);
}

std::vector<int32_t> ToClasses(const std::vector<float>& values) {
  return std::vector<int32_t>(values.begin(), values.end());
}

}  // namespace

std::string CacheFileName(int tap, const std::string& variant) {
  char tap_name[16];
  std::snprintf(tap_name, sizeof(tap_name), "tap%02d", tap);
  return absl::StrCat("caches/", tap_name, ".",
                      absl::StrReplaceAll(variant, {{":", "-"}}),
                      ".safetensors");
}

std::string ManifestToJson(const BundleManifest& manifest) {
  json caches = json::array();
  for (const CacheEntry& entry : manifest.caches) {
    const CacheMetrics& m = entry.metrics;
    caches.push_back(
        {{"tap", entry.tap},
         {"variant", entry.variant},
         {"file", entry.file},
         {"sha256", entry.sha256},
         {"enabled", entry.enabled},
         {"threshold", entry.threshold},
         {"metrics",
          {{"agreement", m.agreement},
           {"accuracy", m.accuracy},
           {"hit_rate", m.hit_rate},
           {"false_hit_rate", m.false_hit_rate},
           {"false_hit_upper_bound", m.false_hit_upper_bound},
           {"hits", m.hits},
           {"false_hits", m.false_hits},
           {"calibration_count", m.calibration_count},
           {"lookup_us", m.lookup_us},
           {"memory_bytes", m.memory_bytes}}}});
    if (!m.selector.empty()) {  // Measured (bundles built before lack them).
      json& metrics = caches.back()["metrics"];
      metrics["selector"] = m.selector;
      metrics["selector_auroc"] = m.selector_auroc;
      metrics["max_softmax_auroc"] = m.max_softmax_auroc;
    }
  }
  json out = {{"format", "gati-bundle"},
              {"format_version", manifest.format_version},
              {"model",
               {{"file", manifest.model_file},
                {"sha256", manifest.model_sha256},
                {"name", manifest.model_name},
                {"input_shape", manifest.input_shape},
                {"num_classes", manifest.num_classes},
                {"num_stages", manifest.num_stages}}},
              {"build", manifest.build},
              {"profile",
               {{"stage_p50_ms", manifest.stage_p50_ms},
                {"whole_p50_ms", manifest.whole_p50_ms},
                {"staged_p50_ms", manifest.staged_p50_ms},
                {"lookup_overhead_ms", manifest.lookup_overhead_ms},
                {"lookup_ms_per_mb", manifest.lookup_ms_per_mb},
                {"parallel_request_ms", manifest.parallel_request_ms},
                {"threads", manifest.profile_threads}}},
              {"caches", caches}};
  if (manifest.settings.present) {
    const BuildSettings& b = manifest.settings;
    out["build_settings"] = {{"data", b.data},
                             {"samples", b.samples},
                             {"predictor_train", b.predictor_train},
                             {"selector_train", b.selector_train},
                             {"calibration", b.calibration},
                             {"seed", b.seed},
                             {"epsilon", b.epsilon},
                             {"confidence", b.confidence},
                             {"alpha", b.alpha},
                             {"temperature", b.temperature},
                             {"epochs", b.epochs},
                             {"stream_epochs", b.stream_epochs},
                             {"taps", b.taps},
                             {"variants", b.variants}};
  }
  if (!manifest.planning_file.empty()) {
    out["planning"] = {{"file", manifest.planning_file},
                       {"sha256", manifest.planning_sha256},
                       {"samples", manifest.planning_samples},
                       {"split", manifest.planning_split}};
  }
  if (!manifest.replay_file.empty()) {
    out["replay"] = {{"file", manifest.replay_file},
                     {"sha256", manifest.replay_sha256},
                     {"samples", manifest.replay_samples}};
  }
  if (manifest.has_plan) {
    const StoredPlan& plan = manifest.plan;
    json planned = json::array();
    for (const PlannedCache& c : plan.caches) {
      planned.push_back({{"tap", c.tap}, {"variant", c.variant}, {"threshold", c.threshold}});
    }
    out["plan"] = {{"version", plan.version},
                   {"mode", plan.mode},
                   {"memory_budget_bytes", plan.memory_budget_bytes},
                   {"epsilon", plan.epsilon},
                   {"confidence", plan.confidence},
                   {"max_taps", plan.max_taps},
                   {"tail_budget", plan.tail_budget},
                   {"batch", plan.batch},
                   {"caches", planned},
                   {"predicted",
                    {{"mean_ms", plan.mean_ms},
                     {"p50_ms", plan.p50_ms},
                     {"p95_ms", plan.p95_ms},
                     {"p99_ms", plan.p99_ms},
                     {"miss_ms", plan.miss_ms},
                     {"base_ms", plan.base_ms},
                     {"oracle_mean_ms", plan.oracle_mean_ms},
                     {"disagreement", plan.disagreement},
                     {"disagreement_bound", plan.disagreement_bound},
                     {"memory_bytes", plan.memory_bytes},
                     {"exit_share", plan.exit_share}}},
                   {"note", plan.note}};
    out["plan"]["predicted"]["model_only_mean_ms"] = plan.model_only_mean_ms;
    out["plan"]["predicted"]["other_mode_mean_ms"] = plan.other_mode_mean_ms;
    out["plan"]["predicted"]["other_mode_p99_ms"] = plan.other_mode_p99_ms;
  }
  return out.dump(2) + "\n";
}

absl::StatusOr<BundleManifest> ParseManifest(const std::string& json_text,
                                             const std::string& source) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(source + ": not a JSON object");
  }
  JsonReader reader(source);
  BundleManifest manifest;
  std::string format;
  GATI_RETURN_IF_ERROR(reader.Get(root, "format", &format));
  if (format != "gati-bundle") return reader.Error("format", "is not gati-bundle");
  GATI_RETURN_IF_ERROR(reader.Get(root, "format_version", &manifest.format_version));
  if (manifest.format_version != kBundleFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": unknown bundle format version ", manifest.format_version,
        " (this build reads version ", kBundleFormatVersion, ")"));
  }
  json model;
  GATI_RETURN_IF_ERROR(reader.Get(root, "model", &model));
  GATI_RETURN_IF_ERROR(reader.Get(model, "file", &manifest.model_file, "model."));
  GATI_RETURN_IF_ERROR(reader.Get(model, "sha256", &manifest.model_sha256, "model."));
  GATI_RETURN_IF_ERROR(reader.Get(model, "name", &manifest.model_name, "model."));
  GATI_RETURN_IF_ERROR(
      reader.Get(model, "input_shape", &manifest.input_shape, "model."));
  GATI_RETURN_IF_ERROR(
      reader.Get(model, "num_classes", &manifest.num_classes, "model."));
  GATI_RETURN_IF_ERROR(reader.Get(model, "num_stages", &manifest.num_stages, "model."));
  if (manifest.model_file.empty() ||
      manifest.model_file.find('/') != std::string::npos) {
    return reader.Error("model.file", "must be a plain file name");
  }
  GATI_RETURN_IF_ERROR(reader.Get(root, "build", &manifest.build));
  if (root.contains("build_settings")) {  // Bundles written before it lack it.
    const json& item = root["build_settings"];
    BuildSettings& b = manifest.settings;
    const std::string w = "build_settings.";
    GATI_RETURN_IF_ERROR(reader.Get(item, "data", &b.data, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "samples", &b.samples, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "predictor_train", &b.predictor_train, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "selector_train", &b.selector_train, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "calibration", &b.calibration, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "seed", &b.seed, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "epsilon", &b.epsilon, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "confidence", &b.confidence, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "alpha", &b.alpha, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "temperature", &b.temperature, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "epochs", &b.epochs, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "stream_epochs", &b.stream_epochs, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "taps", &b.taps, w));
    GATI_RETURN_IF_ERROR(reader.Get(item, "variants", &b.variants, w));
    if (!(b.epsilon > 0 && b.epsilon < 1) || !(b.confidence > 0 && b.confidence < 1)) {
      return reader.Error("build_settings.epsilon", "and confidence must lie in (0, 1)");
    }
    if (b.samples < 0 || b.predictor_train < 0 || b.selector_train < 0 || b.calibration < 0 ||
        b.predictor_train + b.selector_train + b.calibration != b.samples) {
      return reader.Error("build_settings.samples", "must equal the three splits' sizes");
    }
    b.present = true;
  }
  json profile;
  GATI_RETURN_IF_ERROR(reader.Get(root, "profile", &profile));
  GATI_RETURN_IF_ERROR(
      reader.Get(profile, "stage_p50_ms", &manifest.stage_p50_ms, "profile."));
  GATI_RETURN_IF_ERROR(
      reader.Get(profile, "whole_p50_ms", &manifest.whole_p50_ms, "profile."));
  GATI_RETURN_IF_ERROR(
      reader.Get(profile, "threads", &manifest.profile_threads, "profile."));
  GATI_RETURN_IF_ERROR(
      reader.Get(profile, "staged_p50_ms", &manifest.staged_p50_ms, "profile."));
  for (const auto& [key, field] :
       {std::pair<const char*, double*>{"lookup_overhead_ms", &manifest.lookup_overhead_ms},
        {"lookup_ms_per_mb", &manifest.lookup_ms_per_mb}}) {
    if (!profile.contains(key)) continue;  // Bundles built before them.
    GATI_RETURN_IF_ERROR(reader.Get(profile, key, field, "profile."));
    if (!(*field >= 0)) return reader.Error(absl::StrCat("profile.", key), "must be >= 0");
  }
  if (profile.contains("parallel_request_ms")) {
    GATI_RETURN_IF_ERROR(reader.Get(profile, "parallel_request_ms",
                                    &manifest.parallel_request_ms, "profile."));
    if (!std::isfinite(manifest.parallel_request_ms) ||
        std::abs(manifest.parallel_request_ms) > 1e6) {
      return reader.Error("profile.parallel_request_ms", "must be a finite latency in ms");
    }
  }
  json caches;
  GATI_RETURN_IF_ERROR(reader.Get(root, "caches", &caches));
  if (!caches.is_array()) return reader.Error("caches", "is not an array");
  for (size_t i = 0; i < caches.size(); ++i) {
    const json& item = caches[i];
    const std::string where = absl::StrCat("caches[", i, "].");
    CacheEntry entry;
    GATI_RETURN_IF_ERROR(reader.Get(item, "tap", &entry.tap, where));
    GATI_RETURN_IF_ERROR(reader.Get(item, "variant", &entry.variant, where));
    GATI_RETURN_IF_ERROR(reader.Get(item, "file", &entry.file, where));
    GATI_RETURN_IF_ERROR(reader.Get(item, "sha256", &entry.sha256, where));
    GATI_RETURN_IF_ERROR(reader.Get(item, "enabled", &entry.enabled, where));
    GATI_RETURN_IF_ERROR(reader.Get(item, "threshold", &entry.threshold, where));
    if (entry.tap < 0 || entry.tap >= manifest.num_stages - 1) {
      return reader.Error(where + "tap", "is not a tap of the model");
    }
    if (entry.file.rfind("caches/", 0) != 0 ||
        entry.file.find("..") != std::string::npos) {
      return reader.Error(where + "file", "must lie under caches/");
    }
    json metrics;
    GATI_RETURN_IF_ERROR(reader.Get(item, "metrics", &metrics, where));
    CacheMetrics& m = entry.metrics;
    const std::string mw = where + "metrics.";
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "agreement", &m.agreement, mw));
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "accuracy", &m.accuracy, mw));
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "hit_rate", &m.hit_rate, mw));
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "false_hit_rate", &m.false_hit_rate, mw));
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "false_hit_upper_bound",
                                    &m.false_hit_upper_bound, mw));
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "hits", &m.hits, mw));
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "false_hits", &m.false_hits, mw));
    GATI_RETURN_IF_ERROR(
        reader.Get(metrics, "calibration_count", &m.calibration_count, mw));
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "lookup_us", &m.lookup_us, mw));
    GATI_RETURN_IF_ERROR(reader.Get(metrics, "memory_bytes", &m.memory_bytes, mw));
    if (metrics.contains("selector")) {  // Bundles built before selector choice lack them.
      GATI_RETURN_IF_ERROR(reader.Get(metrics, "selector", &m.selector, mw));
      GATI_RETURN_IF_ERROR(reader.Get(metrics, "selector_auroc", &m.selector_auroc, mw));
      GATI_RETURN_IF_ERROR(reader.Get(metrics, "max_softmax_auroc", &m.max_softmax_auroc, mw));
      if (m.selector != "learned" && m.selector != "max-softmax") {
        return reader.Error(mw + "selector", "must be learned or max-softmax");
      }
    }
    manifest.caches.push_back(std::move(entry));
  }
  if (root.contains("planning")) {
    const json& planning = root["planning"];
    GATI_RETURN_IF_ERROR(reader.Get(planning, "file", &manifest.planning_file, "planning."));
    GATI_RETURN_IF_ERROR(
        reader.Get(planning, "sha256", &manifest.planning_sha256, "planning."));
    GATI_RETURN_IF_ERROR(
        reader.Get(planning, "samples", &manifest.planning_samples, "planning."));
    GATI_RETURN_IF_ERROR(reader.Get(planning, "split", &manifest.planning_split, "planning."));
    if (manifest.planning_file != kPlanningFileName) {
      return reader.Error("planning.file", std::string("must be ") + kPlanningFileName);
    }
  }
  if (root.contains("replay")) {
    const json& replay = root["replay"];
    GATI_RETURN_IF_ERROR(reader.Get(replay, "file", &manifest.replay_file, "replay."));
    GATI_RETURN_IF_ERROR(reader.Get(replay, "sha256", &manifest.replay_sha256, "replay."));
    GATI_RETURN_IF_ERROR(
        reader.Get(replay, "samples", &manifest.replay_samples, "replay."));
    if (manifest.replay_file != kReplayFileName) {
      return reader.Error("replay.file", std::string("must be ") + kReplayFileName);
    }
    if (manifest.replay_samples < 1) {
      return reader.Error("replay.samples", "must be at least 1");
    }
  }
  if (root.contains("plan")) {
    const json& item = root["plan"];
    StoredPlan& plan = manifest.plan;
    GATI_RETURN_IF_ERROR(reader.Get(item, "version", &plan.version, "plan."));
    if (plan.version != kPlanVersion) {
      return reader.Error("plan.version", absl::StrCat("is ", plan.version,
                                                       "; this build reads ", kPlanVersion));
    }
    GATI_RETURN_IF_ERROR(reader.Get(item, "mode", &plan.mode, "plan."));
    GATI_RETURN_IF_ERROR(
        reader.Get(item, "memory_budget_bytes", &plan.memory_budget_bytes, "plan."));
    GATI_RETURN_IF_ERROR(reader.Get(item, "epsilon", &plan.epsilon, "plan."));
    GATI_RETURN_IF_ERROR(reader.Get(item, "confidence", &plan.confidence, "plan."));
    GATI_RETURN_IF_ERROR(reader.Get(item, "max_taps", &plan.max_taps, "plan."));
    GATI_RETURN_IF_ERROR(reader.Get(item, "note", &plan.note, "plan."));
    json planned, predicted;
    GATI_RETURN_IF_ERROR(reader.Get(item, "caches", &planned, "plan."));
    for (size_t i = 0; i < planned.size(); ++i) {
      PlannedCache c;
      const std::string where = absl::StrCat("plan.caches[", i, "].");
      GATI_RETURN_IF_ERROR(reader.Get(planned[i], "tap", &c.tap, where));
      GATI_RETURN_IF_ERROR(reader.Get(planned[i], "variant", &c.variant, where));
      GATI_RETURN_IF_ERROR(reader.Get(planned[i], "threshold", &c.threshold, where));
      bool known = false;
      for (const CacheEntry& entry : manifest.caches) {
        known |= entry.tap == c.tap && entry.variant == c.variant;
      }
      if (!known) return reader.Error(where + "variant", "names no cache of the bundle");
      plan.caches.push_back(c);
    }
    GATI_RETURN_IF_ERROR(reader.Get(item, "predicted", &predicted, "plan."));
    const std::string pw = "plan.predicted.";
    GATI_RETURN_IF_ERROR(reader.Get(predicted, "mean_ms", &plan.mean_ms, pw));
    GATI_RETURN_IF_ERROR(reader.Get(predicted, "p50_ms", &plan.p50_ms, pw));
    GATI_RETURN_IF_ERROR(reader.Get(predicted, "p95_ms", &plan.p95_ms, pw));
    GATI_RETURN_IF_ERROR(reader.Get(predicted, "base_ms", &plan.base_ms, pw));
    GATI_RETURN_IF_ERROR(reader.Get(predicted, "oracle_mean_ms", &plan.oracle_mean_ms, pw));
    GATI_RETURN_IF_ERROR(reader.Get(predicted, "disagreement", &plan.disagreement, pw));
    GATI_RETURN_IF_ERROR(
        reader.Get(predicted, "disagreement_bound", &plan.disagreement_bound, pw));
    GATI_RETURN_IF_ERROR(reader.Get(predicted, "memory_bytes", &plan.memory_bytes, pw));
    GATI_RETURN_IF_ERROR(reader.Get(predicted, "exit_share", &plan.exit_share, pw));
    // Fields newer plans carry; older manifests lack them.
    for (const auto& [key, field] : {std::pair<const char*, double*>{"model_only_mean_ms",
                                                                     &plan.model_only_mean_ms},
                                     {"p99_ms", &plan.p99_ms},
                                     {"miss_ms", &plan.miss_ms},
                                     {"other_mode_mean_ms", &plan.other_mode_mean_ms},
                                     {"other_mode_p99_ms", &plan.other_mode_p99_ms}}) {
      if (predicted.contains(key)) GATI_RETURN_IF_ERROR(reader.Get(predicted, key, field, pw));
    }
    if (item.contains("tail_budget")) {
      GATI_RETURN_IF_ERROR(reader.Get(item, "tail_budget", &plan.tail_budget, "plan."));
      if (!(plan.tail_budget == 0 || (plan.tail_budget >= 1 && plan.tail_budget <= 100))) {
        return reader.Error("plan.tail_budget", "must be 0 (off) or in [1, 100]");
      }
    }
    if (item.contains("batch")) {
      GATI_RETURN_IF_ERROR(reader.Get(item, "batch", &plan.batch, "plan."));
      if (plan.batch < 1 || plan.batch > kMaxPlanBatch) {
        return reader.Error("plan.batch", absl::StrCat("must be in [1, ", kMaxPlanBatch, "]"));
      }
    }
    manifest.has_plan = true;
  }
  return manifest;
}

// The bytes of a bundle file, checked against the manifest's SHA-256.
static absl::StatusOr<std::string> ReadVerified(const std::string& path,
                                                const std::string& sha256) {
  GATI_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(path));
  if (Sha256Hex(bytes) != sha256) {
    return absl::DataLossError(absl::StrCat(
        path, ": SHA-256 differs from the manifest (truncated or corrupt)"));
  }
  return bytes;
}

absl::StatusOr<std::unique_ptr<Bundle>> Bundle::Load(const std::string& dir) {
  const std::string manifest_path = (fs::path(dir) / kManifestFileName).string();
  GATI_ASSIGN_OR_RETURN(std::string text, ReadFileBytes(manifest_path));
  GATI_ASSIGN_OR_RETURN(BundleManifest manifest, ParseManifest(text, manifest_path));
  const std::string model_path = (fs::path(dir) / manifest.model_file).string();
  GATI_ASSIGN_OR_RETURN(std::string model_bytes, ReadFileBytes(model_path));
  if (Sha256Hex(model_bytes) != manifest.model_sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        model_path, ": SHA-256 differs from the one in ", manifest_path,
        "; the model was changed after the caches were built"));
  }
  std::unique_ptr<Bundle> bundle(new Bundle());
  for (const CacheEntry& entry : manifest.caches) {
    const std::string path = (fs::path(dir) / entry.file).string();
    GATI_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(path, entry.sha256));
    GATI_ASSIGN_OR_RETURN(CacheWeights weights, ParseWeights(bytes, entry, path));
    auto cache = LearnedCache::Create(std::move(weights));
    if (!cache.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", cache.status().message()));
    }
    if ((*cache)->num_classes() != manifest.num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": class count differs from the model's"));
    }
    bundle->caches_.push_back(std::move(*cache));
  }
  if (!manifest.planning_file.empty()) {
    const std::string path = (fs::path(dir) / manifest.planning_file).string();
    GATI_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(path, manifest.planning_sha256));
    GATI_ASSIGN_OR_RETURN(TensorFile file, ParseSafetensors(bytes, path));
    const int64_t n = manifest.planning_samples;
    auto take = [&](const std::string& key) -> absl::StatusOr<std::vector<float>> {
      auto found = file.tensors.find(key);
      if (found == file.tensors.end() || found->second.shape != std::vector<int64_t>{n}) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": missing or mis-sized records '", key, "'"));
      }
      return std::move(found->second.data);
    };
    GATI_ASSIGN_OR_RETURN(std::vector<float> base, take("base_class"));
    bundle->records_.base_classes = ToClasses(base);
    for (const CacheEntry& entry : manifest.caches) {
      const std::string key = RecordKey(entry.tap, entry.variant);
      CacheRecords records;
      records.tap = entry.tap;
      records.variant = entry.variant;
      GATI_ASSIGN_OR_RETURN(records.scores, take(key + ".score"));
      GATI_ASSIGN_OR_RETURN(std::vector<float> classes, take(key + ".class"));
      records.classes = ToClasses(classes);
      bundle->records_.caches.push_back(std::move(records));
    }
  }
  if (!manifest.replay_file.empty()) {
    const std::string path = (fs::path(dir) / manifest.replay_file).string();
    GATI_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(path, manifest.replay_sha256));
    GATI_ASSIGN_OR_RETURN(TensorFile file, ParseSafetensors(bytes, path));
    std::vector<int64_t> want = {manifest.replay_samples};
    want.insert(want.end(), manifest.input_shape.begin(), manifest.input_shape.end());
    auto found = file.tensors.find("inputs");
    if (found == file.tensors.end() || found->second.shape != want) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": missing or mis-shaped 'inputs'"));
    }
    bundle->replay_.count = manifest.replay_samples;
    bundle->replay_.inputs = std::move(found->second.data);
  }
  bundle->dir_ = dir;
  bundle->manifest_ = std::move(manifest);
  return bundle;
}

std::string Bundle::model_path() const {
  return (fs::path(dir_) / manifest_.model_file).string();
}

const LearnedCache* Bundle::Find(int tap, const std::string& variant) const {
  for (size_t i = 0; i < caches_.size(); ++i) {
    if (manifest_.caches[i].tap == tap && manifest_.caches[i].variant == variant) {
      return caches_[i].get();
    }
  }
  return nullptr;
}

absl::Status Bundle::WriteManifest(const std::string& dir,
                                   const BundleManifest& manifest) {
  return WriteFileAtomic((fs::path(dir) / kManifestFileName).string(),
                         ManifestToJson(manifest));
}

absl::Status Bundle::Write(const std::string& dir, BundleManifest manifest,
                           const std::string& model_path,
                           const std::vector<const CacheWeights*>& caches,
                           const PlanningRecords* records,
                           const ReplaySample* replay) {
  std::error_code error;
  const fs::path target = fs::absolute(dir);
  if (fs::exists(target)) {
    bool replaceable = fs::is_directory(target) &&
                       (fs::is_empty(target, error) ||
                        fs::exists(target / kManifestFileName));
    if (!replaceable) {
      return absl::FailedPreconditionError(
          dir + ": exists and is not a bundle; not replacing it");
    }
  }
  if (manifest.caches.size() != caches.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bundle ", dir, ": ", manifest.caches.size(), " manifest entries for ",
        caches.size(), " caches"));
  }
  const fs::path staging =
      target.parent_path() /
      absl::StrCat(".", target.filename().string(), ".tmp.", ::getpid());
  fs::remove_all(staging, error);
  fs::create_directories(staging / "caches", error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(staging.string(), ": cannot create: ", error.message()));
  }
  auto fail = [&staging](absl::Status status) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    return status;
  };
  auto model_bytes = ReadFileBytes(model_path);
  if (!model_bytes.ok()) return fail(model_bytes.status());
  manifest.model_sha256 = Sha256Hex(*model_bytes);
  manifest.model_file = kBundleModelFileName;
  absl::Status status =
      WriteFileAtomic((staging / manifest.model_file).string(), *model_bytes);
  if (!status.ok()) return fail(status);
  for (const CacheWeights* weights : caches) {
    auto entry = std::find_if(
        manifest.caches.begin(), manifest.caches.end(), [&](const CacheEntry& e) {
          return e.tap == weights->tap && e.variant == weights->variant.name;
        });
    if (entry == manifest.caches.end()) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
          "no manifest entry for ", weights->variant.name, " at tap ", weights->tap)));
    }
    auto bytes = SerializeWeights(*weights);
    if (!bytes.ok()) return fail(bytes.status());
    entry->file = CacheFileName(weights->tap, weights->variant.name);
    entry->sha256 = Sha256Hex(*bytes);
    entry->enabled = weights->enabled;
    entry->threshold = weights->threshold;
    status = WriteFileAtomic((staging / entry->file).string(), *bytes);
    if (!status.ok()) return fail(status);
  }
  if (records != nullptr) {
    auto bytes = SerializeRecords(*records);
    if (!bytes.ok()) return fail(bytes.status());
    manifest.planning_file = kPlanningFileName;
    manifest.planning_sha256 = Sha256Hex(*bytes);
    manifest.planning_samples = static_cast<int64_t>(records->base_classes.size());
    status = WriteFileAtomic((staging / kPlanningFileName).string(), *bytes);
    if (!status.ok()) return fail(status);
  } else {
    manifest.planning_file.clear();
  }
  manifest.replay_file.clear();
  if (replay != nullptr && replay->count > 0) {
    int64_t per_input = 1;
    for (int64_t d : manifest.input_shape) per_input *= d;
    TensorFile file;
    FloatTensor& inputs = file.tensors["inputs"];
    inputs.shape = {replay->count};
    inputs.shape.insert(inputs.shape.end(), manifest.input_shape.begin(),
                        manifest.input_shape.end());
    if (static_cast<int64_t>(replay->inputs.size()) != replay->count * per_input) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
          "replay sample: ", replay->inputs.size(), " values for ", replay->count,
          " inputs of ", per_input)));
    }
    inputs.data = replay->inputs;
    auto bytes = SerializeSafetensors(file);
    if (!bytes.ok()) return fail(bytes.status());
    manifest.replay_file = kReplayFileName;
    manifest.replay_sha256 = Sha256Hex(*bytes);
    manifest.replay_samples = replay->count;
    status = WriteFileAtomic((staging / kReplayFileName).string(), *bytes);
    if (!status.ok()) return fail(status);
  }
  std::sort(manifest.caches.begin(), manifest.caches.end(),
            [](const CacheEntry& a, const CacheEntry& b) {
              return std::tie(a.tap, a.variant) < std::tie(b.tap, b.variant);
            });
  status = WriteFileAtomic((staging / kManifestFileName).string(),
                           ManifestToJson(manifest));
  if (!status.ok()) return fail(status);
  if (fs::exists(target)) {
    // Swap the directories in one step, then drop the old one.
    if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(),
                    RENAME_EXCHANGE) != 0) {
      return fail(absl::InternalError(absl::StrCat(
          "cannot replace ", dir, ": ", std::strerror(errno))));
    }
    fs::remove_all(staging, error);
  } else if (::rename(staging.c_str(), target.c_str()) != 0) {
    return fail(absl::InternalError(
        absl::StrCat("cannot move the bundle to ", dir, ": ", std::strerror(errno))));
  }
  return absl::OkStatus();
}

}  // namespace gati
