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
  GATI_ASSIGN_OR_RETURN(const Preprocessor preprocessor, Preprocessor::Create(metadata));
  std::vector<int64_t> shape = {count};
  shape.insert(shape.end(), metadata.input_shape.begin(), metadata.input_shape.end());
  at::Tensor out = at::empty(shape, at::kFloat);
  float* values = out.data_ptr<float>();
  const int64_t n = count * preprocessor.sample_size();
  for (int64_t k = 0; k < n; ++k) values[k] = pixels[k] / 255.0f;
  preprocessor.Apply(values, count, values);
  return out;
}

absl::StatusOr<at::Tensor> ReadInputs(const Dataset& data, const std::vector<int64_t>& rows,
                                      const Preprocessor& preprocessor) {
  if (rows.empty()) return absl::InvalidArgumentError("no samples to read");
  GATI_RETURN_IF_ERROR(preprocessor.CheckShape(data));
  std::vector<int64_t> shape = {static_cast<int64_t>(rows.size())};
  shape.insert(shape.end(), preprocessor.input_shape().begin(),
               preprocessor.input_shape().end());
  at::Tensor out = at::empty(shape, at::kFloat);
  GATI_RETURN_IF_ERROR(preprocessor.ReadNormalized(data, rows, out.data_ptr<float>()));
  return out;
}

}  // namespace gati
