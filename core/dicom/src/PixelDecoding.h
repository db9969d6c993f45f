// SPDX-License-Identifier: GPL-3.0-or-later
//
// Pixel data of one single-frame greyscale instance to physical values (Modality LUT
// applied, padding replaced). Internal to core/, used by DicomSeriesReader. DCMTK decodes
// what it can; an optional FrameDecoder handles the transfer syntaxes it cannot.
// Stateless; thread-safe for distinct datasets.
#pragma once

#include <dcmtk/dcmdata/dcdatset.h>

#include <string>
#include <vector>

#include "enhance/dicom/FrameDecoder.h"

namespace enhance {

// How the stored values of an instance are laid out. Slices of one series may differ in
// it (they are all decoded to physical values), which the reader reports as a warning.
struct PixelFormat {
  std::string photometric;
  long bitsAllocated = 0;
  long bitsStored = 0;
  long highBit = 0;
  long pixelRepresentation = 0;

  bool operator==(const PixelFormat& other) const;
  bool operator!=(const PixelFormat& other) const { return !(*this == other); }
  // e.g. "MONOCHROME2 16/12/11 unsigned"
  std::string Describe() const;
};

struct DecodedPixels {
  PixelFormat format;
  std::vector<float> values;  // rows x columns physical values
};

// `bytes` is the encoded instance, handed to `decoder` (which may be null) only when
// DCMTK cannot decode the transfer syntax. Throws Error naming `where`.
DecodedPixels DecodePixels(DcmDataset& ds, long rows, long columns, const std::string& bytes,
                           const FrameDecoder* decoder, const std::string& where);

}  // namespace enhance
