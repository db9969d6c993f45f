// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/DicomSeriesReader.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "DicomUtil.h"
#include "enhance/Error.h"
#include "enhance/Runtime.h"

namespace enhance {
namespace {

// Bounds that keep a hostile or broken header from making us allocate absurd buffers.
constexpr long kMaxMatrix = 8192;
constexpr size_t kMaxSlices = 10000;

struct ParsedSlice {
  std::string id;
  std::shared_ptr<DcmFileFormat> file;
  long rows = 0;
  long columns = 0;
  std::string photometric;
  Vec3 rowDirection{};
  Vec3 columnDirection{};
  bool hasOrientation = false;
  Vec3 position{};
  bool hasPosition = false;
  double rowSpacing = 1.0;
  double columnSpacing = 1.0;
  long instanceNumber = 0;
  double sliceThickness = 0.0;
  double sortKey = 0.0;
  std::vector<float> values;
};

[[noreturn]] void Fail(ErrorKind kind, const std::string& where, const std::string& what) {
  throw Error(kind, where + ": " + what);
}

std::shared_ptr<DcmFileFormat> ParseBuffer(const EncodedInstance& in, const std::string& where) {
  if (in.bytes.empty()) Fail(ErrorKind::kBadInput, where, "the file is empty");
  DcmInputBufferStream stream;
  stream.setBuffer(in.bytes.data(), static_cast<offile_off_t>(in.bytes.size()));
  stream.setEos();
  auto file = std::make_shared<DcmFileFormat>();
  file->transferInit();
  const OFCondition status = file->read(stream, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
  file->transferEnd();
  if (status.bad()) {
    Fail(ErrorKind::kBadInput, where,
         std::string("not a readable DICOM file (") + status.text() +
             "); the file may be truncated or corrupt: send it again from the modality");
  }
  return file;
}

// Decodes the pixel data of one single-frame greyscale instance into physical values.
void DecodePixels(DcmDataset& ds, ParsedSlice& slice, const std::string& where) {
  const long samples = GetLong(ds, DCM_SamplesPerPixel, 1);
  slice.photometric = GetString(ds, DCM_PhotometricInterpretation);
  if (samples != 1 || (slice.photometric != "MONOCHROME1" && slice.photometric != "MONOCHROME2")) {
    Fail(ErrorKind::kUnsupported, where,
         "photometric interpretation '" + slice.photometric + "' with " + std::to_string(samples) +
             " samples per pixel is not supported; only greyscale (MONOCHROME1/2) images can be "
             "enhanced");
  }
  const long frames = GetLong(ds, DCM_NumberOfFrames, 1);
  if (frames != 1) {
    Fail(ErrorKind::kUnsupported, where,
         std::to_string(frames) +
             "-frame images are not supported in this version; send single-frame images");
  }
  const long bitsAllocated = GetLong(ds, DCM_BitsAllocated, 0);
  const long bitsStored = GetLong(ds, DCM_BitsStored, bitsAllocated);
  const long highBit = GetLong(ds, DCM_HighBit, bitsStored - 1);
  const long pixelRepresentation = GetLong(ds, DCM_PixelRepresentation, 0);
  if ((bitsAllocated != 8 && bitsAllocated != 16) || bitsStored < 1 || bitsStored > bitsAllocated ||
      highBit < bitsStored - 1 || highBit >= bitsAllocated ||
      (pixelRepresentation != 0 && pixelRepresentation != 1)) {
    Fail(ErrorKind::kUnsupported, where,
         "pixel format BitsAllocated=" + std::to_string(bitsAllocated) +
             " BitsStored=" + std::to_string(bitsStored) + " HighBit=" + std::to_string(highBit) +
             " PixelRepresentation=" + std::to_string(pixelRepresentation) +
             " is not supported (8 or 16 bits allocated are)");
  }
  if (ds.tagExists(DCM_ModalityLUTSequence)) {
    Fail(ErrorKind::kUnsupported, where,
         "a Modality LUT Sequence is not supported; only RescaleSlope/RescaleIntercept are");
  }
  const double slope = GetDouble(ds, DCM_RescaleSlope, 1.0);
  const double intercept = GetDouble(ds, DCM_RescaleIntercept, 0.0);
  if (slope == 0.0 || !std::isfinite(slope) || !std::isfinite(intercept)) {
    Fail(ErrorKind::kBadInput, where,
         "RescaleSlope " + std::to_string(slope) + " / RescaleIntercept " +
             std::to_string(intercept) + " cannot map stored values to physical values");
  }

  const E_TransferSyntax original = ds.getOriginalXfer();
  if (ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() ||
      !ds.canWriteXfer(EXS_LittleEndianExplicit)) {
    Fail(ErrorKind::kUnsupported, where,
         std::string("transfer syntax '") + DcmXfer(original).getXferName() + "' (" +
             DcmXfer(original).getXferID() +
             ") cannot be decoded here; have the sender use an uncompressed transfer syntax");
  }

  DcmElement* element = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) {
    Fail(ErrorKind::kBadInput, where, "the instance has no PixelData (7FE0,0010)");
  }
  const size_t count = static_cast<size_t>(slice.rows) * static_cast<size_t>(slice.columns);
  const size_t bytesPerSample = static_cast<size_t>(bitsAllocated / 8);
  if (element->getLength() < count * bytesPerSample) {
    Fail(ErrorKind::kBadInput, where,
         "PixelData holds " + std::to_string(element->getLength()) + " bytes but " +
             std::to_string(slice.rows) + "x" + std::to_string(slice.columns) + " pixels of " +
             std::to_string(bitsAllocated) + " bits need " +
             std::to_string(count * bytesPerSample));
  }

  // Stored value = the BitsStored bits ending at HighBit, sign-extended when signed.
  const unsigned shift = static_cast<unsigned>(highBit + 1 - bitsStored);
  const uint32_t mask = bitsStored >= 32 ? 0xFFFFFFFFu : ((1u << bitsStored) - 1u);
  const bool isSigned = pixelRepresentation == 1;
  const int32_t signBit = 1 << (bitsStored - 1);
  auto toStored = [&](uint32_t raw) -> int32_t {
    int32_t v = static_cast<int32_t>((raw >> shift) & mask);
    if (isSigned && (v & signBit)) v -= (signBit << 1);
    return v;
  };

  // Padding (PS3.3 C.7.5.1.1.2) marks pixels outside the reconstructed field: they carry
  // no measurement, so they get the lowest real value of the slice instead of an
  // artificial edge that a filter would smear.
  bool hasPadding = false;
  int32_t padding = 0;
  {
    Uint16 value16 = 0;
    Sint16 signed16 = 0;
    if (isSigned && ds.findAndGetSint16(DCM_PixelPaddingValue, signed16).good()) {
      hasPadding = true;
      padding = signed16;
    } else if (!isSigned && ds.findAndGetUint16(DCM_PixelPaddingValue, value16).good()) {
      hasPadding = true;
      padding = value16;
    }
  }

  std::vector<int32_t> stored(count);
  if (bitsAllocated == 8) {
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

  slice.values.resize(count);
  float lowest = std::numeric_limits<float>::max();
  for (size_t i = 0; i < count; ++i) {
    const float value = static_cast<float>(stored[i] * slope + intercept);
    slice.values[i] = value;
    if (!(hasPadding && stored[i] == padding)) lowest = std::min(lowest, value);
  }
  if (hasPadding && lowest != std::numeric_limits<float>::max()) {
    for (size_t i = 0; i < count; ++i) {
      if (stored[i] == padding) slice.values[i] = lowest;
    }
  }
}

ParsedSlice ParseSlice(EncodedInstance& in, const std::string& seriesDescription) {
  const std::string where = seriesDescription + ", instance " + in.id;
  ParsedSlice slice;
  slice.id = in.id;
  slice.file = ParseBuffer(in, where);
  std::string().swap(in.bytes);  // the parsed copy is all we need from here on
  DcmDataset& ds = *slice.file->getDataset();

  slice.rows = GetLong(ds, DCM_Rows, 0);
  slice.columns = GetLong(ds, DCM_Columns, 0);
  if (slice.rows <= 0 || slice.columns <= 0 || slice.rows > kMaxMatrix ||
      slice.columns > kMaxMatrix) {
    Fail(ErrorKind::kBadInput, where,
         "image size " + std::to_string(slice.rows) + "x" + std::to_string(slice.columns) +
             " is missing or outside 1.." + std::to_string(kMaxMatrix));
  }
  if (GetString(ds, DCM_SOPInstanceUID).empty()) {
    Fail(ErrorKind::kBadInput, where, "SOPInstanceUID (0008,0018) is missing");
  }

  std::vector<double> orientation = GetDoubles(ds, DCM_ImageOrientationPatient);
  if (orientation.size() == 6) {
    slice.rowDirection = {orientation[0], orientation[1], orientation[2]};
    slice.columnDirection = {orientation[3], orientation[4], orientation[5]};
    const double nr = Norm(slice.rowDirection);
    const double nc = Norm(slice.columnDirection);
    if (nr < 0.5 || nc < 0.5 ||
        std::abs(Dot(slice.rowDirection, slice.columnDirection)) > 0.01 * nr * nc) {
      Fail(ErrorKind::kBadInput, where,
           "ImageOrientationPatient does not hold two orthogonal unit vectors");
    }
    slice.rowDirection = Normalized(slice.rowDirection);
    slice.columnDirection = Normalized(slice.columnDirection);
    slice.hasOrientation = true;
  }
  std::vector<double> position = GetDoubles(ds, DCM_ImagePositionPatient);
  if (position.size() == 3) {
    slice.position = {position[0], position[1], position[2]};
    slice.hasPosition = true;
  }
  std::vector<double> spacing = GetDoubles(ds, DCM_PixelSpacing);
  if (spacing.size() == 2 && spacing[0] > 0 && spacing[1] > 0) {
    slice.rowSpacing = spacing[0];
    slice.columnSpacing = spacing[1];
  }
  slice.instanceNumber = GetLong(ds, DCM_InstanceNumber, 0);
  slice.sliceThickness = GetDouble(ds, DCM_SliceThickness, 0.0);

  DecodePixels(ds, slice, where);
  // The pixel values now live in slice.values; the dataset is kept only as a template.
  ds.findAndDeleteElement(DCM_PixelData);
  return slice;
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  const size_t middle = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<long>(middle), values.end());
  return values[middle];
}

}  // namespace

DecodedSeries ReadSeries(std::vector<EncodedInstance> instances,
                         const std::string& seriesDescription) {
  RegisterDicomCodecs();
  if (instances.empty()) {
    throw Error(ErrorKind::kBadInput, seriesDescription + ": the series has no instances");
  }
  if (instances.size() > kMaxSlices) {
    throw Error(ErrorKind::kUnsupported,
                seriesDescription + ": " + std::to_string(instances.size()) +
                    " instances exceed the limit of " + std::to_string(kMaxSlices));
  }

  std::vector<ParsedSlice> slices;
  slices.reserve(instances.size());
  for (auto& instance : instances) slices.push_back(ParseSlice(instance, seriesDescription));

  // All slices must share size, orientation and modality.
  const ParsedSlice& first = slices.front();
  const std::string modality = GetString(*first.file->getDataset(), DCM_Modality);
  bool positioned = true;
  for (const auto& s : slices) {
    const std::string where = seriesDescription + ", instance " + s.id;
    if (s.rows != first.rows || s.columns != first.columns) {
      Fail(ErrorKind::kBadInput, where,
           "image size " + std::to_string(s.rows) + "x" + std::to_string(s.columns) +
               " differs from " + std::to_string(first.rows) + "x" + std::to_string(first.columns) +
               " of instance " + first.id + "; a series must have one image size");
    }
    if (s.hasOrientation != first.hasOrientation ||
        (s.hasOrientation && (Norm(s.rowDirection - first.rowDirection) > 1e-3 ||
                              Norm(s.columnDirection - first.columnDirection) > 1e-3))) {
      Fail(ErrorKind::kBadInput, where,
           "ImageOrientationPatient differs from instance " + first.id +
               "; a series with mixed orientations cannot be processed as one volume");
    }
    if (GetString(*s.file->getDataset(), DCM_Modality) != modality) {
      Fail(ErrorKind::kBadInput, where, "Modality differs from instance " + first.id);
    }
    positioned = positioned && s.hasPosition && s.hasOrientation;
  }

  Geometry geometry;
  if (first.hasOrientation) {
    geometry.rowDirection = first.rowDirection;
    geometry.columnDirection = first.columnDirection;
    geometry.sliceDirection = Normalized(Cross(first.rowDirection, first.columnDirection));
  }
  // Order along the slice normal; InstanceNumber only when positions are missing.
  for (auto& s : slices) {
    s.sortKey = positioned ? Dot(s.position, geometry.sliceDirection)
                           : static_cast<double>(s.instanceNumber);
  }
  std::stable_sort(slices.begin(), slices.end(), [](const ParsedSlice& a, const ParsedSlice& b) {
    return a.sortKey < b.sortKey;
  });

  std::vector<double> gaps;
  for (size_t k = 1; k < slices.size(); ++k) {
    const double gap = slices[k].sortKey - slices[k - 1].sortKey;
    if (positioned && gap < 1e-3) {
      Fail(ErrorKind::kBadInput, seriesDescription,
           "instances " + slices[k - 1].id + " and " + slices[k].id +
               " are at the same position; the series holds duplicate or overlapping slices");
    }
    gaps.push_back(gap);
  }

  geometry.rowSpacing = first.rowSpacing;
  geometry.columnSpacing = first.columnSpacing;
  geometry.sliceThickness = first.sliceThickness;
  geometry.frameOfReferenceUid = GetString(*first.file->getDataset(), DCM_FrameOfReferenceUID);
  if (positioned && !gaps.empty()) {
    geometry.sliceSpacing = Median(gaps);
  } else {
    const double between = GetDouble(*first.file->getDataset(), DCM_SpacingBetweenSlices, 0.0);
    geometry.sliceSpacing =
        between > 0 ? between : (first.sliceThickness > 0 ? first.sliceThickness : 1.0);
  }

  DecodedSeries result;
  result.description = seriesDescription;
  result.modality = modality;
  Volume& volume = result.volume;
  volume.Resize(static_cast<int64_t>(slices.size()), first.rows, first.columns);
  volume.units = modality == "CT" ? "HU" : "";
  for (size_t k = 0; k < slices.size(); ++k) {
    auto& s = slices[k];
    std::copy(s.values.begin(), s.values.end(), volume.Slice(static_cast<int64_t>(k)));
    std::vector<float>().swap(s.values);
    geometry.slicePositions.push_back(
        s.hasPosition ? s.position
                      : first.position + (static_cast<double>(k) * geometry.sliceSpacing) *
                                             geometry.sliceDirection);
    DcmDataset* ds = s.file->getDataset();
    SourceInstance source;
    source.id = s.id;
    source.sopClassUid = GetString(*ds, DCM_SOPClassUID);
    source.sopInstanceUid = GetString(*ds, DCM_SOPInstanceUID);
    // Aliasing constructor: the dataset stays alive as long as its file does.
    source.dataset = std::shared_ptr<const DcmDataset>(s.file, ds);
    result.instances.push_back(std::move(source));
  }
  volume.geometry = std::move(geometry);
  return result;
}

}  // namespace enhance
