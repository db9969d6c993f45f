// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/DerivedSeriesWriter.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>

#include "DicomUtil.h"
#include "enhance/Error.h"
#include "enhance/PixelEncoding.h"
#include "enhance/Uid.h"

namespace enhance {

const char* const kEquipmentManufacturer = "Orthanc Enhance";

namespace {

const CodedConcept kSourceImagePurpose{"121322", "DCM",
                                       "Source image for image processing operation"};
const CodedConcept kProcessingEquipment{"109102", "DCM", "Processing Equipment"};

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
// the source's own identity, its pixel encoding, or content that processing changes.
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

}  // namespace

std::vector<std::string> WriteDerivedSeries(const DecodedSeries& source, const Volume& output,
                                            const DerivationInfo& info) {
  const Volume& input = source.volume;
  if (output.slices != input.slices || output.rows != input.rows ||
      output.columns != input.columns ||
      source.instances.size() != static_cast<size_t>(input.slices)) {
    throw Error(ErrorKind::kUnsupported,
                source.description + ": output size " + std::to_string(output.slices) + "x" +
                    std::to_string(output.rows) + "x" + std::to_string(output.columns) +
                    " differs from the source; resampled output is not supported in this version");
  }
  if (output.voxels.size() != static_cast<size_t>(output.slices * output.VoxelsPerSlice())) {
    throw Error(ErrorKind::kInternal, source.description + ": output volume buffer has wrong size");
  }

  // One encoding for the whole series keeps the stored values comparable across slices.
  float minValue = 0.0f;
  float maxValue = 0.0f;
  if (!output.voxels.empty()) {
    const auto [lo, hi] = std::minmax_element(output.voxels.begin(), output.voxels.end());
    minValue = *lo;
    maxValue = *hi;
  }
  DcmDataset& firstSource = const_cast<DcmDataset&>(*source.instances.front().dataset);
  const bool hasRescale = firstSource.tagExists(DCM_RescaleSlope) ||
                          firstSource.tagExists(DCM_RescaleIntercept) || source.modality == "CT";
  PixelEncoding encoding;
  if (hasRescale) {
    encoding = ChooseEncoding(minValue, maxValue, GetDouble(firstSource, DCM_RescaleSlope, 1.0),
                              GetDouble(firstSource, DCM_RescaleIntercept, 0.0));
  } else {
    // Without a Modality LUT in the IOD (e.g. MR), stored values are the physical values.
    encoding.isSigned = minValue < -0.5f;
  }

  const std::string seriesUid =
      info.seriesInstanceUid.empty() ? GenerateUid(info.uidRoot) : info.seriesInstanceUid;
  const Now now = CurrentDateTime();
  std::string description = info.task + " by " + info.modelName + " " + info.modelVersion;
  if (!info.parameters.empty()) description += " (" + info.parameters + ")";
  description += "; produced by " + std::string(kEquipmentManufacturer) + " " +
                 info.softwareVersion + "; algorithm output, not an acquired image";
  description = Truncate(description, 1024);

  std::vector<std::string> files;
  files.reserve(source.instances.size());
  for (size_t k = 0; k < source.instances.size(); ++k) {
    const SourceInstance& src = source.instances[k];
    const std::string where = source.description + ", derived from instance " + src.id;
    DcmFileFormat file(const_cast<DcmDataset*>(src.dataset.get()), OFTrue /* deep copy */);
    DcmDataset& ds = *file.getDataset();
    RemoveSourceOnlyAttributes(ds);

    // Identity of the new instance and series, in the same study.
    PutString(ds, DCM_SOPInstanceUID,
              info.seriesInstanceUid.empty()
                  ? GenerateUid(info.uidRoot)
                  : UidFromName(seriesUid + "/" + std::to_string(k + 1), info.uidRoot));
    PutString(ds, DCM_SeriesInstanceUID, seriesUid);
    PutString(ds, DCM_InstanceCreationDate, now.date);
    PutString(ds, DCM_InstanceCreationTime, now.time);
    PutString(ds, DCM_SeriesDate, now.date);
    PutString(ds, DCM_SeriesTime, now.time);
    PutString(ds, DCM_ContentDate, now.date);
    PutString(ds, DCM_ContentTime, now.time);
    const long sourceSeriesNumber = GetLong(ds, DCM_SeriesNumber, 0);
    PutString(ds, DCM_SeriesNumber,
              std::to_string(std::clamp<long>(sourceSeriesNumber + info.seriesNumberOffset,
                                              -2147483647L, 2147483647L)));
    PutString(ds, DCM_InstanceNumber, std::to_string(k + 1));
    PutString(ds, DCM_SeriesDescription,
              Truncate(GetString(ds, DCM_SeriesDescription) + info.seriesDescriptionSuffix, 64));

    // What was done, by what, from which images.
    PutString(ds, DCM_ImageType, ImageType(ds, source.modality));
    PutString(ds, DCM_DerivationDescription, description);
    if (!info.derivationCode.value.empty()) {
      AppendCodeItem(ds, DCM_DerivationCodeSequence, info.derivationCode);
    }
    DcmItem* reference = nullptr;
    ds.findOrCreateSequenceItem(DCM_SourceImageSequence, reference, -2);
    if (reference == nullptr) throw Error(ErrorKind::kInternal, where + ": SourceImageSequence");
    PutString(*reference, DCM_ReferencedSOPClassUID, src.sopClassUid);
    PutString(*reference, DCM_ReferencedSOPInstanceUID, src.sopInstanceUid);
    AppendCodeItem(*reference, DCM_PurposeOfReferenceCodeSequence, kSourceImagePurpose);

    DcmItem* equipment = nullptr;
    ds.findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, equipment, -2);
    if (equipment == nullptr) throw Error(ErrorKind::kInternal, where + ": ContributingEquipment");
    AppendCodeItem(*equipment, DCM_PurposeOfReferenceCodeSequence, kProcessingEquipment);
    PutString(*equipment, DCM_Manufacturer, kEquipmentManufacturer);
    PutString(*equipment, DCM_ManufacturerModelName, Truncate(info.modelName, 64));
    PutString(*equipment, DCM_SoftwareVersions,
              Truncate(info.softwareVersion, 64) + "\\" + Truncate(info.modelVersion, 64));
    if (!info.modelUid.empty()) PutString(*equipment, DCM_DeviceUID, info.modelUid);
    PutString(*equipment, DCM_ContributionDateTime, now.date + now.time);
    PutString(*equipment, DCM_ContributionDescription,
              Truncate(info.task + " with " + info.modelName + " " + info.modelVersion, 64));
    if (!ds.tagExists(DCM_BurnedInAnnotation)) PutString(ds, DCM_BurnedInAnnotation, "NO");

    // Pixels.
    const std::vector<uint16_t> pixels =
        EncodePixels(output.Slice(static_cast<int64_t>(k)), output.VoxelsPerSlice(), encoding);
    PutUint16(ds, DCM_BitsAllocated, 16);
    PutUint16(ds, DCM_BitsStored, 16);
    PutUint16(ds, DCM_HighBit, 15);
    PutUint16(ds, DCM_PixelRepresentation, encoding.isSigned ? 1 : 0);
    if (hasRescale) {
      PutString(ds, DCM_RescaleSlope, FormatDecimal(encoding.slope));
      PutString(ds, DCM_RescaleIntercept, FormatDecimal(encoding.intercept));
    }
    const OFCondition status = ds.putAndInsertUint16Array(
        DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size()));
    if (status.bad()) {
      throw Error(ErrorKind::kInternal, where + ": cannot store pixel data: " + status.text());
    }
    files.push_back(SerializeFile(file, where));
  }
  return files;
}

}  // namespace enhance
