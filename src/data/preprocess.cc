#include "data/preprocess.h"

#include "absl/strings/str_cat.h"

namespace gati {

absl::StatusOr<Preprocessor> Preprocessor::Create(const ModelMetadata& metadata) {
  Preprocessor p;
  p.shape_ = metadata.input_shape;
  if (p.shape_.empty()) return absl::InvalidArgumentError("the model's input shape is empty");
  p.sample_size_ = 1;
  for (int64_t d : p.shape_) {
    if (d < 1) return absl::InvalidArgumentError("the model's input shape has a 0 dimension");
    p.sample_size_ *= d;
  }
  p.plane_ = p.sample_size_ / p.shape_[0];
  const size_t channels = static_cast<size_t>(p.shape_[0]);
  if (metadata.mean.size() != channels || metadata.std.size() != channels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "normalization needs one mean and one std per channel (", channels, "), has ",
        metadata.mean.size(), " and ", metadata.std.size()));
  }
  for (float s : metadata.std) {
    if (!(s > 0)) return absl::InvalidArgumentError("normalization std must be > 0");
  }
  p.mean_ = metadata.mean;
  p.std_ = metadata.std;
  return p;
}

void Preprocessor::Apply(const float* raw, int64_t count, float* out) const {
  const int64_t channels = shape_[0];
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      const float mean = mean_[c], std = std_[c];
      const int64_t base = i * sample_size_ + c * plane_;
      for (int64_t k = 0; k < plane_; ++k) out[base + k] = (raw[base + k] - mean) / std;
    }
  }
}

absl::Status Preprocessor::CheckShape(const Dataset& data) const {
  if (data.sample_shape() != shape_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the model takes inputs of shape ", ShapeString(shape_), ", the data ",
        data.description(), " has samples of ", ShapeString(data.sample_shape())));
  }
  return absl::OkStatus();
}

absl::Status Preprocessor::ReadNormalized(const Dataset& data, const std::vector<int64_t>& rows,
                                          std::vector<float>* out) const {
  out->resize(rows.size() * sample_size_);
  return ReadNormalized(data, rows, out->data());
}

absl::Status Preprocessor::ReadNormalized(const Dataset& data, const std::vector<int64_t>& rows,
                                          float* out) const {
  for (size_t i = 0; i < rows.size(); ++i) {
    GATI_RETURN_IF_ERROR(data.Read(rows[i], out + i * sample_size_));
  }
  Apply(out, static_cast<int64_t>(rows.size()), out);
  return absl::OkStatus();
}

}  // namespace gati
