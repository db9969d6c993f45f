// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/dicom/SyntheticSeries.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <algorithm>

#include "DicomUtil.h"
#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"
#include "enhance/dicom/PixelEncoding.h"

namespace enhance {

namespace {

// The attributes every slice shares that describe the patient, the study and the series,
// as a scanner would write them, and a new SOP Instance UID (the series UIDs and numbers
// are set by the caller).
void PutPatientStudyAndSeries(DcmDataset& ds, const SyntheticSeriesOptions& o) {
  PutString(ds, DCM_SpecificCharacterSet, "ISO_IR 100");
  PutString(ds, DCM_SOPClassUID, UID_CTImageStorage);
  PutString(ds, DCM_SOPInstanceUID, GenerateUid());
  PutString(ds, DCM_ImageType, "ORIGINAL\\PRIMARY\\AXIAL");
  PutString(ds, DCM_StudyDate, "20260101");
  PutString(ds, DCM_SeriesDate, "20260101");
  PutString(ds, DCM_ContentDate, "20260101");
  PutString(ds, DCM_StudyTime, "080000");
  PutString(ds, DCM_SeriesTime, "080100");
  PutString(ds, DCM_ContentTime, "080100");
  PutString(ds, DCM_AccessionNumber, "ENH0001");
  PutString(ds, DCM_Modality, "CT");
  PutString(ds, DCM_Manufacturer, "Orthanc Enhance phantom");
  PutString(ds, DCM_ReferringPhysicianName, "");
  PutString(ds, DCM_StudyDescription, o.studyDescription);
  PutString(ds, DCM_SeriesDescription, o.seriesDescription);
  PutString(ds, DCM_PatientName, o.patientName);
  PutString(ds, DCM_PatientID, o.patientId);
  PutString(ds, DCM_PatientBirthDate, "19700101");
  PutString(ds, DCM_PatientSex, "O");
  PutString(ds, DCM_BodyPartExamined, "CHEST");
}

}  // namespace

std::vector<std::string> WriteSyntheticCtSeries(const Volume& volume,
                                                const SyntheticSeriesOptions& o) {
  const Geometry& g = volume.geometry;
  if (g.slicePositions.size() != static_cast<size_t>(volume.slices)) {
    throw Error(ErrorKind::kBadInput, "synthetic series: one slice position per slice is needed");
  }
  const std::string studyUid = o.studyInstanceUid.empty() ? GenerateUid() : o.studyInstanceUid;
  const std::string seriesUid = o.seriesInstanceUid.empty() ? GenerateUid() : o.seriesInstanceUid;
  const std::string frameUid =
      g.frameOfReferenceUid.empty() ? GenerateUid() : g.frameOfReferenceUid;
  const PixelEncoding encoding = ChooseEncoding(-1024, 3071, 1.0, -1024.0);
  auto vector = [](const Vec3& v) {
    return FormatDecimal(v[0]) + "\\" + FormatDecimal(v[1]) + "\\" + FormatDecimal(v[2]);
  };

  std::vector<std::string> files;
  for (int64_t s = 0; s < volume.slices; ++s) {
    DcmFileFormat file;
    DcmDataset& ds = *file.getDataset();
    PutPatientStudyAndSeries(ds, o);
    PutString(ds, DCM_SliceThickness,
              FormatDecimal(g.sliceThickness > 0 ? g.sliceThickness : g.sliceSpacing));
    PutString(ds, DCM_KVP, "120");
    PutString(ds, DCM_PatientPosition, "HFS");
    PutString(ds, DCM_StudyInstanceUID, studyUid);
    PutString(ds, DCM_SeriesInstanceUID, seriesUid);
    PutString(ds, DCM_StudyID, "1");
    PutString(ds, DCM_SeriesNumber, std::to_string(o.seriesNumber));
    PutString(ds, DCM_AcquisitionNumber, "1");
    PutString(ds, DCM_InstanceNumber, std::to_string(s + 1));
    const Vec3& p = g.slicePositions[static_cast<size_t>(s)];
    PutString(ds, DCM_ImagePositionPatient, vector(p));
    PutString(ds, DCM_ImageOrientationPatient,
              vector(g.rowDirection) + "\\" + vector(g.columnDirection));
    PutString(ds, DCM_FrameOfReferenceUID, frameUid);
    PutString(ds, DCM_PositionReferenceIndicator, "");
    PutString(ds, DCM_SliceLocation, FormatDecimal(Dot(p, g.sliceDirection)));
    PutUint16(ds, DCM_SamplesPerPixel, 1);
    PutString(ds, DCM_PhotometricInterpretation, "MONOCHROME2");
    PutUint16(ds, DCM_Rows, static_cast<uint16_t>(volume.rows));
    PutUint16(ds, DCM_Columns, static_cast<uint16_t>(volume.columns));
    PutString(ds, DCM_PixelSpacing,
              FormatDecimal(g.rowSpacing) + "\\" + FormatDecimal(g.columnSpacing));
    PutUint16(ds, DCM_BitsAllocated, 16);
    PutUint16(ds, DCM_BitsStored, 12);
    PutUint16(ds, DCM_HighBit, 11);
    PutUint16(ds, DCM_PixelRepresentation, encoding.isSigned ? 1 : 0);
    PutString(ds, DCM_WindowCenter, "40\\-600");
    PutString(ds, DCM_WindowWidth, "400\\1500");
    PutString(ds, DCM_WindowCenterWidthExplanation, "SOFT TISSUE\\LUNG");
    PutString(ds, DCM_RescaleIntercept, FormatDecimal(encoding.intercept));
    PutString(ds, DCM_RescaleSlope, FormatDecimal(encoding.slope));
    PutString(ds, DCM_RescaleType, "HU");
    PutString(ds, DCM_BurnedInAnnotation, "NO");

    std::vector<float> values(volume.Slice(s), volume.Slice(s) + volume.VoxelsPerSlice());
    for (float& v : values) v = std::clamp(v, -1024.0f, 3071.0f);
    const auto pixels = EncodePixels(values.data(), volume.VoxelsPerSlice(), encoding);
    if (ds.putAndInsertUint16Array(DCM_PixelData, pixels.data(),
                                   static_cast<unsigned long>(pixels.size()))
            .bad()) {
      throw Error(ErrorKind::kInternal, "synthetic series: cannot store pixel data");
    }
    files.push_back(SerializeFile(file, "synthetic slice " + std::to_string(s + 1)));
  }
  return files;
}

}  // namespace enhance
