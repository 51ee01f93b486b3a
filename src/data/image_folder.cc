#include "data/image_folder.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "data/file_io.h"

namespace gati {
namespace {

namespace fs = std::filesystem;

bool IsImageName(const fs::path& path) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// RGB or grey from an interleaved buffer of `in_channels` (1, 3) to planes.
DecodedImage ToPlanes(const std::vector<uint8_t>& interleaved, int64_t height, int64_t width,
                      int64_t in_channels, int64_t channels) {
  DecodedImage image;
  image.channels = channels;
  image.height = height;
  image.width = width;
  image.pixels.resize(channels * height * width);
  const int64_t plane = height * width;
  for (int64_t p = 0; p < plane; ++p) {
    const uint8_t* px = interleaved.data() + p * in_channels;
    if (channels == in_channels) {
      for (int64_t c = 0; c < channels; ++c) image.pixels[c * plane + p] = px[c];
    } else if (channels == 1) {  // RGB to grey (ITU-R BT.601 luma).
      image.pixels[p] = static_cast<uint8_t>(
          std::lround(0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]));
    } else {  // Grey to RGB.
      for (int64_t c = 0; c < 3; ++c) image.pixels[c * plane + p] = px[0];
    }
  }
  return image;
}

absl::StatusOr<DecodedImage> DecodePng(const std::string& bytes, const std::string& path,
                                       int64_t channels) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    return absl::DataLossError(absl::StrCat(path, ": not a readable PNG (", png.message, ")"));
  }
  // Always RGB (alpha dropped): the grey conversion is ours, the same for
  // PNG and JPEG (libpng's own would apply gamma).
  png.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> buffer(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, buffer.data(), 0, nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    return absl::DataLossError(absl::StrCat(path, ": corrupt or truncated PNG (", message, ")"));
  }
  return ToPlanes(buffer, png.height, png.width, 3, channels);
}

struct JpegError {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void JpegErrorExit(j_common_ptr info) {
  JpegError* error = reinterpret_cast<JpegError*>(info->err);
  (*info->err->format_message)(info, error->message);
  std::longjmp(error->jump, 1);
}

// Counts warnings (a truncated stream is one) without printing them.
void JpegSilence(j_common_ptr info, int level) {
  if (level < 0) ++info->err->num_warnings;
}

absl::StatusOr<DecodedImage> DecodeJpeg(const std::string& bytes, const std::string& path,
                                        int64_t channels) {
  jpeg_decompress_struct info;
  JpegError error;
  info.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = JpegErrorExit;
  error.manager.emit_message = JpegSilence;  // Warnings (e.g. premature end) fail below.
  std::vector<uint8_t> buffer;
  int64_t height = 0, width = 0, in_channels = 0;
  // Nothing with a destructor may be created between setjmp and longjmp.
  if (setjmp(error.jump) != 0) {
    jpeg_destroy_decompress(&info);
    return absl::DataLossError(
        absl::StrCat(path, ": corrupt or truncated JPEG (", error.message, ")"));
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  jpeg_read_header(&info, TRUE);
  info.out_color_space = JCS_RGB;
  jpeg_start_decompress(&info);
  height = info.output_height;
  width = info.output_width;
  in_channels = info.output_components;
  buffer.resize(height * width * in_channels);
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = buffer.data() + info.output_scanline * width * in_channels;
    jpeg_read_scanlines(&info, &row, 1);
  }
  const bool warned = error.manager.num_warnings > 0;
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  if (warned) {
    return absl::DataLossError(absl::StrCat(path, ": truncated or damaged JPEG data"));
  }
  return ToPlanes(buffer, height, width, in_channels, channels);
}

// Per output index along an axis of `in` samples scaled by `scale`: the
// source indices and their weights (area average when shrinking, bilinear
// when growing), for outputs `offset` .. `offset + out - 1`.
struct Taps {
  std::vector<std::vector<std::pair<int64_t, float>>> per_output;
};

Taps AxisTaps(int64_t in, double scale, int64_t offset, int64_t out) {
  Taps taps;
  taps.per_output.resize(out);
  for (int64_t o = 0; o < out; ++o) {
    auto& list = taps.per_output[o];
    const double index = static_cast<double>(o + offset);
    if (scale < 1) {
      const double begin = index / scale, end = (index + 1) / scale;
      double total = 0;
      for (int64_t s = static_cast<int64_t>(std::floor(begin)); s < std::ceil(end); ++s) {
        const double w = std::min<double>(end, s + 1) - std::max<double>(begin, s);
        if (w <= 0) continue;
        list.push_back({std::clamp<int64_t>(s, 0, in - 1), static_cast<float>(w)});
        total += w;
      }
      for (auto& [s, w] : list) w = static_cast<float>(w / total);
    } else {
      const double center = (index + 0.5) / scale - 0.5;
      const int64_t left = static_cast<int64_t>(std::floor(center));
      const float frac = static_cast<float>(center - left);
      list.push_back({std::clamp<int64_t>(left, 0, in - 1), 1 - frac});
      list.push_back({std::clamp<int64_t>(left + 1, 0, in - 1), frac});
    }
  }
  return taps;
}

class FolderDataset final : public Dataset {
 public:
  FolderDataset(std::vector<uint8_t> pixels, std::vector<int64_t> shape,
                std::vector<int64_t> labels, std::string description)
      : pixels_(std::move(pixels)),
        shape_(std::move(shape)),
        labels_(std::move(labels)),
        description_(std::move(description)) {}
  int64_t count() const override {
    return static_cast<int64_t>(pixels_.size()) / sample_size();
  }
  const std::vector<int64_t>& sample_shape() const override { return shape_; }
  absl::Status Read(int64_t i, float* out) const override {
    if (i < 0 || i >= count()) {
      return absl::OutOfRangeError(absl::StrCat("sample ", i, " does not exist"));
    }
    const int64_t size = sample_size();
    const uint8_t* in = pixels_.data() + i * size;
    for (int64_t k = 0; k < size; ++k) out[k] = in[k] / 255.0f;
    return absl::OkStatus();
  }
  bool has_labels() const override { return !labels_.empty(); }
  int64_t label(int64_t i) const override { return labels_.empty() ? -1 : labels_[i]; }
  std::string description() const override { return description_; }
  bool unit_range() const override { return true; }

 private:
  const std::vector<uint8_t> pixels_;
  const std::vector<int64_t> shape_;
  const std::vector<int64_t> labels_;
  const std::string description_;
};

}  // namespace

absl::StatusOr<DecodedImage> DecodeImageFile(const std::string& path, int64_t channels) {
  if (channels != 1 && channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("images decode to 1 (grey) or 3 (RGB) channels, not ", channels));
  }
  GATI_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(path));
  static const unsigned char kPng[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) {
    return DecodePng(bytes, path, channels);
  }
  if (bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
      static_cast<unsigned char>(bytes[1]) == 0xD8 && static_cast<unsigned char>(bytes[2]) == 0xFF) {
    return DecodeJpeg(bytes, path, channels);
  }
  return absl::InvalidArgumentError(absl::StrCat(path, ": neither a PNG nor a JPEG file"));
}

DecodedImage ResizeAndCrop(const DecodedImage& image, int64_t shorter_side, int64_t height,
                           int64_t width) {
  const double scale =
      static_cast<double>(shorter_side) / static_cast<double>(std::min(image.height, image.width));
  const int64_t scaled_h = std::max<int64_t>(height, std::llround(image.height * scale));
  const int64_t scaled_w = std::max<int64_t>(width, std::llround(image.width * scale));
  const Taps rows = AxisTaps(image.height, scale, (scaled_h - height) / 2, height);
  const Taps cols = AxisTaps(image.width, scale, (scaled_w - width) / 2, width);
  DecodedImage out;
  out.channels = image.channels;
  out.height = height;
  out.width = width;
  out.pixels.resize(image.channels * height * width);
  std::vector<float> horizontal(image.height * width);
  for (int64_t c = 0; c < image.channels; ++c) {
    const uint8_t* plane = image.pixels.data() + c * image.height * image.width;
    for (int64_t y = 0; y < image.height; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        float v = 0;
        for (const auto& [s, w] : cols.per_output[x]) v += w * plane[y * image.width + s];
        horizontal[y * width + x] = v;
      }
    }
    uint8_t* target = out.pixels.data() + c * height * width;
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        float v = 0;
        for (const auto& [s, w] : rows.per_output[y]) v += w * horizontal[s * width + x];
        target[y * width + x] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& dir,
                                                         const ImageFolderOptions& options,
                                                         std::vector<std::string>* class_names) {
  if ((options.channels != 1 && options.channels != 3) || options.height < 1 ||
      options.width < 1 || options.shorter_side < 0) {
    return absl::InvalidArgumentError(
        "image folder: the model must take 1 or 3 channel images of a positive size");
  }
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no such image folder"));
  }
  std::vector<fs::path> files, classes;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    if (entry.is_directory()) {
      classes.push_back(entry.path());
    } else if (entry.is_regular_file() && IsImageName(entry.path())) {
      files.push_back(entry.path());
    }
  }
  std::sort(classes.begin(), classes.end());
  std::sort(files.begin(), files.end());
  if (!classes.empty() && !files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": holds both images (", files.front().filename().string(),
        ") and class subdirectories (", classes.front().filename().string(),
        "); use one or the other"));
  }
  std::vector<int64_t> labels;
  std::vector<std::string> names;
  if (!classes.empty()) {
    for (size_t c = 0; c < classes.size(); ++c) {
      std::vector<fs::path> in_class;
      for (const fs::directory_entry& entry : fs::directory_iterator(classes[c], error)) {
        if (entry.is_regular_file() && IsImageName(entry.path())) in_class.push_back(entry.path());
      }
      std::sort(in_class.begin(), in_class.end());
      for (const fs::path& file : in_class) {
        files.push_back(file);
        labels.push_back(static_cast<int64_t>(c));
      }
      names.push_back(classes[c].filename().string());
    }
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": holds no .png or .jpg images"));
  }
  const int64_t shorter = options.shorter_side > 0 ? options.shorter_side
                                                   : std::max(options.height, options.width);
  const int64_t size = options.channels * options.height * options.width;
  std::vector<uint8_t> pixels(files.size() * size);
  for (size_t i = 0; i < files.size(); ++i) {
    absl::StatusOr<DecodedImage> decoded = DecodeImageFile(files[i].string(), options.channels);
    if (!decoded.ok()) {
      return absl::Status(decoded.status().code(),
                          absl::StrCat("sample ", i, ": ", decoded.status().message()));
    }
    DecodedImage image = ResizeAndCrop(*decoded, shorter, options.height, options.width);
    std::copy(image.pixels.begin(), image.pixels.end(), pixels.begin() + i * size);
  }
  if (class_names != nullptr) *class_names = names;
  std::string description =
      absl::StrCat(dir, " (", files.size(), " images", labels.empty() ? ", unlabelled" : "",
                   labels.empty() ? "" : absl::StrCat(" in ", names.size(), " classes"),
                   ", shorter side to ", shorter, ", center crop ", options.height, "x",
                   options.width, ")");
  return std::unique_ptr<Dataset>(std::make_unique<FolderDataset>(
      std::move(pixels), std::vector<int64_t>{options.channels, options.height, options.width},
      std::move(labels), std::move(description)));
}

}  // namespace gati
