// `gati info MODEL`: the stage table and whole-model latency.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "gati/model.h"
#include "gati/profile.h"

namespace gati::cli {
namespace {

struct InfoFlags {
  std::string model_path;
  int threads = 1;
  int repetitions = 50;
  int warmup = 10;
  std::string device = "cpu";
};

std::string Shape(const std::vector<int64_t>& shape, size_t skip) {
  return absl::StrJoin(shape.begin() + static_cast<long>(skip), shape.end(),
                       "x");
}

int RunInfo(const InfoFlags& flags) {
  ModelOptions options;
  options.intra_op_threads = flags.threads;
  options.device = flags.device;
  auto model = StagedModel::Load(flags.model_path, options);
  if (!model.ok()) {
    std::fprintf(stderr, "gati info: %s\n", model.status().ToString().c_str());
    return kExitError;
  }
  const ModelMetadata& metadata = (*model)->metadata();
  std::printf("model: %s (%s)\n", flags.model_path.c_str(),
              metadata.name.c_str());
  std::printf("input: %s %s, normalization mean [%s] std [%s]\n",
              Shape(metadata.input_shape, 0).c_str(),
              metadata.input_dtype.c_str(),
              absl::StrJoin(metadata.mean, ", ").c_str(),
              absl::StrJoin(metadata.std, ", ").c_str());
  std::printf("classes: %d (%s)\n", (*model)->num_classes(),
              absl::StrJoin(metadata.class_names, ", ").c_str());
  std::printf("stages: %d, taps: %d\n", (*model)->num_stages(),
              (*model)->num_taps());

  ProfileOptions profile_options;
  profile_options.repetitions = flags.repetitions;
  profile_options.warmup = flags.warmup;
  auto profile = ProfileModel(**model, profile_options);
  if (!profile.ok()) {
    std::fprintf(stderr, "gati info: %s\n",
                 profile.status().ToString().c_str());
    return kExitError;
  }
  std::printf("timing: batch 1, intra-op threads %d, %d interleaved "
              "repetitions after %d warm-up, device %s\n\n",
              profile->intra_op_threads, profile->repetitions,
              flags.warmup, flags.device.c_str());
  std::printf("%4s  %-18s %-10s %9s %10s %8s %8s %6s %6s\n", "idx", "name",
              "output", "params", "bytes", "p50 ms", "p90 ms", "share",
              "cum %");
  for (const StageProfile& stage : profile->stages) {
    std::printf("%4d  %-18s %-10s %9lld %10lld %8.4f %8.4f %5.1f%% %5.1f%%\n",
                stage.index, stage.name.c_str(),
                Shape(stage.output_shape, 1).c_str(),
                static_cast<long long>(stage.parameter_count),
                static_cast<long long>(stage.parameter_bytes), stage.p50_ms,
                stage.p90_ms, 100 * stage.share,
                100 * stage.cumulative_share);
  }
  std::printf("\nwhole model (frozen, optimized): p50 %.4f ms, p90 %.4f ms\n",
              profile->whole_p50_ms, profile->whole_p90_ms);
  std::printf("cut at every tap (%d segments): p50 %.4f ms, p90 %.4f ms, "
              "overhead %+.1f%% (median of per-repetition ratios)\n",
              (*model)->num_stages(), profile->staged_p50_ms,
              profile->staged_p90_ms, 100 * profile->staged_overhead);
  return kExitOk;
}

}  // namespace

std::function<int()> RegisterInfoCommand(CLI::App& app) {
  auto flags = std::make_shared<InfoFlags>();
  CLI::App* command = app.add_subcommand(
      "info", "Show a staged model's stages, shapes, parameters and latency.");
  command->add_option("MODEL", flags->model_path, "staged TorchScript model")
      ->required();
  command->add_option("--threads", flags->threads, "LibTorch intra-op threads")
      ->check(CLI::Range(1, 256));
  command->add_option("--repetitions", flags->repetitions,
                      "timed repetitions per stage")
      ->check(CLI::Range(1, 100000));
  command->add_option("--warmup", flags->warmup, "untimed warm-up runs")
      ->check(CLI::Range(0, 100000));
  command->add_option("--device", flags->device, "cpu, or cuda with a CUDA "
                      "build of LibTorch");
  return [flags] { return RunInfo(*flags); };
}

}  // namespace gati::cli
