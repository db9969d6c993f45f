// SPDX-License-Identifier: GPL-3.0-or-later
#include "OrthancFrameDecoder.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "enhance/base/Error.h"

namespace enhance::plugin {
namespace {

// An image as Orthanc hands it out: rows padded to `pitch` bytes.
struct FakeImage {
  OrthancPluginPixelFormat format;
  uint32_t width;
  uint32_t height;
  uint32_t pitch;
  std::vector<uint8_t> buffer;
};

template <typename T>
FakeImage MakeImage(OrthancPluginPixelFormat format, uint32_t width, uint32_t height,
                    const std::vector<T>& values, uint32_t padding = 3) {
  FakeImage image{format, width, height, static_cast<uint32_t>(width * sizeof(T) + padding), {}};
  image.buffer.assign(static_cast<size_t>(image.pitch) * height, 0xAB);  // padding garbage
  for (uint32_t y = 0; y < height; ++y) {
    std::memcpy(image.buffer.data() + static_cast<size_t>(y) * image.pitch,
                values.data() + static_cast<size_t>(y) * width, width * sizeof(T));
  }
  return image;
}

// A stand-in for Orthanc: serves the image services of the SDK from one FakeImage.
struct FakeOrthanc {
  OrthancPluginContext context{};
  FakeImage image{};
  bool decodes = true;
  int decoded = 0;
  int freed = 0;
  uint32_t lastBufferSize = 0;

  FakeOrthanc() {
    context.pluginsManager = this;
    context.orthancVersion = "1.10.1";
    context.InvokeService = &Invoke;
  }

  static OrthancPluginErrorCode Invoke(OrthancPluginContext* context, _OrthancPluginService service,
                                       const void* params) {
    auto& self = *static_cast<FakeOrthanc*>(context->pluginsManager);
    auto* handle = reinterpret_cast<OrthancPluginImage*>(&self.image);
    switch (service) {
      case _OrthancPluginService_DecodeDicomImage: {
        const auto& p = *static_cast<const _OrthancPluginCreateImage*>(params);
        self.lastBufferSize = p.bufferSize;
        if (!self.decodes || p.frameIndex != 0) return OrthancPluginErrorCode_BadFileFormat;
        ++self.decoded;
        *p.target = handle;
        return OrthancPluginErrorCode_Success;
      }
      case _OrthancPluginService_FreeImage:
        if (static_cast<const _OrthancPluginFreeImage*>(params)->image == handle) ++self.freed;
        return OrthancPluginErrorCode_Success;
      case _OrthancPluginService_GetImagePixelFormat:
        *static_cast<const _OrthancPluginGetImageInfo*>(params)->resultPixelFormat =
            self.image.format;
        return OrthancPluginErrorCode_Success;
      case _OrthancPluginService_GetImageWidth:
        *static_cast<const _OrthancPluginGetImageInfo*>(params)->resultUint32 = self.image.width;
        return OrthancPluginErrorCode_Success;
      case _OrthancPluginService_GetImageHeight:
        *static_cast<const _OrthancPluginGetImageInfo*>(params)->resultUint32 = self.image.height;
        return OrthancPluginErrorCode_Success;
      case _OrthancPluginService_GetImagePitch:
        *static_cast<const _OrthancPluginGetImageInfo*>(params)->resultUint32 = self.image.pitch;
        return OrthancPluginErrorCode_Success;
      case _OrthancPluginService_GetImageBuffer:
        *static_cast<const _OrthancPluginGetImageInfo*>(params)->resultBuffer =
            self.image.buffer.data();
        return OrthancPluginErrorCode_Success;
      default:
        return OrthancPluginErrorCode_NotImplemented;
    }
  }
};

}  // namespace

TEST(OrthancFrameDecoder, MapsGreyscaleFormatsToStoredValues) {
  const std::vector<int16_t> signedValues{-1024, -1, 0, 1, 2047, -32768};
  FakeImage s16 = MakeImage(OrthancPluginPixelFormat_SignedGrayscale16, 3, 2, signedValues);
  DecodedFrame frame =
      ToDecodedFrame(s16.format, s16.width, s16.height, s16.pitch, s16.buffer.data(), "i");
  EXPECT_EQ(frame.rows, 2);
  EXPECT_EQ(frame.columns, 3);
  EXPECT_TRUE(frame.isSigned);
  EXPECT_EQ(frame.bitsPerSample, 16);
  EXPECT_EQ(frame.values, (std::vector<int32_t>{-1024, -1, 0, 1, 2047, -32768}));

  const std::vector<uint16_t> unsignedValues{0, 4095, 65535, 7};
  FakeImage u16 = MakeImage(OrthancPluginPixelFormat_Grayscale16, 2, 2, unsignedValues);
  frame = ToDecodedFrame(u16.format, u16.width, u16.height, u16.pitch, u16.buffer.data(), "i");
  EXPECT_FALSE(frame.isSigned);
  EXPECT_EQ(frame.values, (std::vector<int32_t>{0, 4095, 65535, 7}));

  const std::vector<uint8_t> bytes{0, 128, 255, 9};
  FakeImage u8 = MakeImage(OrthancPluginPixelFormat_Grayscale8, 4, 1, bytes);
  frame = ToDecodedFrame(u8.format, u8.width, u8.height, u8.pitch, u8.buffer.data(), "i");
  EXPECT_EQ(frame.bitsPerSample, 8);
  EXPECT_EQ(frame.values, (std::vector<int32_t>{0, 128, 255, 9}));
}

TEST(OrthancFrameDecoder, RefusesColourAndFloatImagesNamingTheInstance) {
  const std::vector<uint8_t> rgb(12, 1);
  FakeImage image = MakeImage(OrthancPluginPixelFormat_RGB24, 2, 2, rgb);
  image.format = OrthancPluginPixelFormat_RGB24;
  for (OrthancPluginPixelFormat format :
       {OrthancPluginPixelFormat_RGB24, OrthancPluginPixelFormat_Float32}) {
    try {
      ToDecodedFrame(format, 2, 2, image.pitch, image.buffer.data(), "series S, instance 7");
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
      EXPECT_NE(std::string(e.what()).find("instance 7"), std::string::npos) << e.what();
    }
  }
}

TEST(OrthancFrameDecoder, DecodesThroughTheSdkAndAlwaysFreesTheImage) {
  FakeOrthanc orthanc;
  orthanc.image =
      MakeImage(OrthancPluginPixelFormat_SignedGrayscale16, 2, 1, std::vector<int16_t>{-5, 300});
  const OrthancFrameDecoder decoder(&orthanc.context);
  const DecodedFrame frame = decoder.DecodeFirstFrame(std::string(1000, 'd'), "i");
  EXPECT_EQ(frame.values, (std::vector<int32_t>{-5, 300}));
  EXPECT_EQ(orthanc.lastBufferSize, 1000u);
  EXPECT_EQ(orthanc.decoded, 1);
  EXPECT_EQ(orthanc.freed, 1);

  // The image is freed when mapping fails too.
  orthanc.image.format = OrthancPluginPixelFormat_RGB48;
  EXPECT_THROW(decoder.DecodeFirstFrame("x", "i"), Error);
  EXPECT_EQ(orthanc.freed, 2);
}

TEST(OrthancFrameDecoder, WhenOrthancCannotDecodeTheErrorSaysWhatToDo) {
  FakeOrthanc orthanc;
  orthanc.decodes = false;
  const OrthancFrameDecoder decoder(&orthanc.context);
  try {
    decoder.DecodeFirstFrame("x", "series S, instance 7");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    const std::string what = e.what();
    EXPECT_NE(what.find("instance 7"), std::string::npos) << what;
    EXPECT_NE(what.find("GDCM plugin"), std::string::npos) << what;
  }
  EXPECT_EQ(orthanc.freed, 0);
}

}  // namespace enhance::plugin
