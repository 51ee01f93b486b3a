// `gati trace`: writes a workload trace (NPY inputs + labels) made from the
// Fashion-MNIST test split, or from the user's data (--data).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "data/trace.h"
#include "gati/model.h"

namespace gati::cli {
namespace {

struct TraceFlags {
  std::string kind = "iid";
  TraceOptions options;
  std::string out;
  std::string labels_out;
  std::string data = "fashion-mnist";
  std::string labels;
  std::string model;  // For an image folder: its input shape and resize rule.
  std::string data_dir;  // Older spelling of --data for an IDX directory.
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "gati trace: %s\n", status.ToString().c_str());
  return kExitError;
}

// "T.npy" -> "T.labels.npy".
std::string LabelsPath(const std::string& out) {
  const std::string suffix = ".npy";
  if (out.size() > suffix.size() && out.compare(out.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return out.substr(0, out.size() - suffix.size()) + ".labels.npy";
  }
  return out + ".labels.npy";
}

int RunTrace(const TraceFlags& flags) {
  auto kind = ParseTraceKind(flags.kind);
  if (!kind.ok()) return Fail(kind.status());
  // Fashion-MNIST traces come from the test split only: it trains and
  // calibrates nothing. A user's file is theirs to hold out.
  std::unique_ptr<StagedModel> model;
  if (!flags.model.empty()) {
    auto loaded = StagedModel::Load(flags.model);
    if (!loaded.ok()) return Fail(loaded.status());
    model = std::move(*loaded);
  }
  auto source = OpenDataSource(flags.data_dir.empty() ? flags.data : flags.data_dir,
                               flags.labels, Split::kTest,
                               model ? &model->metadata() : nullptr);
  if (!source.ok()) return Fail(source.status());
  TraceOptions options = flags.options;
  options.kind = *kind;
  auto trace = MakeTrace(options, **source);
  if (!trace.ok()) return Fail(trace.status());
  const std::string labels_path = flags.labels_out.empty() ? LabelsPath(flags.out) : flags.labels_out;
  absl::Status status = WriteNpy(flags.out, trace->images);
  if (!status.ok()) return Fail(status);
  const bool labelled = !trace->labels.i64.empty();
  if (labelled) {
    status = WriteNpy(labels_path, trace->labels);
    if (!status.ok()) return Fail(status);
  }
  std::printf("wrote %s (%lld %s requests from %s, seed %llu)%s%s\n", flags.out.c_str(),
              static_cast<long long>(options.count), TraceKindName(*kind),
              (*source)->description().c_str(), static_cast<unsigned long long>(options.seed),
              labelled ? " and " : "; no labels file (the source has no labels)",
              labelled ? labels_path.c_str() : "");
  return kExitOk;
}

}  // namespace

std::function<int()> RegisterTraceCommand(CLI::App& app) {
  auto flags = std::make_shared<TraceFlags>();
  CLI::App* command = app.add_subcommand(
      "trace", "Write a workload trace (iid, skewed, video, mixed) from the Fashion-MNIST "
               "test split or from your data (--data X.npy).");
  command->add_option("--kind", flags->kind, "iid, skewed, video or mixed");
  command->add_option("--n", flags->options.count, "requests")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  command->add_option("--seed", flags->options.seed, "random seed");
  command->add_option("--zipf", flags->options.zipf_exponent,
                      "skewed: Zipf exponent of class popularity");
  command->add_option("--rotate-every", flags->options.rotate_every,
                      "skewed: requests between reshuffles of the class ranking");
  command->add_option("--burst-mean", flags->options.mean_burst,
                      "video: mean frames per burst");
  command->add_option("--max-shift", flags->options.max_shift,
                      "video: largest shift of a frame, in pixels");
  command->add_option("--noise", flags->options.noise, "video: pixel noise (std)");
  command->add_option("--brightness-step", flags->options.brightness_step,
                      "video: brightness drift per frame");
  command->add_option("--out", flags->out,
                      "trace file (NPY float32 [N, sample shape], e.g. [N, 1, 28, 28])")
      ->required();
  command->add_option("--data", flags->data,
                      "fashion-mnist (its test split), a directory of its IDX files, a folder "
                      "of PNG/JPEG images (with --model), or a .npy of (N, ...) float32 or "
                      "uint8 samples");
  command->add_option("--labels", flags->labels, "int64 .npy of labels for a .npy --data");
  command->add_option("--model", flags->model,
                      "staged model whose input shape and resize rule an image-folder --data "
                      "is converted to");
  command->add_option("--labels-out", flags->labels_out,
                      "labels file (default: OUT with .labels.npy)");
  command->add_option("--data-dir", flags->data_dir,
                      "directory of the Fashion-MNIST files (the same as --data DIR)");
  return [flags] { return RunTrace(*flags); };
}

}  // namespace gati::cli
