#include "serve/model_repository.h"

#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "spdlog/spdlog.h"

namespace gati::serve {

namespace fs = std::filesystem;

namespace {

bool ValidName(const std::string& name) {
  return !name.empty() && name.size() <= 128 &&
         std::all_of(name.begin(), name.end(),
                     [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                              c == '_' || c == '-';
                     }) &&
         name != "." && name != "..";
}

// The model config a bundle directory may hold beside its manifest.
constexpr char kConfigFile[] = "config.json";

// A hash of the bundle's manifest and model config (its revision); empty
// when the manifest is unreadable.
std::string Revision(const std::string& bundle_dir) {
  std::ifstream in(fs::path(bundle_dir) / "manifest.json", std::ios::binary);
  if (!in) return "";
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ifstream config(fs::path(bundle_dir) / kConfigFile, std::ios::binary);
  if (config) {
    bytes += "\n-- config.json --\n";
    bytes.append(std::istreambuf_iterator<char>(config), std::istreambuf_iterator<char>());
  }
  uint64_t hash = 1469598103934665603ull;  // FNV-1a, 64 bits.
  for (unsigned char c : bytes) hash = (hash ^ c) * 1099511628211ull;
  return absl::StrCat(bytes.size(), "-", hash);
}

// Removes files "<anything>.tmp.<pid>" in `bundle_dir` (WriteFileAtomic's)
// whose writer is no longer running.
void RemoveStaleTemporaries(const std::string& name, const std::string& bundle_dir) {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(bundle_dir, error)) {
    const std::string file = entry.path().filename().string();
    const size_t mark = file.rfind(".tmp.");
    int pid = 0;
    if (mark == std::string::npos || !absl::SimpleAtoi(file.substr(mark + 5), &pid) || pid <= 0 ||
        !entry.is_regular_file(error)) {
      continue;
    }
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // Its writer may still run.
    // A writer in another PID namespace (another container on a shared
    // volume) looks gone too: only a file left alone for a minute goes.
    const auto written = fs::last_write_time(entry.path(), error);
    if (error || fs::file_time_type::clock::now() - written < std::chrono::minutes(1)) continue;
    std::error_code removed;
    fs::remove(entry.path(), removed);
    if (!removed) {
      spdlog::info("model '{}': removed {}, left by a writer (pid {}) that is gone", name,
                   file, pid);
    }
  }
}

// Load errors go to clients: bundle paths become the model's name.
std::string Redact(std::string message, const std::string& name, const std::string& bundle_dir) {
  std::error_code error;
  const std::string absolute = fs::absolute(bundle_dir, error).lexically_normal().string();
  const std::string shown = absl::StrCat("<bundle of '", name, "'>");
  for (const std::string& path : {absolute, bundle_dir}) {
    if (!path.empty()) message = absl::StrReplaceAll(message, {{path, shown}});
  }
  return message;
}

}  // namespace

// Frees released versions on a thread of its own, whoever drops the last
// reference (an I/O thread, a request, a load holding the repository's
// lock), then returns the memory they held to the system: malloc keeps
// freed pages of every thread's arena otherwise, and each engine's threads
// leave theirs behind.
class ModelRepository::Reaper {
 public:
  Reaper() : thread_([this] { Loop(); }) {}
  ~Reaper() {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    thread_.join();
  }
  void Release(ServedModel* model) {
    absl::MutexLock lock(&mu_);
    pending_.push_back(model);
  }

 private:
  void Loop() {
    for (;;) {
      std::vector<ServedModel*> batch;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](Reaper* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
              return self->done_ || !self->pending_.empty();
            },
            this));
        if (pending_.empty() && done_) return;
        batch.swap(pending_);
      }
      for (ServedModel* model : batch) delete model;
      malloc_trim(0);
    }
  }

  absl::Mutex mu_;
  std::vector<ServedModel*> pending_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

const char* StateName(const ModelState& state) { return state.ready ? "READY" : "UNAVAILABLE"; }

// The batching of `name`: its config.json over the defaults.
absl::StatusOr<BatchingOptions> ReadBatching(const std::string& name,
                                             const std::string& bundle_dir,
                                             const BatchingOptions& defaults) {
  const fs::path path = fs::path(bundle_dir) / kConfigFile;
  std::error_code error;
  if (!fs::exists(path, error)) return defaults;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(kConfigFile, " cannot be read"));
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ParseBatchingConfig(text, defaults, kConfigFile);
}

ModelRepository::ModelRepository(EngineFactory factory)
    : factory_(std::move(factory)),
      reaper_(std::make_shared<Reaper>()),
      models_(std::make_shared<const ModelMap>()) {}

ModelRepository::~ModelRepository() {
  // Versions still held elsewhere go to the reaper when let go; this one's
  // map goes now.
  std::atomic_store(&models_, std::shared_ptr<const ModelMap>());
}

absl::Status ModelRepository::Register(const std::string& name, const std::string& bundle_dir) {
  if (!ValidName(name)) {
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
    if (!entry.is_directory(error)) continue;
    const std::string name = entry.path().filename().string();
    if (name[0] == '.') {
      spdlog::info("repository {}: skipping {}: a hidden directory (gati build stages "
                   "bundles in .NAME.tmp.PID)", dir, name);
    } else if (!fs::exists(entry.path() / "manifest.json", error)) {
      spdlog::warn("repository {}: skipping {}: no manifest.json", dir, name);
    } else if (!ValidName(name)) {
      spdlog::warn("repository {}: skipping {}: a model name is 1-128 letters, digits, '.', "
                   "'_' or '-'", dir, name);
    } else {
      names.push_back(name);
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

absl::StatusOr<LoadResult> ModelRepository::Load(const std::string& name) {
  absl::MutexLock load_lock(&load_mu_);
  std::string bundle_dir, serving_revision;
  std::shared_ptr<ModelMetrics> metrics;
  int64_t version = 0;
  bool serving = false;
  {
    absl::MutexLock lock(&state_mu_);
    auto state = states_.find(name);
    if (state == states_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
    }
    bundle_dir = state->second.bundle_dir;
    version = state->second.version;
    metrics = state->second.metrics;
    serving = state->second.ready;
    serving_revision = state->second.revision;
  }
  RemoveStaleTemporaries(name, bundle_dir);
  const std::string revision = Revision(bundle_dir);
  const bool unchanged = !revision.empty() && revision == serving_revision;
  if (serving && unchanged) {
    spdlog::info("model '{}': bundle unchanged; version {} keeps serving", name, version);
    return LoadResult{version, false};
  }
  absl::StatusOr<BatchingOptions> batching = ReadBatching(name, bundle_dir, batching_);
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      batching.ok() ? factory_(bundle_dir) : absl::StatusOr<std::unique_ptr<Engine>>(batching.status());
  // The map replaced below is let go after the lock (declared before it).
  std::shared_ptr<const ModelMap> replaced;
  absl::MutexLock lock(&state_mu_);
  ModelState& state = states_[name];
  if (!engine.ok()) {
    state.reason = Redact(std::string(engine.status().message()), name, bundle_dir);
    spdlog::error("model '{}': load from {} failed: {}{}", name, bundle_dir,
                  std::string(engine.status().message()),
                  serving ? absl::StrCat("; version ", version, " keeps serving") : "");
    return absl::Status(engine.status().code(),
                        absl::StrCat("model '", name, "': ", state.reason));
  }
  // The same bundle loaded again after an unload is the same version.
  const int64_t next = unchanged ? version : version + 1;
  std::shared_ptr<ServedModel> model(
      new ServedModel(), [reaper = reaper_](ServedModel* released) { reaper->Release(released); });
  model->name = name;
  model->version = next;
  model->bundle_dir = bundle_dir;
  model->engine = std::move(engine).value();
  model->batching = *batching;
  if (batching->dynamic && batching->max_batch_size > 1) {
    model->batcher =
        std::make_unique<Batcher>(model->engine.get(), *batching, &metrics->executions);
  }
  const std::string mode = model->engine->mode_report();
  model->metrics = metrics;
  replaced = std::atomic_load(&models_);
  auto models = std::make_shared<ModelMap>(*replaced);
  (*models)[name] = std::move(model);
  std::atomic_store(&models_, std::shared_ptr<const ModelMap>(std::move(models)));
  state.version = next;
  state.ready = true;
  state.unloaded = false;
  state.reason.clear();
  state.revision = revision;
  spdlog::info("model '{}': version {} loaded from {}; mode {}", name, next, bundle_dir, mode);
  return LoadResult{next, true};
}

absl::Status ModelRepository::Unload(const std::string& name) {
  absl::MutexLock load_lock(&load_mu_);
  std::shared_ptr<const ModelMap> replaced;  // Let go after the lock.
  absl::MutexLock lock(&state_mu_);
  auto state = states_.find(name);
  if (state == states_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  replaced = std::atomic_load(&models_);
  auto models = std::make_shared<ModelMap>(*replaced);
  const bool was_serving = models->erase(name) > 0;
  std::atomic_store(&models_, std::shared_ptr<const ModelMap>(std::move(models)));
  state->second.ready = false;
  state->second.unloaded = true;
  state->second.reason = "unloaded";
  if (was_serving) {
    spdlog::info("model '{}': version {} unloaded", name, state->second.version);
  }
  return absl::OkStatus();
}

absl::Status ModelRepository::LoadAll() {
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&state_mu_);
    for (const auto& [name, state] : states_) names.push_back(name);
  }
  std::string failures;
  int loaded = 0;
  for (const std::string& name : names) {
    absl::StatusOr<LoadResult> result = Load(name);
    if (result.ok()) {
      ++loaded;
    } else {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", result.status().message());
    }
  }
  if (loaded == 0) {
    return absl::FailedPreconditionError(
        names.empty() ? "no model registered" : absl::StrCat("no model loaded: ", failures));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::Get(
    const std::string& name, const std::string& version) const {
  const std::shared_ptr<const ModelMap> models = std::atomic_load(&models_);
  auto found = models->find(name);
  if (found == models->end()) {
    absl::MutexLock lock(&state_mu_);
    auto state = states_.find(name);
    if (state != states_.end()) {
      if (state->second.unloaded) {
        return absl::UnavailableError(absl::StrCat(
            "model '", name, "' is unloaded (POST /v2/repository/models/", name,
            "/load serves it again)"));
      }
      return absl::UnavailableError(absl::StrCat(
          "model '", name, "' is not loaded",
          state->second.reason.empty() ? "" : absl::StrCat(": ", state->second.reason)));
    }
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  if (!version.empty() && version != found->second->version_string()) {
    // NotFound as Triton answers a version its policy does not serve.
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
  return std::any_of(states_.begin(), states_.end(),
                     [](const auto& entry) { return entry.second.ready; });
}

}  // namespace gati::serve
