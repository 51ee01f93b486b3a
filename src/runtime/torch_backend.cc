// The engine on LibTorch: Engine::Create loads a bundle, cuts the base model
// at the plan's taps, builds the replay rows and the trainer, and assembles
// the torch-free engine core (engine.cc).
#include <torch/script.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cache/calibration.h"
#include "cache/head_trainer.h"
#include "gati/bundle.h"
#include "gati/engine.h"
#include "gati/model.h"
#include "runtime/engine_internal.h"

namespace gati {
namespace runtime {
namespace {

// What an Activation's holder keeps: the tensor on the model's device (the
// next segment's input) and its contiguous CPU copy (what lookups read).
struct TensorHolder {
  at::Tensor device;
  at::Tensor cpu;
};

absl::StatusOr<Activation> Wrap(at::Tensor tensor) {
  try {
    auto holder = std::make_shared<TensorHolder>();
    holder->device = tensor;
    holder->cpu = tensor.to(at::kCPU).contiguous();
    if (holder->cpu.scalar_type() != at::kFloat) {
      return absl::InternalError("a segment returned a non-float32 tensor");
    }
    Activation activation;
    activation.data = holder->cpu.data_ptr<float>();
    activation.batch = holder->cpu.size(0);
    activation.row_size = activation.batch > 0 ? holder->cpu.numel() / activation.batch : 0;
    activation.holder = std::move(holder);
    return activation;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("copying an activation failed: ", e.what()));
  }
}

class TorchSegmentRunner final : public SegmentRunner {
 public:
  TorchSegmentRunner(std::unique_ptr<StagedModel> model,
                     std::unique_ptr<SegmentedModel> segments,
                     std::unique_ptr<SegmentedModel> whole)
      : model_(std::move(model)), segments_(std::move(segments)), whole_(std::move(whole)) {}

  int num_segments() const override { return segments_->num_segments(); }

  absl::StatusOr<Activation> MakeInput(const float* data, int64_t batch) const override {
    std::vector<int64_t> shape = {batch};
    for (int64_t d : model_->metadata().input_shape) shape.push_back(d);
    try {
      at::Tensor input =
          at::from_blob(const_cast<float*>(data), shape, at::kFloat).clone();
      if (model_->options().device != "cpu") {
        input = input.to(at::Device(model_->options().device));
      }
      return Wrap(input);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("making the input failed: ", e.what()));
    }
  }

  absl::StatusOr<Activation> RunSegment(int segment,
                                        const Activation& input) const override {
    const auto& holder = *std::static_pointer_cast<TensorHolder>(input.holder);
    GATI_ASSIGN_OR_RETURN(at::Tensor out, segments_->RunSegment(segment, holder.device));
    return Wrap(out);
  }

  absl::StatusOr<Activation> SelectRows(const Activation& input,
                                        const std::vector<int64_t>& rows) const override {
    const auto& holder = *std::static_pointer_cast<TensorHolder>(input.holder);
    try {
      // A copy, not a view: a sampled row's activations wait for its
      // feedback, and a view would keep the whole batch's tensor alive.
      if (rows.size() == 1) return Wrap(holder.device.narrow(0, rows[0], 1).clone());
      at::Tensor index = at::from_blob(const_cast<int64_t*>(rows.data()),
                                       {static_cast<int64_t>(rows.size())}, at::kLong)
                             .to(holder.device.device());
      return Wrap(holder.device.index_select(0, index));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("selecting rows failed: ", e.what()));
    }
  }

  absl::StatusOr<Activation> RunWhole(const Activation& input) const override {
    const auto& holder = *std::static_pointer_cast<TensorHolder>(input.holder);
    GATI_ASSIGN_OR_RETURN(at::Tensor out, whole_->RunSegment(0, holder.device));
    return Wrap(out);
  }

 private:
  std::unique_ptr<StagedModel> model_;
  std::unique_ptr<SegmentedModel> segments_;
  std::unique_ptr<SegmentedModel> whole_;
};

class TorchCacheTrainer final : public CacheTrainer {
 public:
  absl::StatusOr<CacheWeights> Train(const CacheWeights& current,
                                     const TrainingRows& predictor_rows,
                                     const TrainingRows& selector_rows,
                                     const LearnerOptions& options, uint64_t seed,
                                     const std::function<void()>& yield) override {
    FineTuneOptions tune;
    tune.distillation.learning_rate = options.learning_rate;
    tune.distillation.batch = options.batch;
    tune.epochs = options.epochs;
    return FineTuneCache(
        current,
        {predictor_rows.features.data(), predictor_rows.logits.data(), predictor_rows.count},
        {selector_rows.features.data(), selector_rows.logits.data(), selector_rows.count},
        tune, seed, yield);
  }
};

// Runs the replay sample through the cut model and keeps, per planned tap,
// each input's training input and the base model's logits.
absl::StatusOr<std::vector<TrainingRows>> ReplayRows(
    const Bundle& bundle, const SegmentRunner& runner,
    const std::vector<std::shared_ptr<const LearnedCache>>& caches, int num_classes) {
  const ReplaySample& sample = bundle.replay();
  std::vector<TrainingRows> rows(caches.size());
  for (size_t s = 0; s < caches.size(); ++s) {
    rows[s].feature_size = caches[s]->training_input_size();
    rows[s].num_classes = num_classes;
  }
  if (sample.count == 0) return rows;
  const int64_t per_input = static_cast<int64_t>(sample.inputs.size()) / sample.count;
  constexpr int64_t kBatch = 64;
  for (int64_t begin = 0; begin < sample.count; begin += kBatch) {
    const int64_t batch = std::min(kBatch, sample.count - begin);
    GATI_ASSIGN_OR_RETURN(Activation x,
                          runner.MakeInput(sample.inputs.data() + begin * per_input, batch));
    std::vector<Activation> taps;
    for (int segment = 0; segment < runner.num_segments(); ++segment) {
      GATI_ASSIGN_OR_RETURN(x, runner.RunSegment(segment, x));
      if (segment + 1 < runner.num_segments()) taps.push_back(x);
    }
    for (size_t s = 0; s < caches.size(); ++s) {
      TrainingRows& out = rows[s];
      for (int64_t i = 0; i < batch; ++i) {
        out.features.resize((out.count + 1) * out.feature_size);
        caches[s]->ExtractTrainingInput(taps[s].data + i * taps[s].row_size,
                                        out.features.data() + out.count * out.feature_size);
        out.logits.insert(out.logits.end(), x.data + i * num_classes,
                          x.data + (i + 1) * num_classes);
        ++out.count;
      }
    }
  }
  return rows;
}

// Per planned cache, the upper confidence bound of its false-hit rate among
// the planning samples it answers under the plan (first hit in tap order),
// or nothing when the bundle has no planning records or no plan.
std::vector<double> PlannedTapBounds(const Bundle& bundle, double confidence) {
  const BundleManifest& manifest = bundle.manifest();
  const PlanningRecords& records = bundle.records();
  if (!manifest.has_plan || records.caches.empty() || records.base_classes.empty()) {
    return {};
  }
  std::vector<const CacheRecords*> planned;
  for (const PlannedCache& cache : manifest.plan.caches) {
    const CacheRecords* found = nullptr;
    for (const CacheRecords& r : records.caches) {
      if (r.tap == cache.tap && r.variant == cache.variant) found = &r;
    }
    if (found == nullptr) return {};
    planned.push_back(found);
  }
  std::vector<int64_t> hits(planned.size()), false_hits(planned.size());
  for (size_t i = 0; i < records.base_classes.size(); ++i) {
    for (size_t s = 0; s < planned.size(); ++s) {
      if (planned[s]->scores[i] >= manifest.plan.caches[s].threshold) {
        ++hits[s];
        false_hits[s] += planned[s]->classes[i] != records.base_classes[i];
        break;
      }
    }
  }
  std::vector<double> bounds;
  for (size_t s = 0; s < planned.size(); ++s) {
    bounds.push_back(std::min(0.999, ClopperPearsonUpper(false_hits[s], hits[s], confidence)));
  }
  return bounds;
}

}  // namespace
}  // namespace runtime

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const std::string& bundle_dir,
                                                       const EngineOptions& options) {
  using namespace runtime;
  GATI_RETURN_IF_ERROR(ValidateEngineOptions(options));
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<Bundle> bundle, Bundle::Load(bundle_dir));
  const BundleManifest& manifest = bundle->manifest();
  ModelOptions model_options;
  model_options.intra_op_threads = options.intra_op_threads;
  model_options.device = options.device;
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<StagedModel> model,
                        StagedModel::Load(bundle->model_path(), model_options));
  EngineParts parts;
  parts.metadata = model->metadata();
  if (manifest.settings.present) {
    parts.bundle_epsilon = manifest.settings.epsilon;
    parts.bundle_confidence = manifest.settings.confidence;
  } else {  // Bundles written before the typed settings.
    auto epsilon = manifest.build.find("epsilon");
    if (epsilon != manifest.build.end()) {
      double value = 0;
      if (absl::SimpleAtod(epsilon->second, &value) && value > 0 && value < 1) {
        parts.bundle_epsilon = value;
      }
    }
    auto confidence = manifest.build.find("confidence");
    if (confidence != manifest.build.end()) {
      double value = 0;
      if (absl::SimpleAtod(confidence->second, &value) && value > 0 && value < 1) {
        parts.bundle_confidence = value;
      }
    }
  }
  if (options.use_caches && manifest.has_plan) {
    parts.predicted_mean_ms = manifest.plan.mean_ms;
    parts.predicted_base_ms = manifest.plan.base_ms;
    parts.plan_batch = manifest.plan.batch;
    parts.predicted_mode = manifest.plan.mode == "parallel" ? LookupMode::kParallel
                                                            : LookupMode::kSequential;
    parts.predicted_other_mode_ms = manifest.plan.other_mode_mean_ms;
    if (manifest.plan.epsilon > 0 && manifest.plan.epsilon < 1) {
      parts.answer_epsilon = manifest.plan.epsilon;
    }
    for (const PlannedCache& planned : manifest.plan.caches) {
      const LearnedCache* cache = bundle->Find(planned.tap, planned.variant);
      if (cache == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(bundle_dir, ": the plan names ", planned.variant, " at tap ",
                         planned.tap, ", which the bundle does not hold"));
      }
      CacheWeights weights = cache->weights();
      weights.enabled = true;
      weights.threshold = planned.threshold;
      GATI_ASSIGN_OR_RETURN(std::unique_ptr<LearnedCache> served,
                            LearnedCache::Create(std::move(weights)));
      parts.taps.push_back(planned.tap);
      parts.caches.push_back(std::move(served));
      for (const CacheEntry& entry : manifest.caches) {
        if (entry.tap == planned.tap && entry.variant == planned.variant) {
          parts.lookup_ms.push_back(entry.metrics.lookup_us / 1000);
        }
      }
    }
  }
  if (!parts.taps.empty()) parts.tap_epsilon = PlannedTapBounds(*bundle, parts.bundle_confidence);
  if (parts.lookup_ms.size() != parts.taps.size()) parts.lookup_ms.clear();
  if (manifest.has_plan) {
    parts.miss_overhead_ms = std::max(0.0, manifest.plan.miss_ms - manifest.plan.base_ms);
    // A plan for batches has it per row of a batch; the other costs below
    // are a single request's: put it on their scale. Its miss path is a
    // batch in which no row hits (every fixed part paid): the worst case,
    // which weighs a miss a little heavier than a mixed batch does.
    if (manifest.plan.batch > 1 && manifest.plan.base_ms > 0 && manifest.whole_p50_ms > 0) {
      parts.miss_overhead_ms *= manifest.whole_p50_ms / manifest.plan.base_ms;
    }
  }
  if (manifest.has_plan && manifest.plan.exit_share.size() == parts.taps.size() + 1) {
    parts.exit_share = manifest.plan.exit_share;
    parts.exit_share_samples = manifest.planning_samples;
  }
  // What an answer at each planned tap saves: the whole model's profiled
  // time times the share of the stages after the cut (stages timed alone
  // add up to more than the fused whole).
  if (!parts.taps.empty() && manifest.whole_p50_ms > 0 &&
      static_cast<int>(manifest.stage_p50_ms.size()) > parts.taps.back()) {
    double total = 0;
    for (double ms : manifest.stage_p50_ms) total += ms;
    for (int tap : parts.taps) {
      double before = 0;
      for (int stage = 0; stage <= tap; ++stage) before += manifest.stage_p50_ms[stage];
      parts.exit_saving_ms.push_back(
          std::max(manifest.whole_p50_ms * (1 - before / std::max(total, 1e-9)), 1e-3));
    }
  }
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<SegmentedModel> segments, model->Segment(parts.taps));
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<SegmentedModel> whole, model->Segment({}));
  parts.runner = std::make_unique<TorchSegmentRunner>(std::move(model), std::move(segments),
                                                      std::move(whole));
  if (options.mode == LookupMode::kAuto && !parts.taps.empty()) {
    // Mode kAuto times the modes on the first replay-sample inputs.
    // A plan made for batches: enough for two of them, to time batches on.
    const ReplaySample& sample = bundle->replay();
    const int64_t wanted =
        options.auto_probe_requests > 0
            ? std::max<int64_t>(options.auto_probe_requests, 2 * int64_t{parts.plan_batch})
            : 0;
    const int64_t probes = std::min<int64_t>(sample.count, wanted);
    if (probes > 0) {
      const int64_t per_input = static_cast<int64_t>(sample.inputs.size()) / sample.count;
      parts.probe_inputs.assign(sample.inputs.begin(),
                                sample.inputs.begin() + probes * per_input);
      parts.probe_count = probes;
    }
  }
  if (options.learner.enabled && !parts.taps.empty()) {
    parts.trainer = std::make_unique<TorchCacheTrainer>();
    GATI_ASSIGN_OR_RETURN(parts.replay,
                          ReplayRows(*bundle, *parts.runner, parts.caches,
                                     static_cast<int>(parts.metadata.class_names.size())));
  }
  return CreateEngine(std::move(parts), options);
}

}  // namespace gati
