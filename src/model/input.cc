#include "model/input.h"

#include "absl/strings/str_cat.h"
#include "model/torch_util.h"

namespace gati {

absl::StatusOr<at::Tensor> ImagesToInput(const uint8_t* pixels, int64_t count,
                                         const ModelMetadata& metadata) {
  if (count < 1 || pixels == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("need at least one image, got ", count));
  }
  std::vector<int64_t> shape = {count};
  shape.insert(shape.end(), metadata.input_shape.begin(),
               metadata.input_shape.end());
  const int64_t channels = metadata.input_shape[0];
  at::Tensor raw = at::from_blob(const_cast<uint8_t*>(pixels), shape,
                                 at::kByte);
  // Broadcast the per-channel statistics over [count, C, spatial...].
  std::vector<int64_t> stats_shape(shape.size(), 1);
  stats_shape[1] = channels;
  at::Tensor mean = at::tensor(metadata.mean).view(stats_shape);
  at::Tensor std = at::tensor(metadata.std).view(stats_shape);
  return (raw.to(at::kFloat).div_(255.0f) - mean).div_(std);
}

}  // namespace gati
