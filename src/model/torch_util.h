// LibTorch helpers private to src/model: the one place where c10::Error
// becomes a Status, and the Impl structs shared by the model's TUs.
#ifndef GATI_MODEL_TORCH_UTIL_H_
#define GATI_MODEL_TORCH_UTIL_H_

#include <torch/script.h>

#include <string>
#include <vector>

#include "gati/model.h"

namespace gati {
namespace model_internal {

// The first line of a LibTorch error message (the rest is a C++ backtrace).
std::string FirstLine(const std::string& message);

// Runs `body` (returning absl::Status or StatusOr) and turns any exception
// it throws into InvalidArgument prefixed by `context`: LibTorch reports bad
// archives, bad devices and inputs a module cannot take (as c10::Error, or as
// std::runtime_error from the TorchScript interpreter) this way.
template <typename Fn>
auto CatchTorch(const std::string& context, Fn&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        context + ": " + FirstLine(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(context + ": " + FirstLine(e.what()));
  }
}

std::string ShapeToString(c10::IntArrayRef shape);

// Checks that `input` is a float32 [batch >= 1, input_shape...] tensor on
// `device`.
absl::Status ValidateModelInput(const at::Tensor& input,
                                const ModelMetadata& metadata,
                                const c10::Device& device);

}  // namespace model_internal

struct StagedModel::Impl {
  std::string path;
  ModelMetadata metadata;
  ModelOptions options;
  std::vector<StageInfo> stage_infos;
  c10::Device device{c10::kCPU};
  // The archive as loaded (eval mode, not frozen) and its stages.
  torch::jit::Module module;
  std::vector<torch::jit::Module> stages;
  // Output shape of every stage for one input (batch dimension 1).
  std::vector<std::vector<int64_t>> stage_output_shapes;
};

struct SegmentedModel::Impl {
  ModelMetadata metadata;
  c10::Device device{c10::kCPU};
  std::vector<int> cut_taps;
  std::vector<int> first_stage;  // Per segment.
  std::vector<int> end_stage;    // Per segment, exclusive.
  // Frozen, optimized modules. Module is a handle; forward() is thread-safe
  // but not const, so calls go through a copy of the handle.
  std::vector<torch::jit::Module> segments;
};

}  // namespace gati

#endif  // GATI_MODEL_TORCH_UTIL_H_
