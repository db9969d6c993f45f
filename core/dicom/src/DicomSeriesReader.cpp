// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/dicom/DicomSeriesReader.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "DicomUtil.h"
#include "PixelDecoding.h"
#include "enhance/base/Error.h"
#include "enhance/dicom/DicomCodecs.h"

namespace enhance {
namespace {

// Bounds that keep a hostile or broken header from making us allocate absurd buffers.
constexpr long kMaxMatrix = 8192;
constexpr size_t kMaxSlices = 10000;
constexpr double kMaxVoxels = 2.0e9;  // 8 GB of float voxels
// Patient coordinates and distances beyond these are not measurements (1 km, 10 m); they
// would overflow the geometry computed from them.
constexpr double kMaxCoordinateMm = 1.0e6;
constexpr double kMaxSpacingMm = 1.0e4;
// A gap this many times the median spacing is reported (a missing slice, usually).
constexpr double kGapWarningFactor = 1.5;
constexpr size_t kMaxWarningsPerKind = 5;

struct ParsedSlice {
  std::string id;
  std::shared_ptr<DcmFileFormat> file;
  long rows = 0;
  long columns = 0;
  PixelFormat format;
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
  std::vector<float> values;  // until copied into the volume
  size_t storedAt = 0;        // index of this slice's pixels in the reader's buffer
};

[[noreturn]] void Fail(ErrorKind kind, const std::string& where, const std::string& what) {
  throw Error(kind, where + ": " + what);
}

std::shared_ptr<DcmFileFormat> ParseBuffer(const EncodedInstance& in, const std::string& where) {
  if (in.bytes.empty()) Fail(ErrorKind::kBadInput, where, "the file is empty");
  OFCondition status;
  std::shared_ptr<DcmFileFormat> file = ReadDicomBuffer(in.bytes, status);
  if (!file) {
    Fail(ErrorKind::kBadInput, where,
         std::string("not a readable DICOM file (") + status.text() +
             "); the file may be truncated or corrupt: send it again from the modality");
  }
  return file;
}

// Refuses objects that hold no image before their missing image attributes produce a
// less helpful message.
void CheckIsImage(DcmDataset& ds, const std::string& where) {
  const std::string sopClass = GetString(ds, DCM_SOPClassUID);
  const char* name = dcmFindNameOfUID(sopClass.c_str(), nullptr);
  if (name != nullptr && !dcmIsImageStorageSOPClassUID(sopClass.c_str())) {
    Fail(ErrorKind::kUnsupported, where,
         std::string("a ") + name + " object (SOP Class UID " + Printable(sopClass) +
             ", modality '" + Printable(GetString(ds, DCM_Modality)) +
             "') is not an image; only image series such as CT or MR can be enhanced");
  }
  if (!ds.tagExists(DCM_PixelData) && !ds.tagExists(DCM_Rows)) {
    Fail(ErrorKind::kUnsupported, where,
         "the object (SOP Class UID " + Printable(sopClass) +
             ") has no image attributes and no PixelData; only images can be enhanced");
  }
}

// The Image Plane attributes: orientation, position, pixel spacing and slice thickness,
// each checked for plausibility.
void ParsePlane(DcmDataset& ds, const std::string& where, ParsedSlice& slice) {
  std::vector<double> orientation = GetDoubles(ds, DCM_ImageOrientationPatient);
  if (orientation.size() == 6) {
    slice.rowDirection = {orientation[0], orientation[1], orientation[2]};
    slice.columnDirection = {orientation[3], orientation[4], orientation[5]};
    const double nr = Norm(slice.rowDirection);
    const double nc = Norm(slice.columnDirection);
    if (nr < 0.5 || nc < 0.5 || nr > 2.0 || nc > 2.0 ||
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
    if (std::abs(position[0]) > kMaxCoordinateMm || std::abs(position[1]) > kMaxCoordinateMm ||
        std::abs(position[2]) > kMaxCoordinateMm) {
      Fail(ErrorKind::kBadInput, where,
           "ImagePositionPatient " + FormatDecimal(position[0]) + "\\" +
               FormatDecimal(position[1]) + "\\" + FormatDecimal(position[2]) + " lies more than " +
               FormatDecimal(kMaxCoordinateMm) + " mm from the origin");
    }
  }
  std::vector<double> spacing = GetDoubles(ds, DCM_PixelSpacing);
  if (spacing.size() == 2 && spacing[0] > 0 && spacing[1] > 0) {
    if (spacing[0] > kMaxSpacingMm || spacing[1] > kMaxSpacingMm) {
      Fail(ErrorKind::kBadInput, where,
           "PixelSpacing " + FormatDecimal(spacing[0]) + "\\" + FormatDecimal(spacing[1]) +
               " mm is larger than " + FormatDecimal(kMaxSpacingMm) + " mm");
    }
    slice.rowSpacing = spacing[0];
    slice.columnSpacing = spacing[1];
  }
  slice.instanceNumber = GetLong(ds, DCM_InstanceNumber, 0);
  // Nominal only: a thickness that is not a plausible distance counts as unknown.
  slice.sliceThickness = GetDouble(ds, DCM_SliceThickness, 0.0);
  if (!(slice.sliceThickness > 0 && slice.sliceThickness <= kMaxSpacingMm)) {
    slice.sliceThickness = 0.0;
  }
}

// `sliceCount` bounds the whole volume before any pixel is decoded.
ParsedSlice ParseSlice(EncodedInstance& in, const std::string& seriesDescription,
                       const FrameDecoder* decoder, size_t sliceCount) {
  const std::string where = seriesDescription + ", instance " + in.id;
  ParsedSlice slice;
  slice.id = in.id;
  slice.file = ParseBuffer(in, where);
  DcmDataset& ds = *slice.file->getDataset();
  CheckIsImage(ds, where);

  slice.rows = GetLong(ds, DCM_Rows, 0);
  slice.columns = GetLong(ds, DCM_Columns, 0);
  if (slice.rows <= 0 || slice.columns <= 0 || slice.rows > kMaxMatrix ||
      slice.columns > kMaxMatrix) {
    Fail(ErrorKind::kBadInput, where,
         "image size " + std::to_string(slice.rows) + "x" + std::to_string(slice.columns) +
             " is missing or outside 1.." + std::to_string(kMaxMatrix));
  }
  const double voxels = static_cast<double>(sliceCount) * static_cast<double>(slice.rows) *
                        static_cast<double>(slice.columns);
  if (voxels > kMaxVoxels) {
    Fail(ErrorKind::kUnsupported, where,
         std::to_string(sliceCount) + " slices of " + std::to_string(slice.rows) + "x" +
             std::to_string(slice.columns) + " exceed the limit of " + FormatDecimal(kMaxVoxels) +
             " voxels per series; split the series");
  }
  if (GetString(ds, DCM_SOPInstanceUID).empty()) {
    Fail(ErrorKind::kBadInput, where, "SOPInstanceUID (0008,0018) is missing");
  }

  ParsePlane(ds, where, slice);

  DecodedPixels pixels = DecodePixels(ds, slice.rows, slice.columns, in.bytes, decoder, where);
  slice.format = std::move(pixels.format);
  slice.values = std::move(pixels.values);
  // From here on the parsed dataset is all that is needed, and only as a template.
  std::string().swap(in.bytes);
  ds.findAndDeleteElement(DCM_PixelData);
  return slice;
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0.0;
  const size_t middle = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<long>(middle), values.end());
  return values[middle];
}

// Appends at most kMaxWarningsPerKind messages of one kind, then a count of the rest.
class WarningList {
 public:
  WarningList(std::vector<std::string>& out, std::string prefix)
      : out_(out), prefix_(std::move(prefix)) {}
  void Add(const std::string& message) {
    if (++count_ <= kMaxWarningsPerKind) out_.push_back(prefix_ + message);
  }
  ~WarningList() {
    if (count_ > kMaxWarningsPerKind) {
      out_.push_back(prefix_ + std::to_string(count_ - kMaxWarningsPerKind) +
                     " more of the same kind");
    }
  }
  WarningList(const WarningList&) = delete;
  WarningList& operator=(const WarningList&) = delete;

 private:
  std::vector<std::string>& out_;
  std::string prefix_;
  size_t count_ = 0;
};

// All slices must share size, orientation and modality. Pixel formats may differ: every
// slice is decoded to physical values, but a mix often means a mixed-up series. True when
// every slice has a position and an orientation.
bool CheckOneVolume(const std::vector<ParsedSlice>& slices, const std::string& seriesDescription,
                    std::vector<std::string>& warnings) {
  const ParsedSlice& first = slices.front();
  const std::string modality = GetString(*first.file->getDataset(), DCM_Modality);
  {
    WarningList mixedFormats(warnings, seriesDescription + ": ");
    for (const auto& s : slices) {
      if (s.format != first.format) {
        mixedFormats.Add("instance " + s.id + " stores pixels as " + s.format.Describe() +
                         ", instance " + first.id + " as " + first.format.Describe() +
                         "; both are decoded to physical values, check that they belong to one "
                         "series");
      }
    }
  }
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
  return positioned;
}

// Order along the slice normal; InstanceNumber only when positions are missing.
void SortAlongNormal(std::vector<ParsedSlice>& slices, const Vec3& normal, bool positioned) {
  for (auto& s : slices) {
    s.sortKey = positioned ? Dot(s.position, normal) : static_cast<double>(s.instanceNumber);
  }
  std::stable_sort(slices.begin(), slices.end(), [](const ParsedSlice& a, const ParsedSlice& b) {
    return a.sortKey < b.sortKey;
  });
}

// The spacing of sorted slices: the median gap between positions, with a warning for each
// gap much larger (slices may be missing) and an error for slices at the same position;
// without positions, SpacingBetweenSlices or the thickness.
double SliceSpacing(const std::vector<ParsedSlice>& slices, bool positioned,
                    const std::string& seriesDescription, std::vector<std::string>& warnings) {
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
  if (positioned && !gaps.empty()) {
    const double spacing = Median(gaps);
    WarningList irregular(warnings, seriesDescription + ": ");
    for (size_t k = 1; k < slices.size(); ++k) {
      if (gaps[k - 1] > kGapWarningFactor * spacing) {
        irregular.Add("irregular slice spacing: " + FormatDecimal(gaps[k - 1]) +
                      " mm between instances " + slices[k - 1].id + " and " + slices[k].id +
                      ", more than " + FormatDecimal(kGapWarningFactor) +
                      " times the median spacing of " + FormatDecimal(spacing) +
                      " mm; slices may be missing");
      }
    }
    return spacing;
  }
  if (slices.size() > 1) {
    warnings.push_back(seriesDescription +
                       ": ImagePositionPatient or ImageOrientationPatient is missing; "
                       "slices are ordered by InstanceNumber and assumed equally spaced");
  }
  const ParsedSlice& first = slices.front();
  const double between = GetDouble(*first.file->getDataset(), DCM_SpacingBetweenSlices, 0.0);
  return between > 0 && between <= kMaxSpacingMm
             ? between
             : (first.sliceThickness > 0 ? first.sliceThickness : 1.0);
}

// Puts the pixels in the sorted order, in place: each cycle of the permutation is
// followed with one slice of scratch space.
void PutInSortedOrder(const std::vector<ParsedSlice>& slices, size_t perSlice,
                      std::vector<float>& voxels) {
  std::vector<float> scratch(perSlice);
  std::vector<bool> placed(slices.size(), false);
  float* const data = voxels.data();
  for (size_t k = 0; k < slices.size(); ++k) {
    if (placed[k] || slices[k].storedAt == k) continue;
    std::copy_n(data + k * perSlice, perSlice, scratch.data());  // the pixels stored at k
    size_t target = k;
    // Fill position `target` with the slice that belongs there, then move on to the
    // position that slice came from, until the cycle returns to k.
    while (slices[target].storedAt != k) {
      const size_t from = slices[target].storedAt;
      std::copy_n(data + from * perSlice, perSlice, data + target * perSlice);
      placed[target] = true;
      target = from;
    }
    std::copy_n(scratch.data(), perSlice, data + target * perSlice);
    placed[target] = true;
  }
}

}  // namespace

struct SeriesReader::State {
  std::string description;
  size_t expected = 0;
  const FrameDecoder* decoder = nullptr;
  std::vector<ParsedSlice> slices;  // headers, in the order added
  std::vector<float> voxels;        // slice k of `slices` at k * rows * columns
  float lowest = 0.0f;              // the range of the values decoded so far
  float highest = 0.0f;
};

SeriesReader::SeriesReader(std::string seriesDescription, size_t expectedInstances,
                           const FrameDecoder* decoder)
    : state_(std::make_unique<State>()) {
  RegisterDicomCodecs();
  if (expectedInstances > kMaxSlices) {
    throw Error(ErrorKind::kUnsupported,
                seriesDescription + ": " + std::to_string(expectedInstances) +
                    " instances exceed the limit of " + std::to_string(kMaxSlices));
  }
  state_->description = std::move(seriesDescription);
  state_->expected = expectedInstances;
  state_->decoder = decoder;
  state_->slices.reserve(expectedInstances);
}

SeriesReader::~SeriesReader() = default;

size_t SeriesReader::Count() const { return state_->slices.size(); }

void SeriesReader::Add(EncodedInstance instance) {
  State& st = *state_;
  if (st.slices.size() >= st.expected) {
    throw Error(ErrorKind::kInternal, st.description + ": more than the " +
                                          std::to_string(st.expected) +
                                          " instances announced were added");
  }
  ParsedSlice slice = ParseSlice(instance, st.description, st.decoder, st.expected);
  if (st.slices.empty()) {
    // Reserved, not filled: pages are touched only as slices are decoded into them.
    st.voxels.reserve(st.expected * static_cast<size_t>(slice.rows * slice.columns));
  } else {
    const ParsedSlice& first = st.slices.front();
    if (slice.rows != first.rows || slice.columns != first.columns) {
      Fail(ErrorKind::kBadInput, st.description + ", instance " + slice.id,
           "image size " + std::to_string(slice.rows) + "x" + std::to_string(slice.columns) +
               " differs from " + std::to_string(first.rows) + "x" + std::to_string(first.columns) +
               " of instance " + first.id + "; a series must have one image size");
    }
  }
  if (!slice.values.empty()) {
    const auto [lo, hi] = std::minmax_element(slice.values.begin(), slice.values.end());
    st.lowest = st.slices.empty() ? *lo : std::min(st.lowest, *lo);
    st.highest = st.slices.empty() ? *hi : std::max(st.highest, *hi);
  }
  st.voxels.insert(st.voxels.end(), slice.values.begin(), slice.values.end());
  std::vector<float>().swap(slice.values);
  st.slices.push_back(std::move(slice));
}

SeriesReader::Added SeriesReader::LastAdded() {
  State& st = *state_;
  if (st.slices.empty()) throw Error(ErrorKind::kInternal, st.description + ": nothing added yet");
  const ParsedSlice& last = st.slices.back();
  const size_t perSlice = static_cast<size_t>(last.rows * last.columns);
  Added added;
  added.id = last.id;
  added.sopInstanceUid = GetString(*last.file->getDataset(), DCM_SOPInstanceUID);
  added.values = st.voxels.data() + (st.slices.size() - 1) * perSlice;
  added.rows = last.rows;
  added.columns = last.columns;
  return added;
}

DecodedSeries SeriesReader::Finish() {
  State& st = *state_;
  const std::string& seriesDescription = st.description;
  std::vector<ParsedSlice>& slices = st.slices;
  if (slices.empty()) {
    throw Error(ErrorKind::kBadInput, seriesDescription + ": the series has no instances");
  }
  // Slices keep the order they were added in until sorted below; storedAt remembers where
  // each one's pixels are in st.voxels.
  for (size_t k = 0; k < slices.size(); ++k) slices[k].storedAt = k;

  DecodedSeries result;
  result.description = seriesDescription;
  result.lowest = st.lowest;
  result.highest = st.highest;
  const bool positioned = CheckOneVolume(slices, seriesDescription, result.warnings);

  const ParsedSlice& first = slices.front();
  Geometry geometry;
  if (first.hasOrientation) {
    geometry.rowDirection = first.rowDirection;
    geometry.columnDirection = first.columnDirection;
    geometry.sliceDirection = Normalized(Cross(first.rowDirection, first.columnDirection));
  }
  SortAlongNormal(slices, geometry.sliceDirection, positioned);
  geometry.rowSpacing = first.rowSpacing;
  geometry.columnSpacing = first.columnSpacing;
  geometry.sliceThickness = first.sliceThickness;
  geometry.frameOfReferenceUid = GetString(*first.file->getDataset(), DCM_FrameOfReferenceUID);
  geometry.sliceSpacing = SliceSpacing(slices, positioned, seriesDescription, result.warnings);

  result.modality = GetString(*first.file->getDataset(), DCM_Modality);
  result.seriesInstanceUid = GetString(*first.file->getDataset(), DCM_SeriesInstanceUID);
  Volume& volume = result.volume;
  volume.slices = static_cast<int64_t>(slices.size());
  volume.rows = first.rows;
  volume.columns = first.columns;
  volume.units = result.modality == "CT" ? "HU" : "";
  volume.voxels = std::move(st.voxels);
  PutInSortedOrder(slices, static_cast<size_t>(volume.VoxelsPerSlice()), volume.voxels);
  for (size_t k = 0; k < slices.size(); ++k) {
    auto& s = slices[k];
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
  slices.clear();
  return result;
}

DecodedSeries ReadSeries(std::vector<EncodedInstance> instances,
                         const std::string& seriesDescription, const FrameDecoder* decoder) {
  if (instances.empty()) {
    throw Error(ErrorKind::kBadInput, seriesDescription + ": the series has no instances");
  }
  SeriesReader reader(seriesDescription, instances.size(), decoder);
  for (auto& instance : instances) reader.Add(std::move(instance));
  return reader.Finish();
}

}  // namespace enhance
