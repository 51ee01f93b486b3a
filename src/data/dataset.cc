#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "data/image_folder.h"

namespace gati {
namespace {

absl::Status IndexError(int64_t i, int64_t count) {
  return absl::OutOfRangeError(
      absl::StrCat("sample ", i, " does not exist (", count, " samples)"));
}

class ImageView : public Dataset {
 public:
  ImageView(const ImageDataset& images, std::string description)
      : images_(images),
        shape_{1, images.rows, images.cols},
        description_(std::move(description)) {}
  int64_t count() const override { return images_.count; }
  const std::vector<int64_t>& sample_shape() const override { return shape_; }
  absl::Status Read(int64_t i, float* out) const override {
    if (i < 0 || i >= images_.count) return IndexError(i, images_.count);
    const uint8_t* pixels = images_.image(i);
    for (int64_t k = 0; k < images_.rows * images_.cols; ++k) out[k] = pixels[k] / 255.0f;
    return absl::OkStatus();
  }
  bool has_labels() const override {
    return static_cast<int64_t>(images_.labels.size()) == images_.count;
  }
  int64_t label(int64_t i) const override { return has_labels() ? images_.labels[i] : -1; }
  std::string description() const override { return description_; }
  bool unit_range() const override { return true; }

 private:
  const ImageDataset& images_;
  const std::vector<int64_t> shape_;
  const std::string description_;
};

// Owns the images it views (declared first, so they exist before the view).
struct ImageStorage {
  ImageDataset images;
};
class OwnedImages final : private ImageStorage, public ImageView {
 public:
  OwnedImages(ImageDataset images, std::string description)
      : ImageStorage{std::move(images)}, ImageView(ImageStorage::images, std::move(description)) {}
};

class NpyDataset final : public Dataset {
 public:
  NpyDataset(NpyArray data, std::vector<int64_t> labels, std::string description,
             bool unit_range)
      : data_(std::move(data)),
        shape_(data_.shape.begin() + 1, data_.shape.end()),
        labels_(std::move(labels)),
        description_(std::move(description)),
        unit_range_(unit_range) {}
  int64_t count() const override { return data_.shape[0]; }
  const std::vector<int64_t>& sample_shape() const override { return shape_; }
  absl::Status Read(int64_t i, float* out) const override {
    if (i < 0 || i >= count()) return IndexError(i, count());
    const int64_t size = sample_size();
    if (data_.dtype == NpyDtype::kFloat32) {
      std::copy_n(data_.f32.data() + i * size, size, out);
    } else {
      const uint8_t* in = data_.u8.data() + i * size;
      for (int64_t k = 0; k < size; ++k) out[k] = in[k] / 255.0f;
    }
    return absl::OkStatus();
  }
  bool has_labels() const override { return !labels_.empty(); }
  int64_t label(int64_t i) const override { return labels_.empty() ? -1 : labels_[i]; }
  std::string description() const override { return description_; }
  bool unit_range() const override { return unit_range_; }

 private:
  const NpyArray data_;
  const std::vector<int64_t> shape_;
  const std::vector<int64_t> labels_;
  const std::string description_;
  const bool unit_range_;
};

class Prefix final : public Dataset {
 public:
  Prefix(const Dataset& source, int64_t count) : source_(source), count_(count) {}
  int64_t count() const override { return count_; }
  const std::vector<int64_t>& sample_shape() const override { return source_.sample_shape(); }
  absl::Status Read(int64_t i, float* out) const override {
    if (i < 0 || i >= count_) return IndexError(i, count_);
    return source_.Read(i, out);
  }
  bool has_labels() const override { return source_.has_labels(); }
  int64_t label(int64_t i) const override { return source_.label(i); }
  std::string description() const override {
    if (count_ == source_.count()) return source_.description();
    return absl::StrCat(source_.description(), ", its first ", count_, " samples");
  }
  bool unit_range() const override { return source_.unit_range(); }

 private:
  const Dataset& source_;
  const int64_t count_;
};

// Images stored channels last ([H, W, C] per sample, as NumPy and PIL
// hold them), read as the model's [C, H, W].
class ChannelsFirst final : public Dataset {
 public:
  ChannelsFirst(std::unique_ptr<Dataset> source, std::vector<int64_t> shape)
      : source_(std::move(source)), shape_(std::move(shape)) {}
  int64_t count() const override { return source_->count(); }
  const std::vector<int64_t>& sample_shape() const override { return shape_; }
  absl::Status Read(int64_t i, float* out) const override {
    thread_local std::vector<float> hwc;
    hwc.resize(source_->sample_size());
    GATI_RETURN_IF_ERROR(source_->Read(i, hwc.data()));
    const int64_t c = shape_[0], plane = shape_[1] * shape_[2];
    for (int64_t p = 0; p < plane; ++p) {
      for (int64_t k = 0; k < c; ++k) out[k * plane + p] = hwc[p * c + k];
    }
    return absl::OkStatus();
  }
  bool has_labels() const override { return source_->has_labels(); }
  int64_t label(int64_t i) const override { return source_->label(i); }
  std::string description() const override {
    return absl::StrCat(source_->description(), ", channels last, read as ",
                        absl::StrJoin(shape_, "x"));
  }
  bool unit_range() const override { return source_->unit_range(); }

 private:
  std::unique_ptr<Dataset> source_;
  const std::vector<int64_t> shape_;
};

}  // namespace

int64_t Dataset::sample_size() const {
  int64_t size = 1;
  for (int64_t d : sample_shape()) size *= d;
  return size;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrJoin(shape, "x");
}

std::unique_ptr<Dataset> ChannelsFirstFor(std::unique_ptr<Dataset> data,
                                          const ModelMetadata* model) {
  const std::vector<int64_t>& got = data->sample_shape();
  if (model == nullptr || model->input_shape.size() != 3 || got.size() != 3 ||
      got == model->input_shape) {
    return data;
  }
  const std::vector<int64_t>& want = model->input_shape;
  if (got[0] != want[1] || got[1] != want[2] || got[2] != want[0]) return data;
  return std::make_unique<ChannelsFirst>(std::move(data), want);
}

std::unique_ptr<Dataset> ViewImages(const ImageDataset& images, std::string description) {
  return std::make_unique<ImageView>(images, std::move(description));
}

std::unique_ptr<Dataset> OwnImages(ImageDataset images, std::string description) {
  return std::make_unique<OwnedImages>(std::move(images), std::move(description));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenDataSource(const std::string& spec,
                                                        const std::string& labels_path,
                                                        Split split, const ModelMetadata* model) {
  const int num_classes = model != nullptr ? static_cast<int>(model->class_names.size()) : 0;
  const bool npy = spec.size() > 4 && spec.compare(spec.size() - 4, 4, ".npy") == 0;
  if (npy) {
    GATI_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> array,
                          OpenNpyDataset(spec, labels_path, num_classes));
    return ChannelsFirstFor(std::move(array), model);
  }
  if (!labels_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--labels goes with a .npy data file; ", spec, " carries its own labels"));
  }
  const std::string dir = spec == "fashion-mnist" ? kFashionMnistDir : spec;
  if (!std::filesystem::is_directory(dir)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--data ", spec, ": not fashion-mnist, a directory of Fashion-MNIST IDX files or of "
        "images, or a .npy file"));
  }
  std::error_code listing;
  for (const auto& entry : std::filesystem::directory_iterator(dir, listing)) {
    if (entry.path().filename().string().rfind("shard-", 0) == 0) return OpenRecording(dir);
  }
  if (listing) {
    return absl::InvalidArgumentError(
        absl::StrCat("--data ", spec, ": cannot list the directory (", listing.message(), ")"));
  }
  const bool idx = std::filesystem::exists(std::filesystem::path(dir) /
                                           "train-images-idx3-ubyte.gz") ||
                   std::filesystem::exists(std::filesystem::path(dir) /
                                           "t10k-images-idx3-ubyte.gz");
  if (!idx) {
    if (model == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--data ", spec, ": an image folder needs the model (--model) for its input size"));
    }
    if (model->input_shape.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--data ", spec, ": an image folder needs a model that takes C x H x W images; this "
          "one takes ", ShapeString(model->input_shape)));
    }
    ImageFolderOptions options;
    options.channels = model->input_shape[0];
    options.height = model->input_shape[1];
    options.width = model->input_shape[2];
    options.shorter_side = model->resize_shorter_side;
    std::vector<std::string> classes;
    GATI_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> folder,
                          OpenImageFolder(dir, options, &classes));
    if (num_classes > 0 && static_cast<int>(classes.size()) > num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir, ": has ", classes.size(), " class subdirectories; the model has ", num_classes,
          " classes"));
    }
    return folder;
  }
  GATI_ASSIGN_OR_RETURN(ImageDataset images, LoadFashionMnist(split, dir));
  std::string description = absl::StrCat(
      "fashion-mnist ", SplitName(split), " split (", split == Split::kTest ? "test" : "train",
      " images ", images.first_index, "..", images.first_index + images.count - 1, ") from ",
      dir);
  return OwnImages(std::move(images), std::move(description));
}

std::unique_ptr<Dataset> FirstSamples(const Dataset& source, int64_t count) {
  if (count <= 0 || count > source.count()) count = source.count();
  return std::make_unique<Prefix>(source, count);
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenNpyDataset(const std::string& data_path,
                                                        const std::string& labels_path,
                                                        int num_classes) {
  GATI_ASSIGN_OR_RETURN(NpyArray data, ReadNpy(data_path));
  return FromNpyArray(std::move(data), data_path, labels_path, num_classes, "");
}

absl::StatusOr<std::unique_ptr<Dataset>> FromNpyArray(NpyArray data, const std::string& data_path,
                                                      const std::string& labels_path,
                                                      int num_classes, std::string description) {
  if (data.dtype != NpyDtype::kFloat32 && data.dtype != NpyDtype::kUint8) {
    return absl::InvalidArgumentError(
        absl::StrCat(data_path, ": holds int64 values; model inputs must be float32 "
                                "(raw values; images in [0, 1]) or uint8 (images, 0..255)"));
  }
  if (data.shape.size() < 2 || data.shape.size() > 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        data_path, ": has shape (", absl::StrJoin(data.shape, ", "),
        "); want (N, ...) with 1 to 3 dimensions per sample, e.g. (N, C, H, W)"));
  }
  if (data.shape[0] < 1) return absl::InvalidArgumentError(data_path + ": holds no samples");
  for (size_t d = 1; d < data.shape.size(); ++d) {
    if (data.shape[d] < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(data_path, ": dimension ", d, " of its shape is 0"));
    }
  }
  const int64_t n = data.shape[0];
  bool unit_range = true;
  if (data.dtype == NpyDtype::kFloat32) {
    const int64_t size = data.num_elements() / n;
    for (int64_t k = 0; k < data.num_elements(); ++k) {
      unit_range &= data.f32[k] >= 0 && data.f32[k] <= 1;
      if (!std::isfinite(data.f32[k])) {
        return absl::InvalidArgumentError(
            absl::StrCat(data_path, ": sample ", k / size, " holds a value that is not finite (",
                         data.f32[k], " at element ", k % size, ")"));
      }
    }
  }
  std::vector<int64_t> labels;
  if (!labels_path.empty()) {
    GATI_ASSIGN_OR_RETURN(NpyArray read, ReadNpy(labels_path));
    if (read.dtype != NpyDtype::kInt64 || read.shape.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(labels_path, ": labels must be an int64 array of shape (N,)"));
    }
    if (read.shape[0] != n) {
      return absl::InvalidArgumentError(absl::StrCat(labels_path, ": has ", read.shape[0],
                                                     " labels for the ", n, " samples of ",
                                                     data_path));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (read.i64[i] < 0 || (num_classes > 0 && read.i64[i] >= num_classes)) {
        return absl::InvalidArgumentError(absl::StrCat(
            labels_path, ": label ", read.i64[i], " of sample ", i,
            num_classes > 0 ? absl::StrCat(" is outside the model's classes 0..", num_classes - 1)
                            : std::string(" is negative")));
      }
    }
    labels = std::move(read.i64);
  }
  std::vector<int64_t> shape(data.shape.begin() + 1, data.shape.end());
  if (description.empty()) {
    description = absl::StrCat(
        data_path, " (", n, " samples of ", ShapeString(shape),
        data.dtype == NpyDtype::kUint8 ? " uint8" : " float32",
        labels.empty() ? ", unlabelled" : absl::StrCat(", labels ", labels_path), ")");
  }
  return std::unique_ptr<Dataset>(
      std::make_unique<NpyDataset>(std::move(data), std::move(labels), std::move(description),
                                   unit_range));
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenRecording(const std::string& dir) {
  std::vector<std::filesystem::path> shards;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.rfind("shard-", 0) == 0 && name.size() > 4 &&
        name.compare(name.size() - 4, 4, ".npy") == 0) {
      shards.push_back(entry.path());
    }
  }
  std::sort(shards.begin(), shards.end());
  NpyArray all;
  for (const auto& path : shards) {
    GATI_ASSIGN_OR_RETURN(NpyArray shard, ReadNpy(path.string()));
    if (shard.dtype != NpyDtype::kFloat32 || shard.shape.size() < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), ": a recording shard is float32 (N, ...)"));
    }
    if (all.shape.empty()) {
      all = NpyArray::Float32(shard.shape, {});
      all.shape[0] = 0;
    } else if (!std::equal(shard.shape.begin() + 1, shard.shape.end(), all.shape.begin() + 1,
                           all.shape.end())) {
      return absl::InvalidArgumentError(absl::StrCat(
          path.string(), ": its samples have another shape than the earlier shards'"));
    }
    all.shape[0] += shard.shape[0];
    all.f32.insert(all.f32.end(), shard.f32.begin(), shard.f32.end());
  }
  if (shards.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": holds no recording shards"));
  }
  const int64_t n = all.shape[0];
  std::vector<int64_t> shape(all.shape.begin() + 1, all.shape.end());
  return FromNpyArray(std::move(all), dir, "", 0,
                      absl::StrCat(dir, " (a recording of ", n, " samples of ",
                                   ShapeString(shape), " in ", shards.size(), " shards)"));
}

}  // namespace gati
