// SPDX-License-Identifier: GPL-3.0-or-later
#include "OrthancFrameDecoder.h"

#include <cstring>
#include <limits>
#include <memory>

#include "enhance/base/Error.h"

namespace enhance::plugin {
namespace {

// Frees an image the SDK allocated, on every path.
struct ImageDeleter {
  OrthancPluginContext* context;
  void operator()(OrthancPluginImage* image) const {
    if (image != nullptr) OrthancPluginFreeImage(context, image);
  }
};
using ImagePtr = std::unique_ptr<OrthancPluginImage, ImageDeleter>;

const char* FormatName(OrthancPluginPixelFormat format) {
  switch (format) {
    case OrthancPluginPixelFormat_Grayscale8:
      return "Grayscale8";
    case OrthancPluginPixelFormat_Grayscale16:
      return "Grayscale16";
    case OrthancPluginPixelFormat_SignedGrayscale16:
      return "SignedGrayscale16";
    case OrthancPluginPixelFormat_Grayscale32:
      return "Grayscale32";
    case OrthancPluginPixelFormat_Grayscale64:
      return "Grayscale64";
    case OrthancPluginPixelFormat_Float32:
      return "Float32";
    case OrthancPluginPixelFormat_RGB24:
      return "RGB24";
    case OrthancPluginPixelFormat_RGB48:
      return "RGB48";
    case OrthancPluginPixelFormat_RGBA32:
      return "RGBA32";
    case OrthancPluginPixelFormat_BGRA32:
      return "BGRA32";
    default:
      return "unknown";
  }
}

// Reads row-major samples of type T from rows that may be padded to `pitch` bytes.
template <typename T>
void CopySamples(const void* buffer, uint32_t width, uint32_t height, uint32_t pitch,
                 DecodedFrame& frame, const std::string& where) {
  const auto* bytes = static_cast<const uint8_t*>(buffer);
  frame.values.resize(static_cast<size_t>(width) * height);
  for (uint32_t y = 0; y < height; ++y) {
    const uint8_t* row = bytes + static_cast<size_t>(y) * pitch;
    for (uint32_t x = 0; x < width; ++x) {
      T sample;
      std::memcpy(&sample, row + static_cast<size_t>(x) * sizeof(T), sizeof(T));
      if constexpr (sizeof(T) == 4 && !std::numeric_limits<T>::is_signed) {
        if (sample > static_cast<T>(std::numeric_limits<int32_t>::max())) {
          throw Error(ErrorKind::kUnsupported,
                      where + ": a decoded 32-bit value exceeds the supported range");
        }
      }
      frame.values[static_cast<size_t>(y) * width + x] = static_cast<int32_t>(sample);
    }
  }
}

}  // namespace

DecodedFrame ToDecodedFrame(OrthancPluginPixelFormat format, uint32_t width, uint32_t height,
                            uint32_t pitch, const void* buffer, const std::string& where) {
  DecodedFrame frame;
  frame.rows = height;
  frame.columns = width;
  size_t bytesPerSample = 0;
  switch (format) {
    case OrthancPluginPixelFormat_Grayscale8:
      bytesPerSample = 1;
      break;
    case OrthancPluginPixelFormat_Grayscale16:
    case OrthancPluginPixelFormat_SignedGrayscale16:
      bytesPerSample = 2;
      break;
    case OrthancPluginPixelFormat_Grayscale32:
      bytesPerSample = 4;
      break;
    default:
      throw Error(ErrorKind::kUnsupported, where + ": Orthanc decoded the image as " +
                                               FormatName(format) +
                                               "; only greyscale integer images can be enhanced");
  }
  if (width > 0 && height > 0 &&
      (buffer == nullptr || pitch < static_cast<size_t>(width) * bytesPerSample)) {
    throw Error(ErrorKind::kInternal, where + ": Orthanc returned an inconsistent image buffer");
  }
  frame.bitsPerSample = static_cast<int>(bytesPerSample * 8);
  frame.isSigned = format == OrthancPluginPixelFormat_SignedGrayscale16;
  switch (format) {
    case OrthancPluginPixelFormat_Grayscale8:
      CopySamples<uint8_t>(buffer, width, height, pitch, frame, where);
      break;
    case OrthancPluginPixelFormat_Grayscale16:
      CopySamples<uint16_t>(buffer, width, height, pitch, frame, where);
      break;
    case OrthancPluginPixelFormat_SignedGrayscale16:
      CopySamples<int16_t>(buffer, width, height, pitch, frame, where);
      break;
    default:
      CopySamples<uint32_t>(buffer, width, height, pitch, frame, where);
      break;
  }
  return frame;
}

DecodedFrame OrthancFrameDecoder::DecodeFirstFrame(const std::string& bytes,
                                                   const std::string& where) const {
  if (bytes.size() > std::numeric_limits<uint32_t>::max()) {
    throw Error(ErrorKind::kUnsupported, where + ": the file is too large for Orthanc's decoder");
  }
  ImagePtr image(
      OrthancPluginDecodeDicomImage(context_, bytes.data(), static_cast<uint32_t>(bytes.size()), 0),
      ImageDeleter{context_});
  if (!image) {
    throw Error(ErrorKind::kUnsupported,
                where +
                    ": neither DCMTK nor Orthanc's decoders can decode this pixel data; install "
                    "an Orthanc plugin that decodes its transfer syntax (for example the GDCM "
                    "plugin for JPEG 2000) or have the sender use an uncompressed transfer syntax");
  }
  return ToDecodedFrame(OrthancPluginGetImagePixelFormat(context_, image.get()),
                        OrthancPluginGetImageWidth(context_, image.get()),
                        OrthancPluginGetImageHeight(context_, image.get()),
                        OrthancPluginGetImagePitch(context_, image.get()),
                        OrthancPluginGetImageBuffer(context_, image.get()), where);
}

}  // namespace enhance::plugin
