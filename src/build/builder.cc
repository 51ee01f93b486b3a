// BuildBundle: feature pass, predictor and selector training, calibration,
// profiling, bundle write.
#include "gati/build.h"

#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cache/calibration.h"
#include "cache/feature_kinds.h"
#include "build/path_timing.h"
#include "data/preprocess.h"
#include "gati/model.h"
#include "gati/profile.h"
#include "model/input.h"
#include "build/measured_plan.h"
#include "plan/bundle_plan.h"

namespace gati {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (a + 1) + 0xbf58476d1ce4e5b9ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

using Splits = BuildSplits;

// Images in the predictor-train and selector-train splits; the rest calibrate.
std::pair<int64_t, int64_t> SplitSizes(int64_t count, const BuildOptions& options) {
  return {static_cast<int64_t>(count * options.predictor_share),
          static_cast<int64_t>(count * options.selector_share)};
}

Splits MakeSplits(int64_t count, const BuildOptions& options) {
  const auto [predictor, selector] = SplitSizes(count, options);
  return DrawBuildSplits(count, predictor, selector, options.seed);
}

absl::StatusOr<ActivationShape> TapShape(const StagedModel& model, int tap) {
  const std::vector<int64_t>& shape = model.stage_output_shape(tap);
  if (shape.empty()) return absl::InvalidArgumentError(absl::StrCat("tap ", tap, ": a scalar"));
  return DetectActivationShape(std::vector<int64_t>(shape.begin() + 1, shape.end()),
                               absl::StrCat("tap ", tap));
}

// The activation as the caches read it: [B, C, H, W] (vectors [B, D, 1, 1],
// tokens [B, L, D]); contiguous.
at::Tensor AsNchw(const at::Tensor& activation, const ActivationShape& shape) {
  if (shape.layout == ActivationLayout::kTokens) {
    return activation.contiguous().view({activation.size(0), shape.height, shape.channels});
  }
  return activation.contiguous().view(
      {activation.size(0), shape.channels, shape.height, shape.width});
}

// The pooled features of a batch of activations (AsNchw, on the CPU as
// contiguous float32), through the variant kind's own pooling (the lookup
// path's): [B, FeatureSize].
at::Tensor PoolBatch(const at::Tensor& cpu, const VariantSpec& variant,
                     const ActivationShape& shape) {
  at::Tensor features = at::empty({cpu.size(0), FeatureSize(variant, shape)});
  cache_internal::PoolRows(variant, shape, cpu.data_ptr<float>(), cpu.size(0),
                           features.data_ptr<float>());
  return features;
}

// Runs the segmented model over `rows` of `data` in batches and hands each
// tap's activation ([B, C, H, W], contiguous) to `visit(tap_slot, batch_rows,
// activation)`; `logits` gets the final output when segments run to the end.
struct ModelPass {
  const SegmentedModel* segments;
  const Dataset* data;
  const Preprocessor* preprocessor;
  std::vector<ActivationShape> shapes;  // Per cut tap.
  int batch = 128;
};

absl::Status RunPass(
    const ModelPass& pass, const std::vector<int64_t>& rows, int last_segment,
    const std::function<void(size_t, const std::vector<int64_t>&,
                             const at::Tensor&)>& visit,
    const std::function<void(const std::vector<int64_t>&, const at::Tensor&)>&
        on_logits,
    const std::function<void(int64_t)>& on_progress) {
  const int64_t n = static_cast<int64_t>(rows.size());
  for (int64_t begin = 0; begin < n; begin += pass.batch) {
    const int64_t size = std::min<int64_t>(pass.batch, n - begin);
    std::vector<int64_t> batch_rows(rows.begin() + begin, rows.begin() + begin + size);
    GATI_ASSIGN_OR_RETURN(at::Tensor x, ReadInputs(*pass.data, batch_rows, *pass.preprocessor));
    for (int s = 0; s <= last_segment; ++s) {
      GATI_ASSIGN_OR_RETURN(x, pass.segments->RunSegment(s, x));
      if (s < pass.segments->num_segments() - 1) {
        visit(static_cast<size_t>(s), batch_rows, AsNchw(x, pass.shapes[s]));
      } else if (on_logits) {
        on_logits(batch_rows, x.contiguous());
      }
    }
    if (on_progress) on_progress(begin + size);
  }
  return absl::OkStatus();
}

// Runs `count` jobs on `threads` threads; returns the first error.
absl::Status RunJobs(int64_t count, int threads,
                     const std::function<absl::Status(int64_t)>& job) {
  std::atomic<int64_t> next{0};
  std::vector<absl::Status> errors(threads);
  auto worker = [&](int slot) {
    for (int64_t i = next++; i < count; i = next++) {
      absl::Status status;
      try {
        status = job(i);
      } catch (const std::exception& e) {
        status = absl::InternalError(absl::StrCat("training failed: ", e.what()));
      }
      if (!status.ok() && errors[slot].ok()) errors[slot] = status;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (std::thread& thread : pool) thread.join();
  for (const absl::Status& status : errors) GATI_RETURN_IF_ERROR(status);
  return absl::OkStatus();
}

// A cache with a placeholder selector: the plain predictor path before the
// selector is trained.
absl::StatusOr<std::unique_ptr<LearnedCache>> Provisional(CacheWeights weights) {
  DenseLayer placeholder;
  placeholder.in = kSelectorInputs;
  placeholder.out = 1;
  placeholder.weight.assign(kSelectorInputs, 0.0f);
  placeholder.bias.assign(1, 0.0f);
  weights.selector = {placeholder};
  return LearnedCache::Create(std::move(weights));
}

// The predictor's top softmax probability as the selector: sigmoid(8 p1 - 8)
// keeps p1's order (8 p1 and 8 p1 - 8 are exact in float, and the sigmoid
// near 0.5 still separates neighbouring float values of p1 near 1).
std::vector<DenseLayer> MaxSoftmaxSelector() {
  DenseLayer layer;
  layer.in = kSelectorInputs;
  layer.out = 1;
  layer.weight.assign(kSelectorInputs, 0.0f);
  layer.weight[0] = 8.0f;  // SelectorFeatures: the top probability comes first.
  layer.bias = {-8.0f};
  return {layer};
}

// Predictor logits (plain lookup path) of the selector-train and calibration
// rows, in split order.
struct HeldOutLogits {
  std::vector<float> selector;
  std::vector<float> calibration;
};

struct Finished {
  CacheWeights weights;
  CacheMetrics metrics;
  // Selector score and predictor class per calibration (planning) sample.
  std::vector<float> scores;
  std::vector<int32_t> classes;
};

// Trains the selector, calibrates the threshold, measures the cache.
absl::StatusOr<Finished> FinishCache(CacheWeights weights,
                                     const HeldOutLogits& logits,
                                     const Splits& splits,
                                     const std::vector<int64_t>& base_labels,
                                     const Dataset& data,
                                     const BuildOptions& options, uint64_t seed) {
  const int k = weights.num_classes;
  auto classes = [k](const std::vector<float>& all, size_t i) {
    const float* row = all.data() + i * k;
    return static_cast<int64_t>(std::max_element(row, row + k) - row);
  };
  std::vector<float> inputs(splits.selector.size() * kSelectorInputs);
  std::vector<bool> selector_agrees(splits.selector.size());
  for (size_t i = 0; i < splits.selector.size(); ++i) {
    SelectorFeatures(logits.selector.data() + i * k, k,
                     inputs.data() + i * kSelectorInputs);
    selector_agrees[i] = classes(logits.selector, i) == base_labels[splits.selector[i]];
  }
  // Choose the selector by validation: trained on three quarters of the
  // selector-train rows, it must tell agreeing answers apart better than
  // the predictor's own top probability on the held-out quarter (AUROC);
  // then it is trained on all of them. Otherwise the top probability is
  // the selector.
  std::vector<float> fit_inputs;
  std::vector<bool> fit_agrees;
  std::vector<size_t> held_out;
  for (size_t i = 0; i < splits.selector.size(); ++i) {
    if (i % 4 == 3) {
      held_out.push_back(i);
      continue;
    }
    fit_inputs.insert(fit_inputs.end(), inputs.begin() + i * kSelectorInputs,
                      inputs.begin() + (i + 1) * kSelectorInputs);
    fit_agrees.push_back(selector_agrees[i]);
  }
  bool learned = false;
  if (!held_out.empty() && !fit_agrees.empty()) {
    CacheWeights trial = weights;
    trial.selector = TrainSelector(fit_inputs, fit_agrees, options.selector, seed);
    GATI_ASSIGN_OR_RETURN(auto trial_cache, LearnedCache::Create(trial));
    // Against the top-probability selector as it would ship.
    CacheWeights plain = weights;
    plain.selector = MaxSoftmaxSelector();
    GATI_ASSIGN_OR_RETURN(auto plain_cache, LearnedCache::Create(plain));
    std::vector<float> trial_scores, top;
    std::vector<bool> held_agrees;
    for (size_t i : held_out) {
      trial_scores.push_back(trial_cache->SelectorScore(logits.selector.data() + i * k));
      top.push_back(plain_cache->SelectorScore(logits.selector.data() + i * k));
      held_agrees.push_back(selector_agrees[i]);
    }
    learned = Auroc(trial_scores, held_agrees) > Auroc(top, held_agrees);
  }
  weights.selector = learned ? TrainSelector(inputs, selector_agrees, options.selector, seed)
                             : MaxSoftmaxSelector();
  GATI_ASSIGN_OR_RETURN(auto cache, LearnedCache::Create(weights));

  std::vector<float> reference(splits.selector.size());
  for (size_t i = 0; i < splits.selector.size(); ++i) {
    reference[i] = cache->SelectorScore(logits.selector.data() + i * k);
  }
  const size_t n = splits.calibration.size();
  std::vector<float> scores(n);
  std::vector<int32_t> predicted_classes(n);
  std::vector<bool> agrees(n);
  std::vector<float> top(n);
  float features[kSelectorInputs];
  int64_t agreeing = 0, correct = 0;
  for (size_t i = 0; i < n; ++i) {
    scores[i] = cache->SelectorScore(logits.calibration.data() + i * k);
    SelectorFeatures(logits.calibration.data() + i * k, k, features);
    top[i] = features[0];
    int64_t predicted = classes(logits.calibration, i);
    predicted_classes[i] = static_cast<int32_t>(predicted);
    agrees[i] = predicted == base_labels[splits.calibration[i]];
    agreeing += agrees[i];
    correct += predicted == data.label(splits.calibration[i]);
  }
  std::vector<float> candidates = CandidateThresholds(
      reference, static_cast<int64_t>(n), options.epsilon, options.confidence);
  Calibration calibration = CalibrateThreshold(scores, agrees, candidates,
                                               options.epsilon, options.confidence);
  weights.enabled = calibration.found;
  weights.threshold = calibration.found ? calibration.threshold : 1.0f;
  Finished finished;
  CacheMetrics& m = finished.metrics;
  m.agreement = static_cast<double>(agreeing) / n;
  m.accuracy = data.has_labels() ? static_cast<double>(correct) / n : -1;
  m.hit_rate = calibration.hit_rate;
  m.false_hit_rate = calibration.false_hit_rate;
  m.false_hit_upper_bound = calibration.false_hit_upper_bound;
  m.hits = calibration.hits;
  m.false_hits = calibration.false_hits;
  m.calibration_count = static_cast<int64_t>(n);
  m.memory_bytes = cache->memory_bytes();
  m.selector = learned ? "learned" : "max-softmax";
  m.selector_auroc = Auroc(scores, agrees);
  m.max_softmax_auroc = Auroc(top, agrees);
  finished.weights = std::move(weights);
  finished.scores = std::move(scores);
  finished.classes = std::move(predicted_classes);
  return finished;
}

absl::Status ValidateOptions(const BuildOptions& o, const StagedModel& model,
                             const Dataset& data) {
  auto bad = [](const std::string& why) { return absl::InvalidArgumentError(why); };
  if (!(o.epsilon > 0 && o.epsilon < 1)) {
    return bad(absl::StrCat("--epsilon must lie in (0, 1), got ", o.epsilon));
  }
  if (!(o.confidence > 0 && o.confidence < 1)) {
    return bad(absl::StrCat("confidence must lie in (0, 1), got ", o.confidence));
  }
  if (!(o.distillation.alpha >= 0 && o.distillation.alpha <= 1)) {
    return bad(absl::StrCat("--alpha must lie in [0, 1], got ", o.distillation.alpha));
  }
  if (!(o.distillation.temperature > 0)) {
    return bad(absl::StrCat("--temperature must be > 0, got ",
                            o.distillation.temperature));
  }
  if (o.epochs < 1 || o.stream_epochs < 1) return bad("epochs must be >= 1");
  if (o.threads < 1) return bad("--threads must be >= 1");
  if (o.model_batch < 1 || o.distillation.batch < 1) return bad("batch must be >= 1");
  if (!(o.predictor_share > 0 && o.selector_share > 0 &&
        o.predictor_share + o.selector_share < 1)) {
    return bad("split shares must be > 0 and leave a calibration split");
  }
  for (const std::string& spec : o.variants) {
    GATI_RETURN_IF_ERROR(ParseVariantSpec(spec).status());
  }
  for (int tap : o.taps) {
    if (tap < 0 || tap >= model.num_taps()) {
      return bad(absl::StrCat("tap ", tap, " does not exist; ", model.path(),
                              " has taps 0..", model.num_taps() - 1));
    }
  }
  if (data.count() < 1) return bad("the data holds no samples");
  const std::vector<int64_t>& input = model.metadata().input_shape;
  if (input != data.sample_shape()) {
    return bad(absl::StrCat(model.path(), " takes inputs of shape ", ShapeString(input),
                            ", the data ", data.description(), " has samples of ",
                            ShapeString(data.sample_shape())));
  }
  const auto [predictor, selector] = SplitSizes(data.count(), o);
  if (predictor < 1 || selector < 1 || data.count() - predictor - selector < 1) {
    return bad(absl::StrCat(data.count(), " samples are too few to split three ways"));
  }
  if (data.has_labels()) {
    for (int64_t i = 0; i < data.count(); ++i) {
      const int64_t label = data.label(i);
      if (label < 0 || label >= model.num_classes()) {
        return bad(absl::StrCat("label ", label, " of sample ", i, " is outside the model's ",
                                model.num_classes(), " classes"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int>> ParseTapList(const std::string& text) {
  std::vector<int> taps;
  if (text == "all") return taps;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int tap = 0;
    if (!absl::SimpleAtoi(part, &tap) || tap < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--taps: '", std::string(part), "' is not a tap index (use all or e.g. 0,5,9)"));
    }
    taps.push_back(tap);
  }
  std::sort(taps.begin(), taps.end());
  if (std::adjacent_find(taps.begin(), taps.end()) != taps.end()) {
    return absl::InvalidArgumentError("--taps: a tap is listed twice");
  }
  return taps;
}

namespace {

absl::StatusOr<BuildReport> BuildBundleOrThrow(const BuildOptions& options,
                                               const Dataset& data,
                                               const std::string& out_dir,
                                               const BuildProgress& progress) {
  BuildReport report;
  auto step_start = Clock::now();
  auto end_step = [&](const std::string& name) {
    auto now = Clock::now();
    report.step_seconds.emplace_back(
        name, std::chrono::duration<double>(now - step_start).count());
    step_start = now;
  };
  auto tick = [&progress](const std::string& step, int64_t done, int64_t total) {
    if (progress) progress(step, done, total);
  };

  ModelOptions model_options;
  model_options.intra_op_threads = options.threads;
  GATI_ASSIGN_OR_RETURN(auto model, StagedModel::Load(options.model_path, model_options));
  GATI_RETURN_IF_ERROR(ValidateOptions(options, *model, data));
  GATI_ASSIGN_OR_RETURN(const Preprocessor preprocessor,
                        Preprocessor::Create(model->metadata()));
  std::vector<int> taps = options.taps;
  if (taps.empty()) {
    for (int tap = 0; tap < model->num_taps(); ++tap) taps.push_back(tap);
  }
  std::vector<std::string> specs = options.variants;
  if (specs.empty()) {
    // Every default that fits some tap's layout (filtered per tap below).
    for (ActivationLayout layout : {ActivationLayout::kChannels, ActivationLayout::kTokens,
                                    ActivationLayout::kVector}) {
      for (const std::string& spec : DefaultVariantSpecsFor(layout)) specs.push_back(spec);
    }
  }
  std::vector<VariantSpec> variants;
  for (const std::string& spec : specs) {
    GATI_ASSIGN_OR_RETURN(VariantSpec variant, ParseVariantSpec(spec));
    variants.push_back(variant);
  }
  std::vector<ActivationShape> shapes;
  for (int tap : taps) {
    GATI_ASSIGN_OR_RETURN(ActivationShape shape, TapShape(*model, tap));
    const bool any = std::any_of(variants.begin(), variants.end(),
                                 [&](const VariantSpec& v) { return VariantFits(v, shape); });
    if (!any) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tap ", tap, " carries activations ", ActivationShapeToString(shape),
          " and none of the variants fits them; they take ",
          VariantsThatFit(shape.layout), " variants"));
    }
    shapes.push_back(shape);
  }
  auto fits = [&](size_t slot, const VariantSpec& v) { return VariantFits(v, shapes[slot]); };
  const int num_classes = model->num_classes();
  const int64_t n = data.count();
  Splits splits = MakeSplits(n, options);
  report.images = n;
  report.predictor_train = static_cast<int64_t>(splits.predictor.size());
  report.selector_train = static_cast<int64_t>(splits.selector.size());
  report.calibration = static_cast<int64_t>(splits.calibration.size());
  if (const int64_t needed = MinimumHitsFor(options.epsilon, options.confidence);
      report.calibration < needed) {
    const double share = 1.0 - options.predictor_share - options.selector_share;
    report.warnings.push_back(absl::StrCat(
        "the calibration split holds ", report.calibration, " samples, and certifying epsilon ",
        options.epsilon, " at confidence ", options.confidence, " takes at least ", needed,
        " hits with no false hit, so no cache can be enabled; build on at least ",
        static_cast<int64_t>(std::ceil(needed / share)), " samples, or raise --epsilon"));
  }

  GATI_ASSIGN_OR_RETURN(auto segments, model->Segment(taps));
  ModelPass pass{segments.get(), &data, &preprocessor, shapes, options.model_batch};
  end_step("load and segment");

  // 1. Feature pass: pooled features of every image at every tap, for the
  //    pool sizes that pooled-feature variants read, and the base logits.
  // (tap slot, pool key) -> [N, F], for the poolings that fit each tap.
  std::map<std::pair<size_t, int>, at::Tensor> bank;
  std::map<std::pair<size_t, int>, const VariantSpec*> bank_pool;
  for (size_t slot = 0; slot < taps.size(); ++slot) {
    for (const VariantSpec& v : variants) {
      if (v.streams() || !fits(slot, v) || bank.count({slot, v.pool_key()})) continue;
      bank[{slot, v.pool_key()}] = at::empty({n, FeatureSize(v, shapes[slot])});
      bank_pool[{slot, v.pool_key()}] = &v;
      report.feature_bank_bytes += bank[{slot, v.pool_key()}].numel() * 4;
    }
  }
  at::Tensor teacher = at::empty({n, num_classes});
  std::vector<int64_t> all_rows(n);
  std::iota(all_rows.begin(), all_rows.end(), 0);
  {
    at::NoGradGuard no_grad;
    GATI_RETURN_IF_ERROR(RunPass(
        pass, all_rows, segments->num_segments() - 1,
        [&](size_t slot, const std::vector<int64_t>& rows, const at::Tensor& act) {
          const at::Tensor cpu = act.to(at::kCPU, at::kFloat).contiguous();  // Once per slot.
          for (const auto& [key, v] : bank_pool) {
            if (key.first != slot) continue;
            bank[key].narrow(0, rows.front(), rows.size()).copy_(PoolBatch(cpu, *v, shapes[slot]));
          }
        },
        [&](const std::vector<int64_t>& rows, const at::Tensor& logits) {
          teacher.narrow(0, rows.front(), rows.size()).copy_(logits);
        },
        [&](int64_t done) { tick("features", done, n); }));
  }
  report.feature_bank_bytes += teacher.numel() * 4;
  std::vector<int64_t> base_labels(n);
  {
    at::Tensor argmax = teacher.argmax(1).contiguous();
    std::copy_n(argmax.data_ptr<int64_t>(), n, base_labels.begin());
  }
  end_step("feature pass");

  // 2. Pooled-feature variants: every tap x variant is an independent job on
  //    one thread.
  struct Job {
    size_t slot;
    size_t variant;
  };
  std::vector<Job> feature_jobs, stream_jobs;
  for (size_t slot = 0; slot < taps.size(); ++slot) {
    for (size_t v = 0; v < variants.size(); ++v) {
      if (!fits(slot, variants[v])) continue;  // Another layout's variant.
      (variants[v].streams() ? stream_jobs : feature_jobs).push_back({slot, v});
    }
  }
  std::vector<Finished> finished(taps.size() * variants.size());
  auto finish_index = [&](const Job& job) { return job.slot * variants.size() + job.variant; };
  auto job_seed = [&](const Job& job) {
    return MixSeed(options.seed, taps[job.slot] + 1, job.variant + 1);
  };
  GATI_RETURN_IF_ERROR(SetIntraOpThreads(1));
  std::atomic<int64_t> jobs_done{0};
  absl::Status trained = RunJobs(
      static_cast<int64_t>(feature_jobs.size()), options.threads,
      [&](int64_t index) -> absl::Status {
        const Job& job = feature_jobs[index];
        const VariantSpec& variant = variants[job.variant];
        const at::Tensor& features = bank.at({job.slot, variant.pool_key()});
        PredictorTrainer trainer(variant, taps[job.slot], shapes[job.slot],
                                 num_classes, options.distillation, job_seed(job));
        trainer.TrainOnFeatures(features, teacher, splits.predictor, options.epochs);
        GATI_ASSIGN_OR_RETURN(auto provisional, Provisional(trainer.Export()));
        HeldOutLogits logits;
        const int64_t width = features.size(1);
        const float* feature_values = features.data_ptr<float>();
        for (auto [rows, out] : {std::pair{&splits.selector, &logits.selector},
                                 std::pair{&splits.calibration, &logits.calibration}}) {
          out->resize(rows->size() * num_classes);
          for (size_t i = 0; i < rows->size(); ++i) {
            provisional->PredictFromFeatures(feature_values + (*rows)[i] * width,
                                             out->data() + i * num_classes);
          }
        }
        GATI_ASSIGN_OR_RETURN(
            finished[finish_index(job)],
            FinishCache(trainer.Export(), logits, splits, base_labels, data,
                        options, job_seed(job) + 1));
        tick("train caches", ++jobs_done, static_cast<int64_t>(feature_jobs.size()));
        return absl::OkStatus();
      });
  GATI_RETURN_IF_ERROR(SetIntraOpThreads(options.threads));
  GATI_RETURN_IF_ERROR(trained);
  bank.clear();
  end_step("train pooled-feature caches");

  // 3. Streaming variants: the model prefix reruns for every batch and each
  //    tap's head takes a step on the raw activation; nothing is stored.
  if (!stream_jobs.empty()) {
    std::vector<std::unique_ptr<PredictorTrainer>> trainers;
    size_t last_slot = 0;
    const int64_t batch = options.distillation.batch;
    const int64_t steps_per_epoch =
        (static_cast<int64_t>(splits.predictor.size()) + batch - 1) / batch;
    for (const Job& job : stream_jobs) {
      trainers.push_back(std::make_unique<PredictorTrainer>(
          variants[job.variant], taps[job.slot], shapes[job.slot], num_classes,
          options.distillation, job_seed(job)));
      trainers.back()->SetTotalSteps(options.stream_epochs * steps_per_epoch);
      last_slot = std::max(last_slot, job.slot);
    }
    const int last_segment = static_cast<int>(last_slot);
    std::mt19937_64 rng(MixSeed(options.seed, 7, 7));
    ModelPass train_pass = pass;
    train_pass.batch = static_cast<int>(batch);
    const int64_t total = options.stream_epochs * report.predictor_train;
    for (int epoch = 0; epoch < options.stream_epochs; ++epoch) {
      std::vector<int64_t> order = splits.predictor;
      std::shuffle(order.begin(), order.end(), rng);
      at::Tensor batch_teacher;
      GATI_RETURN_IF_ERROR(RunPass(
          train_pass, order, last_segment,
          [&](size_t slot, const std::vector<int64_t>& rows, const at::Tensor& act) {
            if (slot == 0) {
              std::vector<int64_t> copy = rows;
              at::Tensor index = at::from_blob(copy.data(), {(int64_t)copy.size()},
                                               at::kLong).clone();
              batch_teacher = teacher.index_select(0, index);
            }
            for (size_t j = 0; j < stream_jobs.size(); ++j) {
              if (stream_jobs[j].slot == slot) {
                // Segments run in inference mode; autograd needs a normal tensor.
                trainers[j]->Step(act.clone(), batch_teacher);
              }
            }
          },
          {}, [&](int64_t done) {
            tick("train streaming caches", epoch * report.predictor_train + done, total);
          }));
    }
    // Held-out logits through the plain lookup path on the activations.
    std::vector<std::unique_ptr<LearnedCache>> provisional;
    for (auto& trainer : trainers) {
      GATI_ASSIGN_OR_RETURN(auto cache, Provisional(trainer->Export()));
      provisional.push_back(std::move(cache));
    }
    std::vector<HeldOutLogits> logits(stream_jobs.size());
    for (const auto& split :
         {std::pair{&splits.selector, &HeldOutLogits::selector},
          std::pair{&splits.calibration, &HeldOutLogits::calibration}}) {
      const std::vector<int64_t>* rows = split.first;
      std::vector<float> HeldOutLogits::*member = split.second;
      std::map<int64_t, size_t> position;
      for (size_t i = 0; i < rows->size(); ++i) position[(*rows)[i]] = i;
      for (HeldOutLogits& l : logits) (l.*member).resize(rows->size() * num_classes);
      at::NoGradGuard no_grad;
      GATI_RETURN_IF_ERROR(RunPass(
          pass, *rows, last_segment,
          [&](size_t slot, const std::vector<int64_t>& batch_rows, const at::Tensor& act) {
            const float* data = act.data_ptr<float>();
            const int64_t size = shapes[slot].size();
            for (size_t j = 0; j < stream_jobs.size(); ++j) {
              if (stream_jobs[j].slot != slot) continue;
              for (size_t b = 0; b < batch_rows.size(); ++b) {
                provisional[j]->Predict(
                    data + b * size,
                    (logits[j].*member).data() + position[batch_rows[b]] * num_classes);
              }
            }
          },
          {}, {}));
    }
    for (size_t j = 0; j < stream_jobs.size(); ++j) {
      GATI_ASSIGN_OR_RETURN(
          finished[finish_index(stream_jobs[j])],
          FinishCache(trainers[j]->Export(), logits[j], splits, base_labels,
                      data, options, job_seed(stream_jobs[j]) + 1));
    }
    end_step("train streaming caches");
  }

  // Tap x variant pairs whose layouts did not fit were never trained.
  finished.erase(std::remove_if(finished.begin(), finished.end(),
                                [](const Finished& f) { return f.weights.variant.name.empty(); }),
                 finished.end());

  // 4. Profiles at batch 1 on one thread, as a request is served: stage
  //    latencies for planning, lookup latency per cache. Lookups are timed
  //    first, before LibTorch's worker threads have spun up again.
  GATI_RETURN_IF_ERROR(SetIntraOpThreads(1));
  for (size_t i = 0; i < finished.size(); ++i) {
    GATI_ASSIGN_OR_RETURN(auto cache, LearnedCache::Create(finished[i].weights));
    finished[i].metrics.lookup_us =
        MedianLookupMicros(*cache, options.lookup_repetitions, options.seed + i);
    tick("profile", static_cast<int64_t>(i + 1), static_cast<int64_t>(finished.size()));
  }
  ProfileOptions profile_options;
  profile_options.warmup = 5;
  profile_options.repetitions = options.profile_repetitions;
  profile_options.seed = options.seed;
  GATI_ASSIGN_OR_RETURN(ModelProfile profile, ProfileModel(*model, profile_options));
  BundleManifest& manifest = report.manifest;
  for (const StageProfile& stage : profile.stages) {
    manifest.stage_p50_ms.push_back(stage.p50_ms);
  }
  manifest.whole_p50_ms = profile.whole_p50_ms;
  manifest.staged_p50_ms = profile.staged_p50_ms;
  manifest.profile_threads = profile.intra_op_threads;
  std::vector<const CacheWeights*> weights;
  GATI_RETURN_IF_ERROR(SetIntraOpThreads(options.threads));
  PlanningRecords records;
  for (int64_t row : splits.calibration) {
    records.base_classes.push_back(static_cast<int32_t>(base_labels[row]));
  }
  for (size_t i = 0; i < finished.size(); ++i) {
    records.caches.push_back({finished[i].weights.tap, finished[i].weights.variant.name,
                              finished[i].scores, finished[i].classes});
    CacheEntry entry;
    entry.tap = finished[i].weights.tap;
    entry.variant = finished[i].weights.variant.name;
    entry.metrics = finished[i].metrics;
    manifest.caches.push_back(entry);
    weights.push_back(&finished[i].weights);
  }
  end_step("profile");

  manifest.model_name = model->metadata().name;
  manifest.input_shape = model->metadata().input_shape;
  manifest.num_classes = num_classes;
  manifest.num_stages = model->num_stages();
  std::vector<std::string> variant_names;
  for (const VariantSpec& v : variants) variant_names.push_back(v.name);
  manifest.build = {
      {"data", options.data_description},
      {"images", std::to_string(n)},
      {"splits", absl::StrCat("predictor-train ", report.predictor_train,
                              ", selector-train ", report.selector_train,
                              ", calibration ", report.calibration)},
      {"epsilon", absl::StrCat(options.epsilon)},
      {"confidence", absl::StrCat(options.confidence)},
      {"alpha", absl::StrCat(options.distillation.alpha)},
      {"temperature", absl::StrCat(options.distillation.temperature)},
      {"epochs", absl::StrCat(options.epochs, " (streaming variants ",
                              options.stream_epochs, ")")},
      {"seed", std::to_string(options.seed)},
      {"taps", absl::StrJoin(taps, ",")},
      {"variants", absl::StrJoin(variant_names, ",")},
  };
  BuildSettings& settings = manifest.settings;
  settings.present = true;
  settings.data = options.data_description;
  settings.samples = n;
  settings.predictor_train = report.predictor_train;
  settings.selector_train = report.selector_train;
  settings.calibration = report.calibration;
  settings.seed = options.seed;
  settings.epsilon = options.epsilon;
  settings.confidence = options.confidence;
  settings.alpha = options.distillation.alpha;
  settings.temperature = options.distillation.temperature;
  settings.epochs = options.epochs;
  settings.stream_epochs = options.stream_epochs;
  settings.taps = taps;
  settings.variants = variant_names;
  // Replay sample: the first predictor-train images (already shuffled).
  ReplaySample replay;
  replay.count = std::min<int64_t>(options.replay_samples, report.predictor_train);
  if (replay.count > 0) {
    const std::vector<int64_t> rows(splits.predictor.begin(),
                                    splits.predictor.begin() + replay.count);
    GATI_RETURN_IF_ERROR(preprocessor.ReadNormalized(data, rows, &replay.inputs));
  }
  manifest.planning_split = "calibration";
  // The plan in force and its problem, kept for the parallel calibration.
  Plan final_plan;
  PlanningProblem final_problem;
  if (options.plan) {
    GATI_ASSIGN_OR_RETURN(PlanningProblem problem, ProblemFromManifest(manifest, records));
    GATI_RETURN_IF_ERROR(SetIntraOpThreads(1));  // As profiled and served.
    double model_only_mean_ms = 0;
    GATI_ASSIGN_OR_RETURN(
        Plan plan, PlanWithMeasuredSegments(*model, &problem, options.plan_options,
                                            options.profile_repetitions, 3,
                                            &model_only_mean_ms));
    // Calibrate what a lookup costs between segments on the plan's all-miss
    // path (CalibrateLookupCosts), then plan again on that; twice, since the
    // second plan may cut elsewhere.
    for (int round = 0; round < 2 && !plan.choices.empty() && replay.count > 0; ++round) {
      std::vector<std::unique_ptr<LearnedCache>> planned;
      std::vector<const LearnedCache*> planned_ptrs;
      for (const PlanChoice& choice : plan.choices) {
        const CandidateCache& candidate = problem.caches[choice.cache];
        for (const Finished& f : finished) {
          if (f.weights.tap == candidate.tap && f.weights.variant.name == candidate.variant) {
            GATI_ASSIGN_OR_RETURN(planned.emplace_back(), LearnedCache::Create(f.weights));
            planned_ptrs.push_back(planned.back().get());
          }
        }
      }
      GATI_RETURN_IF_ERROR(CalibrateLookupCosts(
          *model, plan, planned_ptrs, replay.inputs.data(), replay.count,
          std::max(60, 4 * options.profile_repetitions), &problem));
      manifest.lookup_overhead_ms = problem.lookup_overhead_ms;
      manifest.lookup_ms_per_mb = problem.lookup_ms_per_mb;
      GATI_ASSIGN_OR_RETURN(plan, PlanWithMeasuredSegments(*model, &problem,
                                                           options.plan_options,
                                                           options.profile_repetitions, 3,
                                                           nullptr));
    }
    GATI_RETURN_IF_ERROR(SetIntraOpThreads(options.threads));
    manifest.plan = ToStoredPlan(plan, problem, options.plan_options);
    manifest.plan.model_only_mean_ms = model_only_mean_ms;
    manifest.has_plan = true;
    final_plan = std::move(plan);
    final_problem = std::move(problem);
    end_step("plan");
  }
  GATI_RETURN_IF_ERROR(Bundle::Write(out_dir, manifest, options.model_path,
                                     weights, &records, &replay));
  if (options.time_modes && !final_plan.choices.empty() && !splits.calibration.empty()) {
    // Parallel mode's handoffs and contention, as the engine pays them on
    // this machine: time both modes on planning-split inputs, then price
    // the plan in the other mode with what was measured.
    const int64_t n = std::min<int64_t>(options.mode_timing_samples,
                                        static_cast<int64_t>(splits.calibration.size()));
    const std::vector<int64_t> rows(splits.calibration.begin(), splits.calibration.begin() + n);
    std::vector<float> inputs;
    GATI_RETURN_IF_ERROR(preprocessor.ReadNormalized(data, rows, &inputs));
    GATI_ASSIGN_OR_RETURN(ModeTiming timing, options.time_modes(out_dir, inputs.data(), n));
    GATI_RETURN_IF_ERROR(
        CalibrateParallelCost(final_plan, options.plan_options, timing, &final_problem));
    manifest.parallel_request_ms = final_problem.parallel_request_ms;
    const double model_only_mean_ms = manifest.plan.model_only_mean_ms;
    manifest.plan = ToStoredPlan(final_plan, final_problem, options.plan_options);
    manifest.plan.model_only_mean_ms = model_only_mean_ms;
    GATI_RETURN_IF_ERROR(SetIntraOpThreads(options.threads));
    GATI_ASSIGN_OR_RETURN(auto written, Bundle::Load(out_dir));
    BundleManifest rewritten = written->manifest();  // With file names and hashes.
    rewritten.parallel_request_ms = manifest.parallel_request_ms;
    rewritten.plan = manifest.plan;
    GATI_RETURN_IF_ERROR(Bundle::WriteManifest(out_dir, rewritten));
    end_step("time modes");
  }
  // Report the manifest as written (file names, hashes, sorted caches).
  GATI_ASSIGN_OR_RETURN(auto written, Bundle::Load(out_dir));
  report.manifest = written->manifest();
  end_step("write bundle");
  return report;
}

}  // namespace

absl::StatusOr<BuildReport> BuildBundle(const BuildOptions& options,
                                        const ImageDataset& images,
                                        const std::string& out_dir,
                                        const BuildProgress& progress) {
  std::unique_ptr<Dataset> data = ViewImages(images, options.data_description);
  return BuildBundle(options, *data, out_dir, progress);
}

absl::StatusOr<BuildReport> BuildBundle(const BuildOptions& options, const Dataset& data,
                                        const std::string& out_dir,
                                        const BuildProgress& progress) {
  // LibTorch reports failures as exceptions; they stop at this boundary.
  try {
    return BuildBundleOrThrow(options, data, out_dir, progress);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("building caches for ", options.model_path, ": ",
                     e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(
        "building caches for ", options.model_path, ": ", e.what()));
  }
}

BuildSplits DrawBuildSplits(int64_t count, int64_t predictor_rows, int64_t selector_rows,
                            uint64_t seed) {
  std::vector<int64_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(MixSeed(seed, 0, 0));
  std::shuffle(order.begin(), order.end(), rng);
  BuildSplits splits;
  splits.predictor.assign(order.begin(), order.begin() + predictor_rows);
  splits.selector.assign(order.begin() + predictor_rows,
                         order.begin() + predictor_rows + selector_rows);
  splits.calibration.assign(order.begin() + predictor_rows + selector_rows, order.end());
  // Sorted rows read the data in order; training shuffles on its own.
  for (auto* rows : {&splits.predictor, &splits.selector, &splits.calibration}) {
    std::sort(rows->begin(), rows->end());
  }
  return splits;
}

}  // namespace gati
