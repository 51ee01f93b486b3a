// `gati eval MODEL`: ground-truth accuracy on a Fashion-MNIST split.
#include <CLI/CLI.hpp>

#include <torch/script.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "data/fashion_mnist.h"
#include "gati/model.h"
#include "model/input.h"

namespace gati::cli {
namespace {

struct EvalFlags {
  std::string model_path;
  std::string split = "test";
  std::string data_dir = kFashionMnistDir;
  int batch = 256;
  int threads = 1;
  int64_t limit = 0;
  std::string device = "cpu";
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "gati eval: %s\n", status.ToString().c_str());
  return kExitError;
}

int RunEval(const EvalFlags& flags) {
  auto split = ParseSplit(flags.split);
  if (!split.ok()) return Fail(split.status());
  ModelOptions options;
  options.intra_op_threads = flags.threads;
  options.device = flags.device;
  auto model = StagedModel::Load(flags.model_path, options);
  if (!model.ok()) return Fail(model.status());
  const ModelMetadata& metadata = (*model)->metadata();
  if (metadata.input_shape != std::vector<int64_t>{1, 28, 28}) {
    return Fail(absl::InvalidArgumentError(
        flags.model_path + ": takes inputs of another shape than "
                           "Fashion-MNIST's 1x28x28"));
  }
  if ((*model)->num_classes() != kFashionMnistClasses) {
    return Fail(absl::InvalidArgumentError(
        flags.model_path + ": has " + std::to_string((*model)->num_classes()) +
        " classes, Fashion-MNIST has 10"));
  }
  auto dataset = LoadFashionMnist(*split, flags.data_dir);
  if (!dataset.ok()) return Fail(dataset.status());
  auto whole = (*model)->Segment({});
  if (!whole.ok()) return Fail(whole.status());

  const int64_t count = flags.limit > 0
                            ? std::min<int64_t>(flags.limit, dataset->count)
                            : dataset->count;
  ProgressBar progress("eval " + flags.split, count);
  int64_t correct = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t begin = 0; begin < count; begin += flags.batch) {
    int64_t size = std::min<int64_t>(flags.batch, count - begin);
    auto input = ImagesToInput(dataset->image(begin), size, metadata);
    if (!input.ok()) return Fail(input.status());
    auto logits = (*whole)->Run(input->to(c10::Device(flags.device)));
    if (!logits.ok()) return Fail(logits.status());
    at::Tensor predicted = logits->argmax(1).cpu();
    const int64_t* labels = predicted.data_ptr<int64_t>();
    for (int64_t i = 0; i < size; ++i) {
      correct += labels[i] == dataset->labels[begin + i];
    }
    progress.Update(begin + size);
  }
  progress.Finish();
  double seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  std::printf("accuracy %.4f (%lld/%lld) on the %s split of %s\n",
              static_cast<double>(correct) / count,
              static_cast<long long>(correct), static_cast<long long>(count),
              flags.split.c_str(), flags.data_dir.c_str());
  std::printf("batch %d, intra-op threads %d, device %s, %.1f s "
              "(%.0f images/s)\n",
              flags.batch, GetIntraOpThreads(), flags.device.c_str(), seconds,
              count / seconds);
  return kExitOk;
}

}  // namespace

std::function<int()> RegisterEvalCommand(CLI::App& app) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* command = app.add_subcommand(
      "eval", "Ground-truth accuracy of a model on a Fashion-MNIST split.");
  command->add_option("MODEL", flags->model_path, "staged TorchScript model")
      ->required();
  command->add_option("--split", flags->split, "test, validation or train")
      ->check(CLI::IsMember({"test", "validation", "train"}));
  command->add_option("--data-dir", flags->data_dir,
                      "directory of the Fashion-MNIST gzip IDX files");
  command->add_option("--batch", flags->batch, "images per forward pass")
      ->check(CLI::Range(1, 65536));
  command->add_option("--threads", flags->threads, "LibTorch intra-op threads")
      ->check(CLI::Range(1, 256));
  command->add_option("--limit", flags->limit,
                      "evaluate only the first N images (0: all)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--device", flags->device, "cpu, or cuda with a CUDA "
                      "build of LibTorch");
  return [flags] { return RunEval(*flags); };
}

}  // namespace gati::cli
