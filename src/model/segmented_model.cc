// Frozen, optimized segments of a staged model cut at chosen taps.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/torch_util.h"

namespace gati {
namespace {

// TorchScript source of a segment's forward: calls its stages in order.
//
// With `entry_channels` > 0 the segment starts with a depthwise 1x1
// convolution of weight 1 (an exact identity). On CPU, optimize_for_inference
// keeps a residual chain in MKLDNN layout only when it starts at a
// convolution; a segment whose dense input feeds residual additions directly
// would otherwise convert to and from MKLDNN around every block (measured:
// +8% on ResNet-56 for a single cut after the stem, +3% with the entry conv).
// The entry conv costs about what one block's conversions cost, so it only
// pays off for segments of several stages (measured on the demo ResNets: a
// loss for 1-3 stage segments).
constexpr int kMinStagesForMkldnnEntry = 4;
std::string SegmentForwardSource(int num_stages, int64_t entry_channels) {
  std::string source = "def forward(self, x):\n";
  if (entry_channels > 0) {
    absl::StrAppend(&source,
                    "    x = torch.conv2d(x, self.mkldnn_entry, None, [1, 1], "
                    "[0, 0], [1, 1], ",
                    entry_channels, ")\n");
  }
  for (int i = 0; i < num_stages; ++i) {
    absl::StrAppend(&source, "    x = self.s", i, ".forward(x)\n");
  }
  absl::StrAppend(&source, "    return x\n");
  return source;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SegmentedModel>> StagedModel::Segment(
    const std::vector<int>& cut_taps) const {
  for (size_t i = 0; i < cut_taps.size(); ++i) {
    if (cut_taps[i] < 0 || cut_taps[i] >= num_taps()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cut tap ", cut_taps[i], " out of range: ", impl_->path, " has taps 0..",
          num_taps() - 1));
    }
    if (i > 0 && cut_taps[i] <= cut_taps[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cut taps must be strictly increasing, got [",
          absl::StrJoin(cut_taps, ", "), "]"));
    }
  }
  auto impl = std::make_unique<SegmentedModel::Impl>();
  impl->metadata = impl_->metadata;
  impl->device = impl_->device;
  impl->cut_taps = cut_taps;
  int first = 0;
  for (size_t k = 0; k <= cut_taps.size(); ++k) {
    int end = k < cut_taps.size() ? cut_taps[k] + 1 : num_stages();
    impl->first_stage.push_back(first);
    impl->end_stage.push_back(end);
    first = end;
  }

  for (size_t k = 0; k < impl->first_stage.size(); ++k) {
    int begin = impl->first_stage[k];
    int count = impl->end_stage[k] - begin;
    GATI_RETURN_IF_ERROR(model_internal::CatchTorch(
        absl::StrCat(impl_->path, ": cannot build segment of stages ", begin,
                     "..", begin + count - 1),
        [&]() -> absl::Status {
          torch::jit::Module segment(
              c10::QualifiedName(absl::StrCat("gati_segment_", k)));
          segment.register_attribute("training", c10::BoolType::get(), false);
          for (int i = 0; i < count; ++i) {
            // freeze() clones, so the loaded stages are never modified.
            segment.register_module(absl::StrCat("s", i),
                                    impl_->stages[begin + i]);
          }
          int64_t entry_channels = 0;
          if (begin > 0 && count >= kMinStagesForMkldnnEntry &&
              impl_->device.is_cpu()) {
            const auto& tap_shape = impl_->stage_output_shapes[begin - 1];
            if (tap_shape.size() == 4) entry_channels = tap_shape[1];
          }
          if (entry_channels > 0) {
            segment.register_buffer(
                "mkldnn_entry",
                at::ones({entry_channels, 1, 1, 1},
                         at::TensorOptions().device(impl_->device)));
          }
          segment.define(SegmentForwardSource(count, entry_channels));
          segment.eval();
          torch::jit::Module frozen = torch::jit::freeze(segment);
          impl->segments.push_back(torch::jit::optimize_for_inference(frozen));
          return absl::OkStatus();
        }));
  }
  return std::unique_ptr<SegmentedModel>(new SegmentedModel(std::move(impl)));
}

SegmentedModel::SegmentedModel(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
SegmentedModel::~SegmentedModel() = default;

const std::vector<int>& SegmentedModel::cut_taps() const {
  return impl_->cut_taps;
}
int SegmentedModel::num_segments() const {
  return static_cast<int>(impl_->segments.size());
}
int SegmentedModel::first_stage(int segment) const {
  return impl_->first_stage.at(segment);
}
int SegmentedModel::end_stage(int segment) const {
  return impl_->end_stage.at(segment);
}

absl::StatusOr<at::Tensor> SegmentedModel::RunSegment(
    int segment, const at::Tensor& activation) const {
  if (segment < 0 || segment >= num_segments()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "segment ", segment, " out of range: there are ", num_segments()));
  }
  return model_internal::CatchTorch(
      absl::StrCat("segment ", segment, " (stages ",
                   impl_->first_stage[segment], "..",
                   impl_->end_stage[segment] - 1, ") failed"),
      [&]() -> absl::StatusOr<at::Tensor> {
        ApplyIntraOpThreadsToThisThread();
        c10::InferenceMode guard;
        torch::jit::Module module = impl_->segments[segment];
        return module.forward({activation}).toTensor();
      });
}

absl::StatusOr<at::Tensor> SegmentedModel::Run(const at::Tensor& input) const {
  GATI_RETURN_IF_ERROR(
      model_internal::ValidateModelInput(input, impl_->metadata, impl_->device));
  at::Tensor activation = input;
  for (int k = 0; k < num_segments(); ++k) {
    GATI_ASSIGN_OR_RETURN(activation, RunSegment(k, activation));
  }
  return activation;
}

}  // namespace gati
