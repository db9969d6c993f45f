// SPDX-License-Identifier: GPL-3.0-or-later
#include "PixelDecoding.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "DicomUtil.h"
#include "enhance/base/Error.h"

namespace enhance {

bool PixelFormat::operator==(const PixelFormat& other) const {
  return photometric == other.photometric && bitsAllocated == other.bitsAllocated &&
         bitsStored == other.bitsStored && highBit == other.highBit &&
         pixelRepresentation == other.pixelRepresentation;
}

std::string PixelFormat::Describe() const {
  return photometric + " " + std::to_string(bitsAllocated) + "/" + std::to_string(bitsStored) +
         "/" + std::to_string(highBit) + (pixelRepresentation == 1 ? " signed" : " unsigned");
}

namespace {

constexpr double kMaxPhysicalValue = 1.0e30;

[[noreturn]] void Fail(ErrorKind kind, const std::string& where, const std::string& what) {
  throw Error(kind, where + ": " + what);
}

PixelFormat ReadFormat(DcmDataset& ds, const std::string& where) {
  PixelFormat f;
  const long samples = GetLong(ds, DCM_SamplesPerPixel, 1);
  f.photometric = GetString(ds, DCM_PhotometricInterpretation);
  if (samples != 1 || (f.photometric != "MONOCHROME1" && f.photometric != "MONOCHROME2")) {
    Fail(ErrorKind::kUnsupported, where,
         "photometric interpretation '" + Printable(f.photometric) + "' with " +
             std::to_string(samples) +
             " samples per pixel is not supported; only greyscale (MONOCHROME1/2) images can be "
             "enhanced");
  }
  const long frames = GetLong(ds, DCM_NumberOfFrames, 1);
  if (frames != 1) {
    Fail(ErrorKind::kUnsupported, where,
         std::to_string(frames) +
             "-frame images are not supported in this version; send single-frame images");
  }
  f.bitsAllocated = GetLong(ds, DCM_BitsAllocated, 0);
  f.bitsStored = GetLong(ds, DCM_BitsStored, f.bitsAllocated);
  f.highBit = GetLong(ds, DCM_HighBit, f.bitsStored - 1);
  f.pixelRepresentation = GetLong(ds, DCM_PixelRepresentation, 0);
  if ((f.bitsAllocated != 8 && f.bitsAllocated != 16) || f.bitsStored < 1 ||
      f.bitsStored > f.bitsAllocated || f.highBit < f.bitsStored - 1 ||
      f.highBit >= f.bitsAllocated || (f.pixelRepresentation != 0 && f.pixelRepresentation != 1)) {
    Fail(ErrorKind::kUnsupported, where,
         "pixel format BitsAllocated=" + std::to_string(f.bitsAllocated) + " BitsStored=" +
             std::to_string(f.bitsStored) + " HighBit=" + std::to_string(f.highBit) +
             " PixelRepresentation=" + std::to_string(f.pixelRepresentation) +
             " is not supported (8 or 16 bits allocated are)");
  }
  return f;
}

// The BitsStored bits ending at HighBit, sign-extended when signed.
class StoredValueExtractor {
 public:
  explicit StoredValueExtractor(const PixelFormat& f)
      : shift_(static_cast<unsigned>(f.highBit + 1 - f.bitsStored)),
        mask_((1u << f.bitsStored) - 1u),
        isSigned_(f.pixelRepresentation == 1),
        signBit_(1 << (f.bitsStored - 1)) {}

  int32_t operator()(uint32_t raw) const {
    return SignExtend(static_cast<int32_t>((raw >> shift_) & mask_));
  }
  // Values already extracted by another decoder, which may not have sign-extended them.
  int32_t SignExtend(int32_t v) const {
    if (isSigned_ && v >= signBit_ && v < (signBit_ << 1)) v -= (signBit_ << 1);
    return v;
  }

 private:
  unsigned shift_;
  uint32_t mask_;
  bool isSigned_;
  int32_t signBit_;
};

// False when DCMTK has no decoder for the transfer syntax of this instance.
bool DecodeWithDcmtk(DcmDataset& ds, const PixelFormat& f, size_t count,
                     std::vector<int32_t>& stored, const std::string& where) {
  if (ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() ||
      !ds.canWriteXfer(EXS_LittleEndianExplicit)) {
    return false;
  }
  DcmElement* element = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) {
    Fail(ErrorKind::kBadInput, where, "the instance has no PixelData (7FE0,0010)");
  }
  const size_t bytesPerSample = static_cast<size_t>(f.bitsAllocated / 8);
  if (element->getLength() < count * bytesPerSample) {
    Fail(ErrorKind::kBadInput, where,
         "PixelData holds " + std::to_string(element->getLength()) + " bytes but " +
             std::to_string(count) + " pixels of " + std::to_string(f.bitsAllocated) +
             " bits need " + std::to_string(count * bytesPerSample) +
             "; the file is truncated or corrupt: send it again from the modality");
  }
  const StoredValueExtractor toStored(f);
  stored.resize(count);
  if (f.bitsAllocated == 8) {
    Uint8* data = nullptr;
    if (element->getUint8Array(data).bad() || data == nullptr) {
      Fail(ErrorKind::kBadInput, where, "PixelData cannot be read as 8-bit samples");
    }
    for (size_t i = 0; i < count; ++i) stored[i] = toStored(data[i]);
  } else {
    Uint16* data = nullptr;
    if (element->getUint16Array(data).bad() || data == nullptr) {
      Fail(ErrorKind::kBadInput, where, "PixelData cannot be read as 16-bit samples");
    }
    for (size_t i = 0; i < count; ++i) stored[i] = toStored(data[i]);
  }
  return true;
}

std::vector<int32_t> DecodeWithFrameDecoder(const FrameDecoder& decoder, const std::string& bytes,
                                            const PixelFormat& f, long rows, long columns,
                                            const std::string& where) {
  DecodedFrame frame = decoder.DecodeFirstFrame(bytes, where);
  if (frame.rows != rows || frame.columns != columns ||
      frame.values.size() != static_cast<size_t>(rows) * static_cast<size_t>(columns)) {
    Fail(ErrorKind::kBadInput, where,
         "the decoded frame is " + std::to_string(frame.rows) + "x" +
             std::to_string(frame.columns) + " but Rows/Columns say " + std::to_string(rows) + "x" +
             std::to_string(columns) + "; the pixel data does not match the header");
  }
  const StoredValueExtractor toStored(f);
  for (int32_t& v : frame.values) v = toStored.SignExtend(v);
  return std::move(frame.values);
}

// Pixel Padding Value, optionally with Pixel Padding Range Limit (PS3.3 C.7.5.1.1.2):
// the stored values in [lo, hi] mark pixels outside the reconstructed field.
struct Padding {
  bool present = false;
  int32_t lo = 0;
  int32_t hi = 0;
  bool Contains(int32_t v) const { return present && v >= lo && v <= hi; }
};

bool ReadUsOrSs(DcmDataset& ds, const DcmTagKey& tag, bool isSigned, int32_t& value) {
  DcmElement* element = nullptr;
  if (ds.findAndGetElement(tag, element).bad() || element == nullptr || element->getLength() == 0) {
    return false;
  }
  if (element->ident() == EVR_SS) {
    Sint16 v = 0;
    if (element->getSint16(v).bad()) return false;
    value = v;
    return true;
  }
  Uint16 v = 0;
  if (element->getUint16(v).bad()) return false;
  // The VR may be US even for signed images (implicit VR files): the bits are the value.
  value = isSigned ? static_cast<int16_t>(v) : static_cast<int32_t>(v);
  return true;
}

Padding ReadPadding(DcmDataset& ds, bool isSigned) {
  Padding padding;
  int32_t value = 0;
  if (!ReadUsOrSs(ds, DCM_PixelPaddingValue, isSigned, value)) return padding;
  padding.present = true;
  padding.lo = padding.hi = value;
  int32_t limit = 0;
  if (ReadUsOrSs(ds, DCM_PixelPaddingRangeLimit, isSigned, limit)) {
    padding.lo = std::min(value, limit);
    padding.hi = std::max(value, limit);
  }
  return padding;
}

}  // namespace

DecodedPixels DecodePixels(DcmDataset& ds, long rows, long columns, const std::string& bytes,
                           const FrameDecoder* decoder, const std::string& where) {
  DecodedPixels result;
  result.format = ReadFormat(ds, where);
  const PixelFormat& f = result.format;
  if (ds.tagExists(DCM_ModalityLUTSequence)) {
    Fail(ErrorKind::kUnsupported, where,
         "a Modality LUT Sequence is not supported; only RescaleSlope/RescaleIntercept are");
  }
  const double slope = GetDouble(ds, DCM_RescaleSlope, 1.0);
  const double intercept = GetDouble(ds, DCM_RescaleIntercept, 0.0);
  // Physical values are single-precision floats: whatever 32-bit stored value a decoder
  // returns must map into their range with room to compute (real units, HU to Bq/ml, are
  // far below the bound).
  if (slope == 0.0 || !std::isfinite(slope) || !std::isfinite(intercept) ||
      std::abs(slope) * 4294967296.0 + std::abs(intercept) > kMaxPhysicalValue) {
    Fail(ErrorKind::kBadInput, where,
         "RescaleSlope " + FormatDecimal(slope) + " / RescaleIntercept " +
             FormatDecimal(intercept) + " cannot map stored values to physical values");
  }
  if (!ds.tagExists(DCM_PixelData)) {
    Fail(ErrorKind::kBadInput, where, "the instance has no PixelData (7FE0,0010)");
  }

  const size_t count = static_cast<size_t>(rows) * static_cast<size_t>(columns);
  std::vector<int32_t> stored;
  if (!DecodeWithDcmtk(ds, f, count, stored, where)) {
    const DcmXfer xfer(ds.getOriginalXfer());
    if (decoder == nullptr) {
      Fail(ErrorKind::kUnsupported, where,
           std::string("transfer syntax '") + xfer.getXferName() + "' (" + xfer.getXferID() +
               ") cannot be decoded here; have the sender use an uncompressed transfer syntax");
    }
    try {
      stored = DecodeWithFrameDecoder(*decoder, bytes, f, rows, columns, where);
    } catch (const Error& e) {
      throw Error(e.kind(), std::string(e.what()) + " (transfer syntax '" + xfer.getXferName() +
                                "', " + xfer.getXferID() + ")");
    }
  }

  // Padded pixels carry no measurement: they get the lowest real value of the slice
  // instead of an artificial edge that a filter would smear.
  const Padding padding = ReadPadding(ds, f.pixelRepresentation == 1);
  result.values.resize(count);
  float lowest = std::numeric_limits<float>::max();
  for (size_t i = 0; i < count; ++i) {
    const float value = static_cast<float>(stored[i] * slope + intercept);
    result.values[i] = value;
    if (!padding.Contains(stored[i])) lowest = std::min(lowest, value);
  }
  if (padding.present && lowest != std::numeric_limits<float>::max()) {
    for (size_t i = 0; i < count; ++i) {
      if (padding.Contains(stored[i])) result.values[i] = lowest;
    }
  }
  return result;
}

}  // namespace enhance
