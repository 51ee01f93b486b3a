// The staged base model: a TorchScript nn.Sequential of stages, its metadata,
// and frozen, optimized segments cut at chosen taps.
//
// Vocabulary (see docs/design.md): a *stage* is one child of the Sequential;
// the *tap* t is the boundary after stage t (taps 0 .. num_stages-2); a
// *segment* is a run of consecutive stages executed as one frozen module.
//
// LibTorch types appear here only as the forward-declared at::Tensor, so this
// header stays cheap to include.
#ifndef GATI_MODEL_H_
#define GATI_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gati/status.h"

namespace at {
class Tensor;
}  // namespace at

namespace gati {

// What the archive's gati.json says about the model.
struct ModelMetadata {
  int format_version = 0;
  std::string name;
  // Shape of one input without the batch dimension, e.g. {1, 28, 28}.
  std::vector<int64_t> input_shape;
  // Element type of the input; only "float32" is supported.
  std::string input_dtype;
  // How an image of another size becomes an input of input_shape's H x W:
  // scaled so that its shorter side is `resize_shorter_side` pixels (0: the
  // larger of H and W), then center-cropped ("input.resize" in gati.json).
  int64_t resize_shorter_side = 0;
  // Per-channel normalization: model input = (raw - mean) / std, raw in [0,1].
  std::vector<float> mean;
  std::vector<float> std;
  std::vector<std::string> class_names;
  // One name per stage, in execution order.
  std::vector<std::string> stage_names;
};

// The metadata format this build reads and the tool writes.
inline constexpr int kModelFormatVersion = 1;
// Name of the metadata file inside the TorchScript archive.
inline constexpr char kMetadataFileName[] = "gati.json";

// Parses and validates gati.json text. `source` names the file in errors.
absl::StatusOr<ModelMetadata> ParseModelMetadata(const std::string& json_text,
                                                 const std::string& source);

// Serializes metadata back to gati.json text (round-trips with the parser).
std::string ModelMetadataToJson(const ModelMetadata& metadata);

struct ModelOptions {
  // LibTorch intra-op threads. Process-wide: applied by StagedModel::Load.
  int intra_op_threads = 1;
  // "cpu", or "cuda"/"cuda:N" with a CUDA build of LibTorch.
  std::string device = "cpu";
};

// What loading learned about one stage.
struct StageInfo {
  int index = 0;
  std::string name;
  int64_t parameter_count = 0;
  // Bytes of parameters and buffers (e.g. batch-norm statistics).
  int64_t parameter_bytes = 0;
};

// Sets LibTorch's intra-op thread count for the whole process.
// Fails with InvalidArgument when threads < 1.
absl::Status SetIntraOpThreads(int threads);
// The intra-op thread count in force; report it beside every timing.
int GetIntraOpThreads();
// OpenMP keeps the thread count per thread and oneDNN's kernels read it
// directly, so a thread that never set it runs them on every core (on the
// 2-core machine, engine workers ran ResNet-56 about 45% slower than the
// main thread that way). Applies the count of the last SetIntraOpThreads to
// the calling thread; a thread_local check after the first call. Segment
// runs and trainers call it themselves.
void ApplyIntraOpThreadsToThisThread();

class SegmentedModel;

// A loaded, validated staged model. Immutable after Load; all const methods
// are thread-safe.
class StagedModel {
 public:
  // Loads the TorchScript archive at `path`, validates it and applies
  // options.intra_op_threads process-wide. Fails with InvalidArgument or
  // NotFound naming `path` and the problem: missing file, not a TorchScript
  // archive, top level not a Sequential, fewer than 2 stages, missing or
  // invalid metadata, a stage that does not map one tensor to one tensor.
  static absl::StatusOr<std::unique_ptr<StagedModel>> Load(
      const std::string& path, const ModelOptions& options = {});

  ~StagedModel();
  StagedModel(const StagedModel&) = delete;
  StagedModel& operator=(const StagedModel&) = delete;

  const std::string& path() const;
  const ModelMetadata& metadata() const;
  const ModelOptions& options() const;
  const std::vector<StageInfo>& stages() const;
  // Output shape of stage `stage` for a batch of one (batch dimension
  // included), recorded at load. REQUIRES: 0 <= stage < num_stages().
  const std::vector<int64_t>& stage_output_shape(int stage) const;

  // Opaque implementation (defined in src/model).
  struct Impl;

  int num_stages() const { return static_cast<int>(stages().size()); }
  int num_taps() const { return num_stages() - 1; }
  int num_classes() const {
    return static_cast<int>(metadata().class_names.size());
  }

  // Builds one frozen, optimize_for_inference module per segment implied by
  // `cut_taps` (strictly increasing tap indices in [0, num_taps)). No cuts
  // gives the whole model as one segment. Takes seconds for deep models.
  absl::StatusOr<std::unique_ptr<SegmentedModel>> Segment(
      const std::vector<int>& cut_taps) const;

  // Runs the unfrozen model (as loaded) on a batch; for reference checks.
  absl::StatusOr<at::Tensor> RunReference(const at::Tensor& input) const;

  // Checks that `input` is a float32 [batch, input_shape...] tensor on the
  // model's device with batch >= 1; the error says what is wrong.
  absl::Status ValidateInput(const at::Tensor& input) const;

 private:
  explicit StagedModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Frozen segments of a staged model, cut at fixed taps. Immutable; Run and
// RunSegment are thread-safe and may be called concurrently.
class SegmentedModel {
 public:
  ~SegmentedModel();
  SegmentedModel(const SegmentedModel&) = delete;
  SegmentedModel& operator=(const SegmentedModel&) = delete;

  const std::vector<int>& cut_taps() const;
  int num_segments() const;
  // First stage of segment k, and one past its last stage.
  int first_stage(int segment) const;
  int end_stage(int segment) const;

  // Runs `activation` (the output of the stage before first_stage(segment),
  // or the model input for segment 0) through one segment.
  // REQUIRES: 0 <= segment < num_segments(); checked, error otherwise.
  absl::StatusOr<at::Tensor> RunSegment(int segment,
                                        const at::Tensor& activation) const;

  // Validates `input` and runs every segment in order; returns the logits.
  absl::StatusOr<at::Tensor> Run(const at::Tensor& input) const;

 private:
  friend class StagedModel;
  struct Impl;
  explicit SegmentedModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gati

#endif  // GATI_MODEL_H_
