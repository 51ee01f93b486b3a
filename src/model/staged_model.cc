// Loading and validation of staged TorchScript models.
#include <atomic>
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <filesystem>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/torch_util.h"

namespace gati {
namespace model_internal {

std::string FirstLine(const std::string& message) {
  std::string line = message.substr(0, message.find('\n'));
  return line.empty() ? message : line;
}

std::string ShapeToString(c10::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status ValidateModelInput(const at::Tensor& input,
                                const ModelMetadata& metadata,
                                const c10::Device& device) {
  if (!input.defined()) return absl::InvalidArgumentError("input is empty");
  if (input.scalar_type() != at::kFloat) {
    return absl::InvalidArgumentError(
        absl::StrCat("input dtype is ", c10::toString(input.scalar_type()),
                     ", the model takes float32"));
  }
  std::vector<int64_t> want = {-1};
  want.insert(want.end(), metadata.input_shape.begin(),
              metadata.input_shape.end());
  bool shape_ok = input.dim() == static_cast<int64_t>(want.size()) &&
                  input.size(0) >= 1;
  for (size_t d = 1; shape_ok && d < want.size(); ++d) {
    shape_ok = input.size(d) == want[d];
  }
  if (!shape_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input shape is ", ShapeToString(input.sizes()),
        ", the model takes [batch, ",
        absl::StrJoin(metadata.input_shape, ", "), "]"));
  }
  if (input.device() != device) {
    return absl::InvalidArgumentError(
        absl::StrCat("input is on ", input.device().str(),
                     ", the model is on ", device.str()));
  }
  return absl::OkStatus();
}

namespace {

absl::Status Invalid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// A stage must take exactly one tensor and return exactly one tensor.
absl::Status CheckStageSignature(const torch::jit::Module& stage, int index,
                                 const std::string& path) {
  auto forward = stage.find_method("forward");
  if (!forward) {
    return Invalid(path, absl::StrCat("stage ", index, " has no forward()"));
  }
  const c10::FunctionSchema& schema = forward->function().getSchema();
  const auto& args = schema.arguments();  // args[0] is self.
  const auto& returns = schema.returns();
  bool one_tensor_in = args.size() == 2 &&
                       args[1].type()->kind() == c10::TypeKind::TensorType;
  bool one_tensor_out = returns.size() == 1 &&
                        returns[0].type()->kind() == c10::TypeKind::TensorType;
  if (!one_tensor_in || !one_tensor_out) {
    std::ostringstream signature;
    signature << schema;
    return Invalid(path, absl::StrCat("stage ", index,
                                      " does not map one tensor to one tensor: ",
                                      signature.str()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StagedModel::Impl>> LoadImpl(
    const std::string& path, const ModelOptions& options) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if (!std::filesystem::is_regular_file(path, error)) {
    return Invalid(path, "not a regular file");
  }
  auto impl = std::make_unique<StagedModel::Impl>();
  impl->path = path;
  impl->options = options;
  GATI_RETURN_IF_ERROR(model_internal::CatchTorch(
      absl::StrCat(path, ": invalid device '", options.device, "'"),
      [&]() -> absl::Status {
        impl->device = c10::Device(options.device);
        return absl::OkStatus();
      }));
  if (impl->device.is_cuda() && !at::hasCUDA()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": device ", options.device,
        " requested but this LibTorch build has no usable CUDA device"));
  }

  torch::jit::ExtraFilesMap extra_files{{kMetadataFileName, ""}};
  GATI_RETURN_IF_ERROR(model_internal::CatchTorch(
      absl::StrCat(path, ": not a TorchScript archive"), [&]() -> absl::Status {
        impl->module = torch::jit::load(path, impl->device, extra_files);
        return absl::OkStatus();
      }));

  auto type_name = impl->module.type()->name();
  if (!type_name || type_name->name() != "Sequential") {
    return Invalid(path, absl::StrCat(
        "top-level module is ",
        type_name ? type_name->qualifiedName() : std::string("unnamed"),
        ", expected an nn.Sequential of stages"));
  }
  for (const auto& child : impl->module.named_children()) {
    impl->stages.push_back(child.value);
  }
  if (impl->stages.size() < 2) {
    return Invalid(path, absl::StrCat("has ", impl->stages.size(),
                                      " stage(s); a staged model needs at "
                                      "least 2"));
  }
  for (size_t i = 0; i < impl->stages.size(); ++i) {
    GATI_RETURN_IF_ERROR(
        CheckStageSignature(impl->stages[i], static_cast<int>(i), path));
  }

  const std::string& metadata_text = extra_files[kMetadataFileName];
  if (metadata_text.empty()) {
    return Invalid(path, absl::StrCat("no ", kMetadataFileName,
                                      " metadata in the archive (export it "
                                      "with tools/gati_export.py)"));
  }
  GATI_ASSIGN_OR_RETURN(impl->metadata,
                        ParseModelMetadata(metadata_text, path));
  if (impl->metadata.stage_names.size() != impl->stages.size()) {
    return Invalid(path, absl::StrCat(
        kMetadataFileName, " names ", impl->metadata.stage_names.size(),
        " stages but the Sequential has ", impl->stages.size()));
  }

  impl->module.eval();
  // One zero input through the stages: catches stages that fail at run time
  // and records the activation shape at every tap.
  GATI_RETURN_IF_ERROR(model_internal::CatchTorch(
      absl::StrCat(path, ": the model fails on a zero input of shape [1, ",
                   absl::StrJoin(impl->metadata.input_shape, ", "), "]"),
      [&]() -> absl::Status {
        c10::InferenceMode guard;
        std::vector<int64_t> shape = {1};
        shape.insert(shape.end(), impl->metadata.input_shape.begin(),
                     impl->metadata.input_shape.end());
        at::Tensor activation = at::zeros(shape, at::TensorOptions()
                                                     .dtype(at::kFloat)
                                                     .device(impl->device));
        for (torch::jit::Module& stage : impl->stages) {
          activation = stage.forward({activation}).toTensor();
          impl->stage_output_shapes.emplace_back(activation.sizes().begin(),
                                                 activation.sizes().end());
        }
        return absl::OkStatus();
      }));

  for (size_t i = 0; i < impl->stages.size(); ++i) {
    StageInfo info;
    info.index = static_cast<int>(i);
    info.name = impl->metadata.stage_names[i];
    for (const at::Tensor& p : impl->stages[i].parameters()) {
      info.parameter_count += p.numel();
      info.parameter_bytes += p.numel() * p.element_size();
    }
    for (const at::Tensor& b : impl->stages[i].buffers()) {
      info.parameter_bytes += b.numel() * b.element_size();
    }
    impl->stage_infos.push_back(info);
  }
  return impl;
}

}  // namespace
}  // namespace model_internal

namespace {
// Bumped by every SetIntraOpThreads, so threads know to re-apply the count.
std::atomic<uint64_t> intra_op_generation{0};
std::atomic<int> intra_op_threads{1};
}  // namespace

absl::Status SetIntraOpThreads(int threads) {
  if (threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("intra-op threads must be >= 1, got ", threads));
  }
  at::set_num_threads(threads);
  intra_op_threads = threads;
  ++intra_op_generation;
  // LibTorch's linear layers call the BLAS, which keeps its own thread pool:
  // OpenBLAS (Debian's libopenblas0-pthread) would otherwise run every call
  // on all cores, and serializes calls from concurrent threads. Looked up at
  // run time so that other BLAS builds need nothing.
  using SetBlasThreads = void (*)(int);
  static const auto set_blas_threads = reinterpret_cast<SetBlasThreads>(
      ::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas_threads != nullptr) set_blas_threads(threads);
  return absl::OkStatus();
}

int GetIntraOpThreads() { return at::get_num_threads(); }

void ApplyIntraOpThreadsToThisThread() {
  thread_local uint64_t seen = 0;
  const uint64_t generation = intra_op_generation.load(std::memory_order_acquire);
  if (generation != seen) {
    // at::set_num_threads also calls omp_set_num_threads for this thread.
    at::set_num_threads(intra_op_threads.load(std::memory_order_relaxed));
    seen = generation;
  }
}

StagedModel::StagedModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StagedModel::~StagedModel() = default;

absl::StatusOr<std::unique_ptr<StagedModel>> StagedModel::Load(
    const std::string& path, const ModelOptions& options) {
  GATI_RETURN_IF_ERROR(SetIntraOpThreads(options.intra_op_threads));
  GATI_ASSIGN_OR_RETURN(auto impl, model_internal::LoadImpl(path, options));
  return std::unique_ptr<StagedModel>(new StagedModel(std::move(impl)));
}

const std::string& StagedModel::path() const { return impl_->path; }
const ModelMetadata& StagedModel::metadata() const { return impl_->metadata; }
const ModelOptions& StagedModel::options() const { return impl_->options; }
const std::vector<StageInfo>& StagedModel::stages() const {
  return impl_->stage_infos;
}

const std::vector<int64_t>& StagedModel::stage_output_shape(int stage) const {
  return impl_->stage_output_shapes.at(stage);
}

absl::Status StagedModel::ValidateInput(const at::Tensor& input) const {
  return model_internal::ValidateModelInput(input, impl_->metadata,
                                            impl_->device);
}

absl::StatusOr<at::Tensor> StagedModel::RunReference(
    const at::Tensor& input) const {
  GATI_RETURN_IF_ERROR(ValidateInput(input));
  return model_internal::CatchTorch(
      absl::StrCat(impl_->path, ": forward failed"),
      [&]() -> absl::StatusOr<at::Tensor> {
        c10::InferenceMode guard;
        torch::jit::Module module = impl_->module;
        return module.forward({input}).toTensor();
      });
}

}  // namespace gati
