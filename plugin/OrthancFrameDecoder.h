// SPDX-License-Identifier: GPL-3.0-or-later
//
// core's FrameDecoder on Orthanc's own image decoding (OrthancPluginDecodeDicomImage),
// which also reaches the decoders other plugins register (for example JPEG 2000 through
// the GDCM plugin). core/ asks it only for transfer syntaxes DCMTK cannot decode.
// Orthanc returns the stored values of the frame (BitsStored bits, sign-extended for
// signed images, no Modality LUT, MONOCHROME1 not inverted): what the contract asks.
//
// Thread-safety: DecodeFirstFrame is const and stateless; the SDK call may come from any
// worker thread. Do not call it from Orthanc's change callback.
#pragma once

#include <orthanc/OrthancCPlugin.h>

#include <cstdint>
#include <string>

#include "enhance/dicom/FrameDecoder.h"

namespace enhance::plugin {

// Copies one image decoded by Orthanc into a DecodedFrame. Greyscale integer formats
// only; throws Error(kUnsupported) naming `where` and the format for any other.
DecodedFrame ToDecodedFrame(OrthancPluginPixelFormat format, uint32_t width, uint32_t height,
                            uint32_t pitch, const void* buffer, const std::string& where);

class OrthancFrameDecoder final : public FrameDecoder {
 public:
  explicit OrthancFrameDecoder(OrthancPluginContext* context) : context_(context) {}

  DecodedFrame DecodeFirstFrame(const std::string& bytes, const std::string& where) const override;

 private:
  OrthancPluginContext* context_;
};

}  // namespace enhance::plugin
