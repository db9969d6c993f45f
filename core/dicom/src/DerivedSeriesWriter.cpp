// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/dicom/DerivedSeriesWriter.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <memory>

#include "DerivedGeometry.h"
#include "DicomUtil.h"
#include "SyntheticCt.h"
#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"
#include "enhance/dicom/PixelEncoding.h"

namespace enhance {

const char* const kEquipmentManufacturer = "Orthanc Enhance";

OutputKind OutputKindForTask(const std::string& task) {
  return task == "mr2ct" ? OutputKind::kSyntheticCt : OutputKind::kSameAsSource;
}

namespace {

const CodedConcept kSourceImagePurpose{"121322", "DCM",
                                       "Source image for image processing operation"};
const CodedConcept kProcessingEquipment{"109102", "DCM", "Processing Equipment"};
// PS3.16; named in the description of Synthetic Data (0008,001C), PS3.3 C.12.1.
const CodedConcept kSynthesizingEquipment{"109100", "DCM", "Synthesizing Equipment"};

struct Now {
  std::string date;  // YYYYMMDD
  std::string time;  // HHMMSS
};

Now CurrentDateTime() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm local{};
  localtime_r(&t, &local);
  char date[16];
  char time[16];
  std::strftime(date, sizeof(date), "%Y%m%d", &local);
  std::strftime(time, sizeof(time), "%H%M%S", &local);
  return {date, time};
}

// Attributes of the source that must not survive into a derived image: they describe
// the source's own identity, its pixel encoding, content that processing changes, or its
// references to other instances (the derived image references its source instead).
const DcmTagKey kRemovedFromSource[] = {
    DCM_SOPInstanceUID,
    DCM_SeriesInstanceUID,
    DCM_PixelData,
    DCM_SmallestImagePixelValue,
    DCM_LargestImagePixelValue,
    DCM_SmallestPixelValueInSeries,
    DCM_LargestPixelValueInSeries,
    DCM_PixelPaddingValue,
    DCM_PixelPaddingRangeLimit,
    DCM_IconImageSequence,
    DCM_SourceImageSequence,
    DCM_DerivationDescription,
    DCM_DerivationCodeSequence,
    DCM_DigitalSignaturesSequence,
    DCM_MACParametersSequence,
    DCM_EncryptedAttributesSequence,
    DCM_OriginalAttributesSequence,
    DCM_InstanceCreatorUID,
    DCM_RelatedSeriesSequence,
    DCM_ReferencedImageSequence,
    DCM_ReferencedInstanceSequence,
    DCM_ReferencedSeriesSequence,
    DCM_StudiesContainingOtherReferencedInstancesSequence,
    DCM_ReferencedRawDataSequence,
    DCM_ReferencedWaveformSequence,
    DCM_SourceInstanceSequence,
};

void RemoveSourceOnlyAttributes(DcmDataset& ds) {
  for (const auto& tag : kRemovedFromSource) ds.findAndDeleteElement(tag, OFTrue);
  // Private attributes (odd groups) and overlays (60xx) belong to the source pixels.
  for (unsigned long i = ds.card(); i-- > 0;) {
    DcmObject* object = ds.getElement(i);
    const Uint16 group = object->getGTag();
    if ((group & 1u) != 0 || (group >= 0x6000 && group <= 0x60FF)) {
      delete ds.remove(object);
    }
  }
}

std::string ImageType(DcmDataset& source, const std::string& modality) {
  // DERIVED\SECONDARY, then the source's values 3 and beyond (e.g. AXIAL) so viewers
  // keep treating the images as the same kind of slice.
  std::string value = "DERIVED\\SECONDARY";
  const std::string original = GetString(source, DCM_ImageType);
  size_t start = 0;
  int index = 0;
  std::string rest;
  while (start <= original.size()) {
    const size_t end = original.find('\\', start);
    const std::string item = original.substr(start, end == std::string::npos ? end : end - start);
    if (index >= 2) rest += "\\" + item;
    ++index;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (rest.empty() && modality == "CT") rest = "\\AXIAL";
  return value + rest;
}

std::string Truncate(std::string text, size_t maximum) {
  if (text.size() > maximum) text.resize(maximum);
  return text;
}

DcmDataset& Mutable(const SourceInstance& instance) {
  // The reader hands out const datasets to stop accidental changes; DCMTK's getters are
  // not const-correct, and this file only reads through them.
  return const_cast<DcmDataset&>(*instance.dataset);
}

// `text` in at most `maximum` characters: cut, ending in "...", when longer.
std::string Shortened(const std::string& text, size_t maximum) {
  if (text.size() <= maximum) return text;
  return maximum < 3 ? text.substr(0, maximum) : text.substr(0, maximum - 3) + "...";
}

// At most 1024 characters (DICOM's limit for ST). The warning opens it and the labels close
// it ("produced by ...; algorithm output, not an acquired image"); when everything does not
// fit, what lies between (the model, its parameters, what it learned) is shortened, then,
// if a warning alone would crowd the rest out, the warning, so that neither the warning's
// start nor the labels are ever cut away.
std::string DerivationDescription(const DerivationInfo& info, const std::string& units) {
  constexpr size_t kLimit = 1024;
  constexpr size_t kWarningAtMost = 512;
  const std::string warning =
      info.warning.empty() ? "" : Shortened("WARNING: " + info.warning, kWarningAtMost) + "; ";
  std::string middle;
  if (info.uncertaintySamples > 0) {
    middle = "uncertainty map: per-voxel standard deviation across " +
             std::to_string(info.uncertaintySamples) + " " + info.uncertaintyOver +
             (units.empty() ? std::string() : " (" + units + ")") + " of " + info.task + " by ";
  } else {
    middle = info.task + " by ";
  }
  middle += info.modelName + " " + info.modelVersion;
  if (!info.parameters.empty()) middle += " (" + info.parameters + ")";
  if (!info.learned.empty()) middle += "; " + info.learned;
  const std::string labels = "; produced by " + std::string(kEquipmentManufacturer) + " " +
                             Shortened(info.softwareVersion, 64) +
                             "; algorithm output, not an acquired image";
  return warning + Shortened(middle, kLimit - warning.size() - labels.size()) + labels;
}

// What all slices of one derived series share.
struct SeriesContext {
  SeriesContext(const DecodedSeries& s, const Volume& o, const DerivationInfo& i)
      : source(s),
        output(o),
        info(i),
        plan(PlanOutput(s, o)),
        syntheticCt(i.outputKind == OutputKind::kSyntheticCt),
        seriesUid(i.seriesInstanceUid.empty() ? GenerateUid(i.uidRoot) : i.seriesInstanceUid),
        description(DerivationDescription(i, o.units)),
        now(CurrentDateTime()) {}

  const DecodedSeries& source;
  const Volume& output;
  const DerivationInfo& info;
  const OutputPlan plan;
  const bool syntheticCt;
  const std::string seriesUid;
  const std::string description;
  const Now now;
  PixelEncoding encoding;
  bool writeRescale = false;
};

void CheckOutput(const DecodedSeries& source, const Volume& output, const DerivationInfo& info) {
  if (source.instances.size() != static_cast<size_t>(source.volume.slices) ||
      source.instances.empty()) {
    throw Error(ErrorKind::kInternal,
                source.description + ": the decoded series has no source instance per slice");
  }
  if (info.outputKind != OutputKind::kSyntheticCt) return;
  if (output.units != "HU") {
    throw Error(ErrorKind::kInternal, source.description + ": the model's synthetic CT is in '" +
                                          output.units +
                                          "', not 'HU'; this is a fault in the model, report it");
  }
  // A synthetic CT is used together with its MR (e.g. for planning): it must sit in the
  // MR's frame of reference, which needs the MR's full geometry.
  for (const SourceInstance& instance : source.instances) {
    DcmDataset& ds = Mutable(instance);
    for (const DcmTagKey& tag : {DCM_ImagePositionPatient, DCM_ImageOrientationPatient,
                                 DCM_PixelSpacing, DCM_FrameOfReferenceUID}) {
      if (GetString(ds, tag).empty()) {
        throw Error(ErrorKind::kBadInput,
                    source.description + ", instance " + instance.id + ": " +
                        DcmTag(tag).getTagName() +
                        " is missing; a synthetic CT can only be made from images with a "
                        "complete position, orientation, pixel spacing and frame of reference");
      }
    }
  }
}

// `minValue`..`maxValue`: the values the series must store.
void ChooseSeriesEncoding(SeriesContext& c, float minValue, float maxValue) {
  if (c.syntheticCt) {
    c.encoding = ChooseEncoding(kSyntheticCtMinHu, kSyntheticCtMaxHu, 1.0, kSyntheticCtMinHu);
    c.writeRescale = true;
    return;
  }
  // One encoding for the whole series keeps the stored values comparable across slices.
  DcmDataset& first = Mutable(c.source.instances.front());
  c.writeRescale = first.tagExists(DCM_RescaleSlope) || first.tagExists(DCM_RescaleIntercept) ||
                   c.source.modality == "CT";
  if (c.writeRescale) {
    c.encoding = ChooseEncoding(minValue, maxValue, GetDouble(first, DCM_RescaleSlope, 1.0),
                                GetDouble(first, DCM_RescaleIntercept, 0.0));
  } else {
    // Without a Modality LUT in the IOD (e.g. MR), stored values are the physical values.
    c.encoding.isSigned = minValue < -0.5f;
  }
}

std::unique_ptr<DcmDataset> SliceTemplate(const SeriesContext& c, const OutputSlice& slice) {
  DcmDataset& source = Mutable(c.source.instances[slice.templateIndex]);
  if (c.syntheticCt) return SyntheticCtTemplate(source);
  auto ds = std::make_unique<DcmDataset>(source);
  RemoveSourceOnlyAttributes(*ds);
  return ds;
}

void WriteIdentity(DcmDataset& ds, const SeriesContext& c, int64_t k) {
  // With a given series UID the instance UIDs follow from it, so a job run again after a
  // restart writes the same objects instead of a second copy.
  PutString(ds, DCM_SOPInstanceUID,
            c.info.seriesInstanceUid.empty()
                ? GenerateUid(c.info.uidRoot)
                : UidFromName(c.seriesUid + "/" + std::to_string(k + 1), c.info.uidRoot));
  PutString(ds, DCM_SeriesInstanceUID, c.seriesUid);
  PutString(ds, DCM_InstanceCreationDate, c.now.date);
  PutString(ds, DCM_InstanceCreationTime, c.now.time);
  PutString(ds, DCM_SeriesDate, c.now.date);
  PutString(ds, DCM_SeriesTime, c.now.time);
  PutString(ds, DCM_ContentDate, c.now.date);
  PutString(ds, DCM_ContentTime, c.now.time);
  const long sourceSeriesNumber = GetLong(ds, DCM_SeriesNumber, 0);
  PutString(ds, DCM_SeriesNumber,
            std::to_string(std::clamp<long>(sourceSeriesNumber + c.info.seriesNumberOffset,
                                            -2147483647L, 2147483647L)));
  PutString(ds, DCM_InstanceNumber, std::to_string(k + 1));
  PutString(ds, DCM_SeriesDescription,
            Truncate(GetString(ds, DCM_SeriesDescription) + c.info.seriesDescriptionSuffix, 64));
}

// What was done, and from which images: General Image derivation attributes, the General
// Reference Module's Source Image Sequence and the Common Instance Reference Module.
void WriteDerivation(DcmDataset& ds, const SeriesContext& c, const OutputSlice& slice,
                     const std::string& where) {
  if (!c.syntheticCt) PutString(ds, DCM_ImageType, ImageType(ds, c.source.modality));
  PutString(ds, DCM_DerivationDescription, c.description);
  if (!c.info.warning.empty()) {
    PutString(ds, DCM_ImageComments, Shortened("WARNING: " + c.info.warning, 10240));  // LT
  }
  if (!c.info.derivationCode.value.empty()) {
    AppendCodeItem(ds, DCM_DerivationCodeSequence, c.info.derivationCode);
  }
  std::map<std::string, std::vector<size_t>> bySeries;
  for (size_t j : slice.sources) {
    const SourceInstance& src = c.source.instances[j];
    DcmItem* reference = nullptr;
    ds.findOrCreateSequenceItem(DCM_SourceImageSequence, reference, -2);
    if (reference == nullptr) throw Error(ErrorKind::kInternal, where + ": SourceImageSequence");
    PutString(*reference, DCM_ReferencedSOPClassUID, src.sopClassUid);
    PutString(*reference, DCM_ReferencedSOPInstanceUID, src.sopInstanceUid);
    AppendCodeItem(*reference, DCM_PurposeOfReferenceCodeSequence, kSourceImagePurpose);
    bySeries[GetString(Mutable(src), DCM_SeriesInstanceUID)].push_back(j);
  }
  for (const auto& [seriesUid, members] : bySeries) {
    DcmItem* series = nullptr;
    ds.findOrCreateSequenceItem(DCM_ReferencedSeriesSequence, series, -2);
    if (series == nullptr) throw Error(ErrorKind::kInternal, where + ": ReferencedSeriesSequence");
    PutString(*series, DCM_SeriesInstanceUID, seriesUid);
    for (size_t j : members) {
      DcmItem* instance = nullptr;
      series->findOrCreateSequenceItem(DCM_ReferencedInstanceSequence, instance, -2);
      if (instance == nullptr) throw Error(ErrorKind::kInternal, where + ": ReferencedInstance");
      PutString(*instance, DCM_ReferencedSOPClassUID, c.source.instances[j].sopClassUid);
      PutString(*instance, DCM_ReferencedSOPInstanceUID, c.source.instances[j].sopInstanceUid);
    }
  }
}

// A greyscale window from 0 to `width`, in place of the source's windows and VOI LUTs;
// never narrower than 1, which DICOM does not allow without a VOI LUT function.
void WriteWindow(DcmDataset& ds, double requested) {
  const double width = std::max(requested, 1.0);
  delete ds.remove(DCM_VOILUTSequence);
  PutString(ds, DCM_WindowCenter, FormatDecimal(width / 2, 6));
  PutString(ds, DCM_WindowWidth, FormatDecimal(width, 6));
  PutString(ds, DCM_WindowCenterWidthExplanation, "UNCERTAINTY SD");
}

void WriteContributingEquipment(DcmDataset& ds, const SeriesContext& c, const std::string& where) {
  const DerivationInfo& info = c.info;
  DcmItem* equipment = nullptr;
  ds.findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, equipment, -2);
  if (equipment == nullptr) throw Error(ErrorKind::kInternal, where + ": ContributingEquipment");
  AppendCodeItem(*equipment, DCM_PurposeOfReferenceCodeSequence,
                 c.syntheticCt ? kSynthesizingEquipment : kProcessingEquipment);
  PutString(*equipment, DCM_Manufacturer, kEquipmentManufacturer);
  PutString(*equipment, DCM_ManufacturerModelName, Truncate(info.modelName, 64));
  PutString(*equipment, DCM_SoftwareVersions,
            Truncate(info.softwareVersion, 64) + "\\" + Truncate(info.modelVersion, 64));
  if (!info.modelUid.empty()) PutString(*equipment, DCM_DeviceUID, info.modelUid);
  PutString(*equipment, DCM_ContributionDateTime, c.now.date + c.now.time);
  PutString(*equipment, DCM_ContributionDescription,
            Truncate((info.uncertaintySamples > 0 ? "uncertainty of " : "") + info.task + " with " +
                         info.modelName + " " + info.modelVersion,
                     64));
}

void WritePixels(DcmDataset& ds, const SeriesContext& c, const float* values,
                 const std::string& where) {
  const Volume& output = c.output;
  std::vector<float> clipped;
  if (c.syntheticCt) {
    clipped.assign(values, values + output.VoxelsPerSlice());
    for (float& v : clipped) {
      v = std::clamp(v, static_cast<float>(kSyntheticCtMinHu),
                     static_cast<float>(kSyntheticCtMaxHu));
    }
    values = clipped.data();
  }
  const std::vector<uint16_t> pixels = EncodePixels(values, output.VoxelsPerSlice(), c.encoding);
  PutUint16(ds, DCM_SamplesPerPixel, 1);
  if (c.syntheticCt) PutString(ds, DCM_PhotometricInterpretation, "MONOCHROME2");
  PutUint16(ds, DCM_Rows, static_cast<uint16_t>(output.rows));
  PutUint16(ds, DCM_Columns, static_cast<uint16_t>(output.columns));
  PutUint16(ds, DCM_BitsAllocated, 16);
  PutUint16(ds, DCM_BitsStored, c.syntheticCt ? 12 : 16);
  PutUint16(ds, DCM_HighBit, c.syntheticCt ? 11 : 15);
  PutUint16(ds, DCM_PixelRepresentation, c.encoding.isSigned ? 1 : 0);
  if (c.writeRescale) {
    PutString(ds, DCM_RescaleSlope, FormatDecimal(c.encoding.slope));
    PutString(ds, DCM_RescaleIntercept, FormatDecimal(c.encoding.intercept));
  }
  const OFCondition status = ds.putAndInsertUint16Array(DCM_PixelData, pixels.data(),
                                                        static_cast<unsigned long>(pixels.size()));
  if (status.bad()) {
    throw Error(ErrorKind::kInternal, where + ": cannot store pixel data: " + status.text());
  }
}

}  // namespace

struct DerivedSeriesWriter::Context : SeriesContext {
  using SeriesContext::SeriesContext;
};

DerivedSeriesWriter::DerivedSeriesWriter(const DecodedSeries& source, const Volume& output,
                                         const DerivationInfo& info, float minValue,
                                         float maxValue) {
  CheckOutput(source, output, info);
  c_ = std::make_unique<Context>(source, output, info);
  ChooseSeriesEncoding(*c_, minValue, maxValue);
}

DerivedSeriesWriter::~DerivedSeriesWriter() = default;

size_t DerivedSeriesWriter::Count() const { return c_->plan.slices.size(); }

bool DerivedSeriesWriter::Holds(float minValue, float maxValue) const {
  // Synthetic CT is clipped to its fixed range by design.
  if (c_->syntheticCt) return true;
  if (c_->writeRescale) return EncodingHolds(c_->encoding, minValue, maxValue);
  // Stored values are the physical values.
  return minValue >= (c_->encoding.isSigned ? -32768.5f : -0.5f) &&
         maxValue <= (c_->encoding.isSigned ? 32767.5f : 65535.5f);
}

std::string DerivedSeriesWriter::Write(size_t k, const float* values) const {
  const SeriesContext& c = *c_;
  const OutputSlice& slice = c.plan.slices.at(k);
  const std::string where = c.source.description + ", output slice " + std::to_string(k + 1) +
                            " from instance " + c.source.instances[slice.templateIndex].id;
  DcmFileFormat file(SliceTemplate(c, slice).release(), OFFalse /* takes ownership */);
  DcmDataset& ds = *file.getDataset();
  const auto index = static_cast<int64_t>(k);
  WriteIdentity(ds, c, index);
  WriteDerivation(ds, c, slice, where);
  WriteContributingEquipment(ds, c, where);
  if (!ds.tagExists(DCM_BurnedInAnnotation)) PutString(ds, DCM_BurnedInAnnotation, "NO");
  if (c.plan.resampled) WriteImagePlane(ds, c.plan, c.output, index);
  if (c.info.uncertaintySamples > 0) WriteWindow(ds, c.info.windowWidth);
  WritePixels(ds, c, values, where);
  return SerializeFile(file, where);
}

void WriteDerivedSeries(const DecodedSeries& source, const Volume& output,
                        const DerivationInfo& info, const DerivedFileSink& sink) {
  if (output.voxels.size() != static_cast<size_t>(output.slices * output.VoxelsPerSlice())) {
    throw Error(ErrorKind::kInternal, source.description + ": output volume buffer has wrong size");
  }
  float minValue = 0.0f;
  float maxValue = 0.0f;
  if (!output.voxels.empty()) {
    const auto [lo, hi] = std::minmax_element(output.voxels.begin(), output.voxels.end());
    minValue = *lo;
    maxValue = *hi;
  }
  const DerivedSeriesWriter writer(source, output, info, minValue, maxValue);
  const size_t count = writer.Count();
  for (size_t k = 0; k < count; ++k) {
    sink(k, count, writer.Write(k, output.Slice(static_cast<int64_t>(k))));
  }
}

std::vector<std::string> WriteDerivedSeries(const DecodedSeries& source, const Volume& output,
                                            const DerivationInfo& info) {
  std::vector<std::string> files;
  WriteDerivedSeries(source, output, info, [&files](size_t index, size_t count, std::string file) {
    if (index == 0) files.reserve(count);
    files.push_back(std::move(file));
  });
  return files;
}

}  // namespace enhance
