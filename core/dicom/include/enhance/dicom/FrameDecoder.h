// SPDX-License-Identifier: GPL-3.0-or-later
//
// A decoder for pixel data that DCMTK cannot decode here (for example JPEG 2000),
// supplied from outside core/ (the plugin implements it with Orthanc's own decoders).
// ReadSeries asks it only for instances whose transfer syntax DCMTK cannot decode; every
// attribute other than the pixel values is still read by DCMTK.
//
// Contract: DecodeFirstFrame returns the stored pixel values of frame 0, row-major, as
// they are before the Modality LUT: no RescaleSlope/Intercept applied, MONOCHROME1 not
// inverted, the BitsStored bits only, sign-extended when the values are signed.
// Thread-safety: implementations must allow concurrent calls on one object (const and
// stateless, or internally synchronised).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace enhance {

struct DecodedFrame {
  int64_t rows = 0;
  int64_t columns = 0;
  bool isSigned = false;        // whether the decoder produced signed values
  int bitsPerSample = 0;        // size of the decoder's samples: 8, 16 or 32
  std::vector<int32_t> values;  // rows x columns stored values
};

class FrameDecoder {
 public:
  virtual ~FrameDecoder() = default;

  // `bytes` is the whole DICOM file (Part 10 or raw dataset) of one instance; `where`
  // names it in messages. Throws enhance::Error naming `where` when the frame cannot be
  // decoded (kUnsupported when the format is not handled, kBadInput when it is corrupt).
  virtual DecodedFrame DecodeFirstFrame(const std::string& bytes,
                                        const std::string& where) const = 0;
};

}  // namespace enhance
