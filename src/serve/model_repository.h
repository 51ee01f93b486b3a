// The models a server serves: one engine per model name, each loaded from a
// bundle directory, replaceable while requests are in flight.
//
// Requests take a snapshot (a shared_ptr to the model's current version) and
// keep it until they answer, so a reload swaps in the new engine for later
// requests while earlier ones finish on the old engine, which is destroyed
// when the last of them lets go. A failed load leaves the old version
// serving.
//
// Version policy. A model's version names a revision of its bundle (the
// bytes of its manifest.json): the first load is version 1; a load that
// finds the bundle changed publishes version + 1, and one that finds it
// unchanged is a no-op that keeps the version (so requests pinned to it go
// on working). One version serves at a time: requests pinned to an older
// version get NotFound naming the one served, while requests admitted
// before a reload finish on the version they started on. Unload stops
// serving a model (its requests get Unavailable) until it is loaded again.
#ifndef GATI_SERVE_MODEL_REPOSITORY_H_
#define GATI_SERVE_MODEL_REPOSITORY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gati/engine.h"
#include "gati/status.h"
#include "serve/batcher.h"
#include "serve/metrics.h"

namespace gati::serve {

// One loaded version of a model. Immutable once published.
struct ServedModel {
  std::string name;
  int64_t version = 1;  // 1 for the first load, +1 per successful reload.
  std::string bundle_dir;
  std::unique_ptr<Engine> engine;
  // Its batching (config.json over gati serve's defaults) and, when it
  // batches dynamically, the batcher (destroyed before the engine).
  BatchingOptions batching;
  std::unique_ptr<Batcher> batcher;
  // Survives reloads, so counters keep counting across versions.
  std::shared_ptr<ModelMetrics> metrics;
  std::string version_string() const { return std::to_string(version); }
};

// Loads an engine for a bundle; injected so tests can count or fail loads.
using EngineFactory = std::function<absl::StatusOr<std::unique_ptr<Engine>>(
    const std::string& bundle_dir)>;

// Where a model came from and what happened to its last load.
struct ModelState {
  std::string name;
  std::string bundle_dir;
  int64_t version = 0;  // 0: never loaded.
  bool ready = false;
  bool unloaded = false;  // Unloaded on request (not a failure).
  std::string reason;  // Why it is not ready, or the last load's error.
  std::string revision;  // Hash of the manifest of the version loaded.
  // Request metrics of the name; shared with every loaded version.
  std::shared_ptr<ModelMetrics> metrics;
};

// The repository index's state names, as Triton's: READY or UNAVAILABLE.
const char* StateName(const ModelState& state);

struct LoadResult {
  int64_t version = 0;   // The version serving after the load.
  bool changed = false;  // A new version was published.
};

class ModelRepository {
 public:
  explicit ModelRepository(EngineFactory factory);

  // The batching of models whose bundle directory holds no config.json
  // (and what a config.json's fields override); set before loading.
  void SetBatchingDefaults(const BatchingOptions& defaults) { batching_ = defaults; }
  ~ModelRepository();

  // Registers `name` as served from `bundle_dir` (not loaded yet).
  // InvalidArgument for an empty or malformed name (letters, digits, '.',
  // '_' and '-' only) or a name already registered.
  absl::Status Register(const std::string& name, const std::string& bundle_dir);

  // Registers every subdirectory of `dir` that holds a manifest.json, named
  // after the subdirectory. Hidden subdirectories (gati build's staging
  // directories among them), ones without a manifest and ones whose name is
  // not a model name are skipped, each with a log line saying why. NotFound
  // when `dir` is missing or holds no bundle.
  absl::Status RegisterDirectory(const std::string& dir);

  // Loads `name` from its bundle directory. A new version is published when
  // the bundle changed since the version serving (or none serves); an
  // unchanged bundle that is serving is left as it is. Temporary files that
  // a killed writer left in the bundle are removed first. NotFound for an
  // unregistered name; otherwise the load's error (bundle paths replaced by
  // the model's name), with the old version (if any) still serving. Loads
  // of one repository run one at a time; serving continues meanwhile.
  absl::StatusOr<LoadResult> Load(const std::string& name);

  // Stops serving `name`; requests already admitted finish on it. NotFound
  // for an unregistered name; OK when it was not loaded.
  absl::Status Unload(const std::string& name);

  // Loads every registered model. One that fails is logged and left
  // unavailable, with its reason in States(); FailedPrecondition, naming
  // each failure, when none loads.
  absl::Status LoadAll();

  // The version serving `name` now. NotFound when the name is unknown, or
  // when `version` is not empty and not the one being served; Unavailable
  // when it is registered but not loaded.
  absl::StatusOr<std::shared_ptr<const ServedModel>> Get(const std::string& name,
                                                         const std::string& version = "") const;

  // Every loaded model (a snapshot), in name order.
  std::vector<std::shared_ptr<const ServedModel>> Loaded() const;
  // Every registered model and its load state, in name order.
  std::vector<ModelState> States() const;
  // True when some model serves. A model that failed to load or was
  // unloaded does not hold the others back; the index says why it is not
  // ready.
  bool AllReady() const;
  // The request metrics of a registered model (loaded or not); nullptr for
  // an unknown name.
  std::shared_ptr<ModelMetrics> MetricsOf(const std::string& name) const;

 private:
  using ModelMap = std::map<std::string, std::shared_ptr<const ServedModel>>;
  class Reaper;

  EngineFactory factory_;
  BatchingOptions batching_;
  // Frees released versions off the request and lock paths; shared with
  // every version's deleter, so it outlives them.
  std::shared_ptr<Reaper> reaper_;
  // Serializes loads (Create can take seconds; readers never wait on it).
  absl::Mutex load_mu_;
  // Registrations, their load states and metrics.
  mutable absl::Mutex state_mu_;
  std::map<std::string, ModelState> states_ ABSL_GUARDED_BY(state_mu_);
  // Published models, replaced whole (copy on write) under state_mu_ and
  // read with std::atomic_load.
  std::shared_ptr<const ModelMap> models_;
};

}  // namespace gati::serve

#endif  // GATI_SERVE_MODEL_REPOSITORY_H_
