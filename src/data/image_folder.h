// An image folder as a Dataset: PNG and JPEG files, either in one
// subdirectory per class (torchvision's ImageFolder: classes are the
// subdirectory names in sorted order, labels their indices) or flat (no
// labels). Each image is decoded (libpng, libjpeg-turbo), converted to the
// model's channels (1: grey, 3: RGB), scaled so that its shorter side is
// `shorter_side` pixels (area averaging down, bilinear up) and center-
// cropped to H x W: the rule the model's metadata records (input.resize).
#ifndef GATI_DATA_IMAGE_FOLDER_H_
#define GATI_DATA_IMAGE_FOLDER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "gati/status.h"

namespace gati {

struct ImageFolderOptions {
  int64_t channels = 3;  // 1 or 3.
  int64_t height = 224;
  int64_t width = 224;
  int64_t shorter_side = 0;  // 0: max(height, width).
};

// One decoded image: `channels` planes of height x width bytes.
struct DecodedImage {
  int64_t channels = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // [channels, height, width].
};

// Decodes a PNG or JPEG file (by its signature, not its name) to
// `channels` (1: grey, 3: RGB; alpha dropped). DataLoss or InvalidArgument
// naming `path` for a corrupt, truncated or unsupported file.
absl::StatusOr<DecodedImage> DecodeImageFile(const std::string& path, int64_t channels);

// Scales `image` so that its shorter side is `shorter_side` and
// center-crops it to height x width.
DecodedImage ResizeAndCrop(const DecodedImage& image, int64_t shorter_side, int64_t height,
                           int64_t width);

// Opens the folder `dir`: lists its images (sorted; class subdirectories
// or flat, not both), decodes and converts every one (so that a bad file
// fails here, naming it and its sample index, before any work). Class
// names go to `class_names` when not null. Errors: no images, a file that
// does not decode, images beside class subdirectories, bad options.
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& dir,
                                                         const ImageFolderOptions& options,
                                                         std::vector<std::string>* class_names =
                                                             nullptr);

}  // namespace gati

#endif  // GATI_DATA_IMAGE_FOLDER_H_
