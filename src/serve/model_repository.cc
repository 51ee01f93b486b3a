#include "serve/model_repository.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace gati::serve {

namespace fs = std::filesystem;

ModelRepository::ModelRepository(EngineFactory factory)
    : factory_(std::move(factory)), models_(std::make_shared<const ModelMap>()) {}

absl::Status ModelRepository::Register(const std::string& name, const std::string& bundle_dir) {
  const bool well_formed =
      !name.empty() && name.size() <= 128 &&
      std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      }) &&
      name != "." && name != "..";
  if (!well_formed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model name '", name, "' must be 1-128 letters, digits, '.', '_' or '-'"));
  }
  if (bundle_dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("model '", name, "': empty bundle path"));
  }
  absl::MutexLock lock(&state_mu_);
  if (states_.count(name)) {
    return absl::InvalidArgumentError(absl::StrCat("model '", name, "' is given twice"));
  }
  ModelState state;
  state.name = name;
  state.bundle_dir = bundle_dir;
  state.metrics = std::make_shared<ModelMetrics>();
  states_[name] = std::move(state);
  return absl::OkStatus();
}

absl::Status ModelRepository::RegisterDirectory(const std::string& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no such model repository directory"));
  }
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    if (entry.is_directory(error) && fs::exists(entry.path() / "manifest.json", error)) {
      names.push_back(entry.path().filename().string());
    }
  }
  if (error) return absl::NotFoundError(absl::StrCat(dir, ": ", error.message()));
  if (names.empty()) {
    return absl::NotFoundError(absl::StrCat(
        dir, ": holds no bundle (a subdirectory with a manifest.json per model)"));
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    GATI_RETURN_IF_ERROR(Register(name, (fs::path(dir) / name).string()));
  }
  return absl::OkStatus();
}

absl::Status ModelRepository::Load(const std::string& name) {
  absl::MutexLock load_lock(&load_mu_);
  std::string bundle_dir;
  std::shared_ptr<ModelMetrics> metrics;
  int64_t version = 0;
  {
    absl::MutexLock lock(&state_mu_);
    auto state = states_.find(name);
    if (state == states_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
    }
    bundle_dir = state->second.bundle_dir;
    version = state->second.version;
    metrics = state->second.metrics;
  }
  absl::StatusOr<std::unique_ptr<Engine>> engine = factory_(bundle_dir);
  absl::MutexLock lock(&state_mu_);
  ModelState& state = states_[name];
  if (!engine.ok()) {
    state.reason = std::string(engine.status().message());
    spdlog::error("model '{}': load from {} failed: {}{}", name, bundle_dir,
                  std::string(engine.status().message()),
                  version > 0 ? absl::StrCat("; version ", version, " keeps serving") : "");
    return absl::Status(engine.status().code(),
                        absl::StrCat("model '", name, "': ", engine.status().message()));
  }
  auto model = std::make_shared<ServedModel>();
  model->name = name;
  model->version = version + 1;
  model->bundle_dir = bundle_dir;
  model->engine = std::move(engine).value();
  const std::string mode = model->engine->mode_report();
  model->metrics = metrics;
  auto next = std::make_shared<ModelMap>(*std::atomic_load(&models_));
  (*next)[name] = std::move(model);
  std::atomic_store(&models_, std::shared_ptr<const ModelMap>(std::move(next)));
  state.version = version + 1;
  state.ready = true;
  state.reason.clear();
  spdlog::info("model '{}': version {} loaded from {}; mode {}", name, version + 1,
               bundle_dir, mode);
  return absl::OkStatus();
}

absl::Status ModelRepository::LoadAll() {
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&state_mu_);
    for (const auto& [name, state] : states_) names.push_back(name);
  }
  for (const std::string& name : names) GATI_RETURN_IF_ERROR(Load(name));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::Get(
    const std::string& name, const std::string& version) const {
  const std::shared_ptr<const ModelMap> models = std::atomic_load(&models_);
  auto found = models->find(name);
  if (found == models->end()) {
    absl::MutexLock lock(&state_mu_);
    if (states_.count(name)) {
      return absl::UnavailableError(absl::StrCat("model '", name, "' is not loaded"));
    }
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  if (!version.empty() && version != found->second->version_string()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version,
                                            "'; version ", found->second->version,
                                            " is being served"));
  }
  return found->second;
}

std::vector<std::shared_ptr<const ServedModel>> ModelRepository::Loaded() const {
  const std::shared_ptr<const ModelMap> models = std::atomic_load(&models_);
  std::vector<std::shared_ptr<const ServedModel>> out;
  for (const auto& [name, model] : *models) out.push_back(model);
  return out;
}

std::vector<ModelState> ModelRepository::States() const {
  absl::MutexLock lock(&state_mu_);
  std::vector<ModelState> out;
  for (const auto& [name, state] : states_) out.push_back(state);
  return out;
}

std::shared_ptr<ModelMetrics> ModelRepository::MetricsOf(const std::string& name) const {
  absl::MutexLock lock(&state_mu_);
  auto found = states_.find(name);
  return found == states_.end() ? nullptr : found->second.metrics;
}

bool ModelRepository::AllReady() const {
  absl::MutexLock lock(&state_mu_);
  return !states_.empty() && std::all_of(states_.begin(), states_.end(),
                                         [](const auto& entry) { return entry.second.ready; });
}

}  // namespace gati::serve
