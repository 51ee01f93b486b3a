// `gati eval MODEL`: ground-truth accuracy on a Fashion-MNIST split, or on
// any labelled data source (--data).
#include <CLI/CLI.hpp>

#include <torch/script.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "data/preprocess.h"
#include "gati/model.h"
#include "model/input.h"

namespace gati::cli {
namespace {

struct EvalFlags {
  std::string model_path;
  std::string split = "test";
  std::string data_dir;  // Older spelling of --data for an IDX directory.
  std::string data = "fashion-mnist";
  std::string labels;
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
  const std::string source = flags.data_dir.empty() ? flags.data : flags.data_dir;
  auto dataset = OpenDataSource(source, flags.labels, *split, &metadata);
  if (!dataset.ok()) return Fail(dataset.status());
  if (!(*dataset)->has_labels()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        (*dataset)->description(), ": has no labels; accuracy needs them (--labels)")));
  }
  auto preprocessor = Preprocessor::Create(metadata);
  if (!preprocessor.ok()) return Fail(preprocessor.status());
  absl::Status fits = preprocessor->CheckShape(**dataset);
  if (!fits.ok()) return Fail(absl::InvalidArgumentError(flags.model_path + ": " +
                                                          std::string(fits.message())));
  for (int64_t i = 0; i < (*dataset)->count(); ++i) {
    if ((*dataset)->label(i) >= (*model)->num_classes()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          (*dataset)->description(), ": label ", (*dataset)->label(i), " of sample ", i,
          " is outside the model's ", (*model)->num_classes(), " classes")));
    }
  }
  auto whole = (*model)->Segment({});
  if (!whole.ok()) return Fail(whole.status());

  const Dataset& data = **dataset;
  const int64_t count = flags.limit > 0 ? std::min<int64_t>(flags.limit, data.count())
                                        : data.count();
  ProgressBar progress("eval " + flags.split, count);
  int64_t correct = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t begin = 0; begin < count; begin += flags.batch) {
    int64_t size = std::min<int64_t>(flags.batch, count - begin);
    std::vector<int64_t> rows(size);
    for (int64_t i = 0; i < size; ++i) rows[i] = begin + i;
    auto input = ReadInputs(data, rows, *preprocessor);
    if (!input.ok()) return Fail(input.status());
    auto logits = (*whole)->Run(input->to(c10::Device(flags.device)));
    if (!logits.ok()) return Fail(logits.status());
    at::Tensor predicted = logits->argmax(1).cpu();
    const int64_t* labels = predicted.data_ptr<int64_t>();
    for (int64_t i = 0; i < size; ++i) {
      correct += labels[i] == data.label(begin + i);
    }
    progress.Update(begin + size);
  }
  progress.Finish();
  double seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  std::printf("accuracy %.4f (%lld/%lld) on %s\n", static_cast<double>(correct) / count,
              static_cast<long long>(correct), static_cast<long long>(count),
              data.description().c_str());
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
                      "directory of the Fashion-MNIST gzip IDX files (the same as --data DIR)");
  command->add_option("--data", flags->data,
                      "fashion-mnist (its --split), a directory of its IDX files, a folder of "
                      "images in class subdirectories, or a .npy with --labels");
  command->add_option("--labels", flags->labels, "int64 .npy of labels for a .npy --data");
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
