// `gati replay BUNDLE --trace T.npy`: replays a trace through the engine and
// through the whole frozen base model in the same run, interleaved, and
// reports latency, speedup, exits, agreement, accuracy and learner activity.
#include <CLI/CLI.hpp>

#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/progress_bar.h"
#include "data/dataset.h"
#include "data/file_io.h"
#include "data/npy.h"
#include "data/preprocess.h"
#include "gati/bundle.h"
#include "gati/engine.h"
#include "gati/model.h"
#include "gati/profile.h"
#include "nlohmann/json.hpp"

namespace gati::cli {
namespace {

struct ReplayFlags {
  std::string bundle;
  std::string trace;
  std::string labels;
  EngineFlags engine;
  int concurrency = 1;
  int64_t limit = 0;
  int warmup = 20;
  int64_t block = 50;
  std::string dump_taps;
  std::string summary_json;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "gati replay: %s\n", status.ToString().c_str());
  return kExitError;
}

// One replayed request: the engine's answer and the base model's, timed.
struct Outcome {
  int label = -1;
  int exit_tap = kBaseExit;
  bool exact_hit = false;
  int base_label = -1;
  double gati_us = 0;
  double queue_us = 0;
  double base_us = 0;
  bool learner_busy = false;
};

struct LatencySummary {
  double mean = 0, p50 = 0, p95 = 0, p99 = 0;
};

LatencySummary Summarize(const std::vector<double>& micros) {
  LatencySummary s;
  if (micros.empty()) return s;
  double total = 0;
  for (double v : micros) total += v;
  s.mean = total / micros.size() / 1000;
  s.p50 = Percentile(micros, 0.50) / 1000;
  s.p95 = Percentile(micros, 0.95) / 1000;
  s.p99 = Percentile(micros, 0.99) / 1000;
  return s;
}

// Loads the trace as normalized model inputs (Preprocessor), checking it
// against the model: a .npy of float32 raw values or uint8 images, one
// sample of the model's input shape per request.
absl::StatusOr<std::vector<float>> LoadInputs(const std::string& path,
                                              const ModelMetadata& metadata, int64_t* count,
                                              std::vector<int64_t>* labels) {
  // A directory (an image folder, a recording) replays in its order, with
  // its labels when it has them.
  const bool dir = std::filesystem::is_directory(path);
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> trace,
                        dir ? OpenDataSource(path, "", Split::kTest, &metadata)
                            : OpenNpyDataset(path, ""));
  trace = ChannelsFirstFor(std::move(trace), &metadata);
  if (trace->has_labels()) {
    for (int64_t i = 0; i < trace->count(); ++i) labels->push_back(trace->label(i));
  }
  GATI_ASSIGN_OR_RETURN(const Preprocessor preprocessor, Preprocessor::Create(metadata));
  if (trace->sample_shape() != metadata.input_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": a trace for this model is float32 (or uint8) [N, ",
        absl::StrJoin(metadata.input_shape, ", "), "]; it has samples of ",
        ShapeString(trace->sample_shape())));
  }
  *count = trace->count();
  std::vector<float> inputs(*count * preprocessor.sample_size());
  const int64_t size = preprocessor.sample_size();
  for (int64_t i = 0; i < *count; ++i) {
    GATI_RETURN_IF_ERROR(trace->Read(i, inputs.data() + i * size));
  }
  // A C x H x W model takes images: raw pixel values in [0, 1].
  if (metadata.input_shape.size() == 3 && !trace->unit_range()) {
    for (int64_t k = 0; k < static_cast<int64_t>(inputs.size()); ++k) {
      if (inputs[k] < 0 || inputs[k] > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": sample ", k / size, " holds ", inputs[k], " at element ",
                         k % size, "; the pixels of an image trace must be in [0, 1]"));
      }
    }
  }
  preprocessor.Apply(inputs.data(), *count, inputs.data());
  return inputs;
}

absl::StatusOr<std::vector<int64_t>> LoadLabels(const std::string& path, int64_t count,
                                                int num_classes) {
  GATI_ASSIGN_OR_RETURN(NpyArray labels, ReadNpy(path));
  if (labels.dtype != NpyDtype::kInt64 || labels.shape != std::vector<int64_t>{count}) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": labels must be int64 [", count, "] (one per request)"));
  }
  for (int64_t i = 0; i < count; ++i) {
    if (labels.i64[i] < 0 || labels.i64[i] >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": label ", i, " is ", labels.i64[i], ", not a class"));
    }
  }
  return labels.i64;
}

// Per request and per cache of the bundle: predictor class, its top
// probability, selector score and the base class, as CSV.
absl::Status DumpTaps(const std::string& out_path, const Bundle& bundle,
                      const StagedModel& model, const std::vector<float>& inputs,
                      int64_t count) {
  std::vector<int> taps;
  for (const CacheEntry& entry : bundle.manifest().caches) {
    if (taps.empty() || taps.back() != entry.tap) taps.push_back(entry.tap);
  }
  GATI_ASSIGN_OR_RETURN(auto segments, model.Segment(taps));
  int64_t per_input = 1;
  for (int64_t d : model.metadata().input_shape) per_input *= d;
  std::vector<int64_t> shape = {0};
  for (int64_t d : model.metadata().input_shape) shape.push_back(d);
  std::string csv = "request,tap,variant,predicted_class,top_probability,selector_score,base_class\n";
  const int num_classes = model.num_classes();
  std::vector<float> probabilities(num_classes);
  constexpr int64_t kBatch = 64;
  ProgressBar progress("dump taps", count);
  for (int64_t begin = 0; begin < count; begin += kBatch) {
    const int64_t batch = std::min(kBatch, count - begin);
    shape[0] = batch;
    at::Tensor x = at::from_blob(const_cast<float*>(inputs.data()) + begin * per_input,
                                 shape, at::kFloat)
                       .clone();
    if (model.options().device != "cpu") x = x.to(at::Device(model.options().device));
    std::vector<at::Tensor> activations;
    for (int s = 0; s < segments->num_segments(); ++s) {
      GATI_ASSIGN_OR_RETURN(x, segments->RunSegment(s, x));
      if (s + 1 < segments->num_segments()) activations.push_back(x.cpu().contiguous());
    }
    at::Tensor base = x.argmax(1).cpu();
    for (int64_t i = 0; i < batch; ++i) {
      const int64_t base_class = base[i].item<int64_t>();
      for (size_t c = 0; c < bundle.caches().size(); ++c) {
        const CacheEntry& entry = bundle.manifest().caches[c];
        const size_t slot = std::find(taps.begin(), taps.end(), entry.tap) - taps.begin();
        const at::Tensor& a = activations[slot];
        const int64_t row = a.numel() / batch;
        LookupResult result =
            bundle.caches()[c]->Lookup(a.data_ptr<float>() + i * row, probabilities.data());
        absl::StrAppendFormat(&csv, "%d,%d,%s,%d,%.6f,%.6f,%d\n", begin + i, entry.tap,
                              entry.variant, result.label, probabilities[result.label],
                              result.score, base_class);
      }
    }
    progress.Update(begin + batch);
  }
  progress.Finish();
  return WriteFileAtomic(out_path, csv);
}

int RunReplay(const ReplayFlags& flags) {
  auto options = MakeEngineOptions(flags.engine);
  if (!options.ok()) return Fail(options.status());
  auto engine = Engine::Create(flags.bundle, *options);
  if (!engine.ok()) return Fail(engine.status());
  Engine& gati = **engine;
  const LookupMode mode = gati.mode();
  const char* ran_as = gati.serving_base() ? "base-model" : LookupModeName(mode);
  int64_t count = 0;
  std::vector<int64_t> labels;
  auto inputs = LoadInputs(flags.trace, gati.metadata(), &count, &labels);
  if (!inputs.ok()) return Fail(inputs.status());
  if (!flags.labels.empty()) {
    auto loaded = LoadLabels(flags.labels, count, gati.num_classes());
    if (!loaded.ok()) return Fail(loaded.status());
    labels = std::move(*loaded);
  }
  if (flags.limit > 0) count = std::min(count, flags.limit);
  int64_t input_size = 1;
  for (int64_t d : gati.input_shape()) input_size *= d;

  // Warm-up on the first requests: allocations, lazy initialization.
  for (int i = 0; i < flags.warmup && i < count; ++i) {
    const float* x = inputs->data() + i * input_size;
    auto a = gati.Infer(x, input_size);
    auto b = gati.InferBase(x, input_size);
    if (!a.ok()) return Fail(a.status());
    if (!b.ok()) return Fail(b.status());
  }
  gati.WaitForFeedback();

  std::vector<Outcome> outcomes(count);
  std::atomic<bool> failed{false};
  absl::Status first_error;
  std::mutex error_mutex;
  ProgressBar progress("replay", count);
  std::atomic<int64_t> done{0};
  // Keeps the first error and stops every client.
  auto failure = [&](const absl::Status& status) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!failed) first_error = status;
    failed = true;
  };
  // Clients take blocks of consecutive requests and replay each block on
  // one side, then on the other (the order alternates per block): each side
  // runs with its own weights warm in the caches, as it would serving alone,
  // and both sides see the same stretch of the machine's drift.
  const int64_t block = flags.block;
  std::atomic<int64_t> next_block{0};
  auto client = [&] {
    for (int64_t b = next_block++; b * block < count && !failed; b = next_block++) {
      const int64_t begin = b * block;
      const int64_t end = std::min(count, begin + block);
      for (int side = 0; side < 2 && !failed; ++side) {
        const bool engine_side = (side + b) % 2 == 0;
        for (int64_t i = begin; i < end; ++i) {
          const float* x = inputs->data() + i * input_size;
          Outcome& out = outcomes[i];
          const bool busy_before = gati.learner_busy();
          auto result =
              engine_side ? gati.Infer(x, input_size) : gati.InferBase(x, input_size);
          if (!result.ok()) return failure(result.status());
          if (engine_side) {
            out.label = result->label;
            out.exit_tap = result->exit_tap;
            out.exact_hit = result->exact_hit;
            out.gati_us = result->timings.total_us;
            out.queue_us = result->timings.queue_us;
            out.learner_busy = busy_before || gati.learner_busy();
          } else {
            out.base_label = result->label;
            out.base_us = result->timings.total_us;
          }
        }
      }
      done += end - begin;
      progress.Update(done);
    }
  };
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < flags.concurrency; ++c) clients.emplace_back(client);
  for (std::thread& t : clients) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.Finish();
  if (failed) return Fail(first_error);
  gati.WaitForFeedback();
  EngineStats stats = gati.Stats();

  std::vector<double> gati_us, base_us, busy_us, rest_us, base_busy_us, base_rest_us, queue_us;
  // Requests that missed every cache, and the base model on the same inputs.
  std::vector<double> miss_us, miss_base_us;
  int64_t agree = 0, correct = 0, base_correct = 0, exact_hits = 0;
  std::map<int, int64_t> exits;
  for (int64_t i = 0; i < count; ++i) {
    const Outcome& o = outcomes[i];
    gati_us.push_back(o.gati_us);
    if (!o.exact_hit) queue_us.push_back(o.queue_us);
    base_us.push_back(o.base_us);
    (o.learner_busy ? busy_us : rest_us).push_back(o.gati_us);
    (o.learner_busy ? base_busy_us : base_rest_us).push_back(o.base_us);
    agree += o.label == o.base_label;
    exact_hits += o.exact_hit;
    if (o.exit_tap == kBaseExit && !o.exact_hit) {
      miss_us.push_back(o.gati_us);
      miss_base_us.push_back(o.base_us);
    }
    ++exits[o.exit_tap];
    if (!labels.empty()) {
      correct += o.label == labels[i];
      base_correct += o.base_label == labels[i];
    }
  }
  const LatencySummary g = Summarize(gati_us);
  const LatencySummary b = Summarize(base_us);
  const LatencySummary miss = Summarize(miss_us);
  const LatencySummary miss_base = Summarize(miss_base_us);
  std::printf("\n%lld requests, concurrency %d, %s mode, intra-op threads %d, workers %d, "
              "online learning %s, %.1f s\n",
              static_cast<long long>(count), flags.concurrency, ran_as,
              flags.engine.threads, flags.engine.workers, flags.engine.online.c_str(), seconds);
  std::printf("mode: %s\n", gati.mode_report().c_str());
  std::printf("planned taps: %zu%s\n\n", gati.planned_taps().size(),
              flags.engine.no_cache ? " (caches off: --no-cache)" : "");
  std::printf("%-22s %9s %9s %9s %9s\n", "latency (ms)", "mean", "p50", "p95", "p99");
  std::printf("%-22s %9.3f %9.3f %9.3f %9.3f\n", "gati", g.mean, g.p50, g.p95, g.p99);
  std::printf("%-22s %9.3f %9.3f %9.3f %9.3f\n", "base model (frozen)", b.mean, b.p50,
              b.p95, b.p99);
  auto ratio = [](double base, double ours) { return ours > 0 ? base / ours : 0.0; };
  std::printf("%-22s %8.2fx %8.2fx %8.2fx %8.2fx\n\n", "speedup (base / gati)",
              ratio(b.mean, g.mean), ratio(b.p50, g.p50), ratio(b.p95, g.p95),
              ratio(b.p99, g.p99));
  if (!miss_us.empty()) {
    std::printf("requests that missed every cache (%zu): mean %.3f ms, p50 %.3f ms; the base "
                "model on the same inputs: mean %.3f ms, p50 %.3f ms (miss path x%.3f at the "
                "mean)\n",
                miss_us.size(), miss.mean, miss.p50, miss_base.mean, miss_base.p50,
                miss_base.mean > 0 ? miss.mean / miss_base.mean : 0.0);
  }
  if (gati.plan_batch() > 1) {
    std::printf("the plan was made for batches of %d (gati plan --batch): its predictions are "
                "per row of such a batch, not compared with single requests here "
                "(gati_bench_batch compares them)\n",
                gati.plan_batch());
  } else if (gati.predicted_mean_ms() > 0) {
    // Absolute times drift with the machine's load between build and replay;
    // the speedup is the comparable figure.
    const double predicted_speedup =
        gati.predicted_base_ms() > 0 ? gati.predicted_base_ms() / gati.predicted_mean_ms() : 0;
    std::printf("planner's predicted mean %.3f ms, measured %.3f ms (measured / predicted "
                "%.2f); predicted speedup %.2fx (base %.3f ms at build), measured %.2fx\n",
                gati.predicted_mean_ms(), g.mean, g.mean / gati.predicted_mean_ms(),
                predicted_speedup, gati.predicted_base_ms(), ratio(b.mean, g.mean));
  }
  if (!flags.summary_json.empty()) {
    auto latency = [](const LatencySummary& s) {
      return nlohmann::json{{"mean_ms", s.mean}, {"p50_ms", s.p50}, {"p95_ms", s.p95},
                            {"p99_ms", s.p99}};
    };
    nlohmann::json summary = {
        {"bundle", flags.bundle},
        {"model", gati.metadata().name},
        {"trace", flags.trace},
        {"requests", count},
        {"mode_asked", flags.engine.mode},
        {"mode", ran_as},
        {"mode_report", gati.mode_report()},
        {"planned_taps", gati.planned_taps()},
        {"gati", latency(g)},
        {"base", latency(b)},
        {"misses", miss_us.size()},
        {"miss_path", latency(miss)},
        {"miss_path_base", latency(miss_base)},
        {"predicted_mean_ms", gati.predicted_mean_ms()},
        {"plan_batch", gati.plan_batch()},
        {"predicted_base_ms", gati.predicted_base_ms()},
        {"agreement", static_cast<double>(agree) / count},
        {"cache_hits", stats.cache_hits}};
    absl::Status written = WriteFileAtomic(flags.summary_json, summary.dump(2) + "\n");
    if (!written.ok()) return Fail(written);
  }
  if (!queue_us.empty() && mode == LookupMode::kParallel) {
    std::printf("wait for a worker: p50 %.0f us, p99 %.0f us\n", Percentile(queue_us, 0.5),
                Percentile(queue_us, 0.99));
  }
  std::printf("answered at:");
  for (const auto& [tap, n] : exits) {
    std::printf("  %s %.1f%%", tap == kBaseExit ? "base" : absl::StrCat("tap ", tap).c_str(),
                100.0 * n / count);
  }
  std::printf("\n");
  if (exact_hits > 0 || options->exact_cache_bytes > 0) {
    std::printf("exact-match cache: %lld hits (%.1f%%), %lld bytes\n",
                static_cast<long long>(exact_hits), 100.0 * exact_hits / count,
                static_cast<long long>(stats.exact_bytes));
  }
  std::printf("agreement with the base model: %.4f (%lld/%lld)\n",
              static_cast<double>(agree) / count, static_cast<long long>(agree),
              static_cast<long long>(count));
  if (!labels.empty()) {
    std::printf("accuracy: gati %.4f, base model %.4f\n", static_cast<double>(correct) / count,
                static_cast<double>(base_correct) / count);
  }
  std::printf("feedback: %lld requests, %.1f of %.1f MB held; cache version %lld\n",
              static_cast<long long>(stats.feedback_requests), stats.feedback_bytes / 1e6,
              stats.feedback_capacity_bytes / 1e6, static_cast<long long>(stats.cache_version));
  std::printf("cache updates: %lld accepted, %lld rejected in %lld learner rounds "
              "(%.1f s of learner CPU)\n",
              static_cast<long long>(stats.updates_accepted),
              static_cast<long long>(stats.updates_rejected),
              static_cast<long long>(stats.learner_rounds), stats.learner_busy_seconds);
  if (!busy_us.empty()) {
    // Requests that overlapped a learner round against the rest, for gati
    // and for the base model (which shows what the machine itself did).
    const LatencySummary busy = Summarize(busy_us);
    const LatencySummary rest = Summarize(rest_us);
    const LatencySummary base_busy = Summarize(base_busy_us);
    const LatencySummary base_rest = Summarize(base_rest_us);
    std::printf("while the learner trained (%zu requests) vs at rest (%zu): p99 gati %.3f vs "
                "%.3f ms (x%.2f), base model %.3f vs %.3f ms (x%.2f); p50 gati x%.2f\n",
                busy_us.size(), rest_us.size(), busy.p99, rest.p99,
                rest.p99 > 0 ? busy.p99 / rest.p99 : 0.0, base_busy.p99, base_rest.p99,
                base_rest.p99 > 0 ? base_busy.p99 / base_rest.p99 : 0.0,
                rest.p50 > 0 ? busy.p50 / rest.p50 : 0.0);
  }
  int disabled = 0;
  std::printf("\n%5s %-24s %9s %9s %8s %9s %8s %10s %10s %9s %8s\n", "tap", "variant",
              "plan thr", "threshold", "epsilon", "lookups", "hits", "checked", "false",
              "disabled", "updates");
  for (const TapStats& t : stats.taps) {
    disabled += t.disabled;
    char threshold[16] = "off";
    if (t.threshold <= 1.0f) std::snprintf(threshold, sizeof(threshold), "%.4f", t.threshold);
    std::printf("%5d %-24s %9.4f %9s %8.4f %9lld %8lld %10lld %10lld %9s %4lld/%lld\n", t.tap,
                t.variant.c_str(), t.plan_threshold, threshold, t.epsilon,
                static_cast<long long>(t.lookups),
                static_cast<long long>(t.hits), static_cast<long long>(t.feedback_hits),
                static_cast<long long>(t.feedback_false_hits),
                t.disabled ? "yes" : (t.times_disabled > 0 ? "was" : "no"),
                static_cast<long long>(t.updates_accepted),
                static_cast<long long>(t.updates_accepted + t.updates_rejected));
  }
  std::printf("taps disabled by the monitor now: %d\n", disabled);
  std::printf("live bound on disagreement over all answers (epsilon %g): %lld of %lld sampled "
              "answers disagreed since the sequence last started (weighted by inverse "
              "sampling rate: %.4f); %.0f%% confidence sequence [%.4f, %.4f]; breaches acted "
              "on: %lld\n",
              stats.answer_epsilon, static_cast<long long>(stats.live_disagreements),
              static_cast<long long>(stats.live_checked), stats.live_disagreement_weighted,
              100 * options->live_confidence, stats.live_disagreement_lower,
              stats.live_disagreement_upper, static_cast<long long>(stats.live_tightenings));
  std::printf("thresholds in force: %s, from %s", stats.threshold_policy.c_str(),
              stats.threshold_source == "plan"   ? "the plan"
              : stats.threshold_source == "live" ? "recalibration"
                                                 : "nothing certified yet");
  if (stats.threshold_source == "live") {
    std::printf(" (upper bound %.4f on %lld sampled requests)", stats.recalibration_upper,
                static_cast<long long>(stats.recalibration_samples));
  }
  std::printf("; %lld recalibrations changed them\n",
              static_cast<long long>(stats.recalibrations));
  std::printf("exit-share drift from the plan: %lld alarms, drifting now: %s\n",
              static_cast<long long>(stats.exit_drift_alarms), stats.exit_drift ? "yes" : "no");
  std::printf("feedback CPU: %.2f s on workers after the answers, %.3f s recalibrating; "
              "%lld false-hit cool-downs\n",
              stats.feedback_busy_seconds, stats.recalibration_busy_seconds,
              static_cast<long long>(stats.false_hit_cooldowns));
  std::printf("feedback: %lld requests checked, %lld of them at a raised rate\n",
              static_cast<long long>(stats.feedback_requests),
              static_cast<long long>(stats.feedback_boosted_requests));
  if (!flags.dump_taps.empty()) {
    // Every cache of the bundle, planned or not, on the model cut at every
    // tap that has one: a second copy of the model, loaded only for this.
    auto bundle = Bundle::Load(flags.bundle);
    if (!bundle.ok()) return Fail(bundle.status());
    ModelOptions model_options;
    model_options.intra_op_threads = flags.engine.threads;
    model_options.device = flags.engine.device;
    auto model = StagedModel::Load((*bundle)->model_path(), model_options);
    if (!model.ok()) return Fail(model.status());
    absl::Status dumped = DumpTaps(flags.dump_taps, **bundle, **model, *inputs, count);
    if (!dumped.ok()) return Fail(dumped);
    std::printf("wrote %s\n", flags.dump_taps.c_str());
  }
  return kExitOk;
}

}  // namespace

std::function<int()> RegisterReplayCommand(CLI::App& app) {
  auto flags = std::make_shared<ReplayFlags>();
  CLI::App* command = app.add_subcommand(
      "replay",
      "Replay a trace through the engine and the whole base model (same run, "
      "interleaved) and compare latency, exits and agreement.");
  command->add_option("BUNDLE", flags->bundle, "bundle directory (gati build)")->required();
  command->add_option("--trace", flags->trace,
                      "the requests: a .npy of float32 raw values or uint8 images, one sample "
                      "of the model's input shape each (gati trace), or a directory: an image "
                      "folder or a recording, replayed in order (with a folder's labels)")
      ->required();
  command->add_option("--labels", flags->labels, "NPY int64 [N] ground-truth classes");
  AddEngineFlags(command, &flags->engine);
  command->add_option("--concurrency", flags->concurrency, "replaying client threads")
      ->check(CLI::Range(1, 1024));
  command->add_option("--limit", flags->limit, "replay only the first N requests (0: all)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--warmup", flags->warmup, "untimed requests first")
      ->check(CLI::Range(0, 100000));
  command->add_option("--block", flags->block,
                      "requests replayed on one side before switching to the other")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  command->add_option("--summary-json", flags->summary_json,
                      "also write the latency summary, the mode and agreement as JSON");
  command->add_option("--dump-taps", flags->dump_taps,
                      "write per request and cache: class, top probability, selector "
                      "score, base class (CSV)");
  return [flags] { return RunReplay(*flags); };
}

}  // namespace gati::cli
