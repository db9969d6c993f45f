// SPDX-License-Identifier: GPL-3.0-or-later
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <gtest/gtest.h>

#include "DicomUtil.h"
#include "TestData.h"
#include "TestDicom.h"
#include "enhance/base/Error.h"
#include "enhance/dicom/DerivedSeriesWriter.h"

namespace enhance {
namespace {

using testing::ParseDicom;

DerivationInfo Mr2CtInfo() {
  DerivationInfo info;
  info.task = "mr2ct";
  info.modelName = "test-mr2ct";
  info.modelVersion = "0.3";
  info.modelUid = "2.25.987";
  info.derivationCode = {"113091", "DCM", "Spatially-related frames extracted from the volume"};
  info.softwareVersion = "9.9.9";
  info.seriesDescriptionSuffix = " [AI synthetic CT]";
  info.outputKind = OutputKindForTask(info.task);
  return info;
}

// A plausible synthetic CT of the MR: HU from the MR values, beyond the CT range at both ends.
Volume SyntheticCt(const Volume& mr) {
  Volume ct = mr;
  ct.units = "HU";
  for (size_t i = 0; i < ct.voxels.size(); ++i) ct.voxels[i] = -1500.0f + 1.7f * ct.voxels[i];
  ct.voxels.front() = -5000.0f;
  ct.voxels.back() = 9000.0f;
  return ct;
}

}  // namespace

TEST(SyntheticCtWriter, MrBecomesAValidSyntheticCtInTheSameStudyAndFrame) {
  testing::SeriesSpec spec;
  spec.modality = "MR";
  spec.writeRescale = false;
  spec.bitsStored = 16;
  spec.geometry.rowSpacing = 0.9;
  spec.geometry.columnSpacing = 1.2;
  spec.geometry.sliceSpacing = 4.0;
  const DecodedSeries mr = ReadSeries(testing::BuildSeries(spec), "mr");
  ASSERT_EQ(mr.modality, "MR");
  const Volume ct = SyntheticCt(mr.volume);
  EXPECT_EQ(OutputKindForTask("mr2ct"), OutputKind::kSyntheticCt);
  EXPECT_EQ(OutputKindForTask("denoise"), OutputKind::kSameAsSource);

  const auto files = WriteDerivedSeries(mr, ct, Mr2CtInfo());
  ASSERT_EQ(files.size(), 3u);
  testing::ExpectDciodvfyAccepts(files, "synthetic CT");
  for (size_t k = 0; k < files.size(); ++k) {
    auto file = ParseDicom(files[k]);
    DcmDataset& ds = *file->getDataset();
    DcmDataset& src = const_cast<DcmDataset&>(*mr.instances[k].dataset);
    EXPECT_EQ(GetString(ds, DCM_SOPClassUID), UID_CTImageStorage);
    EXPECT_EQ(GetString(*file->getMetaInfo(), DCM_MediaStorageSOPClassUID), UID_CTImageStorage);
    EXPECT_EQ(GetString(ds, DCM_Modality), "CT");
    EXPECT_EQ(GetString(ds, DcmTagKey(0x0008, 0x001C)), "YES");
    EXPECT_EQ(GetString(ds, DCM_StudyInstanceUID), spec.studyUid);
    EXPECT_EQ(GetString(ds, DCM_FrameOfReferenceUID), spec.frameOfReferenceUid);
    EXPECT_EQ(GetString(ds, DCM_PatientID), "TP-1");
    EXPECT_EQ(GetString(ds, DCM_ImageType), "DERIVED\\SECONDARY\\AXIAL");
    EXPECT_EQ(GetString(ds, DCM_RescaleType), "HU");
    EXPECT_EQ(GetString(ds, DCM_RescaleIntercept), "-1024");
    EXPECT_EQ(GetString(ds, DCM_RescaleSlope), "1");
    EXPECT_TRUE(ds.tagExists(DCM_KVP));
    EXPECT_EQ(GetString(ds, DCM_KVP), "");
    // Type 2C, for paired body parts only: not for the chest (a head MR without Body Part
    // Examined gets it empty: the integration test of the shipped diffusion model).
    EXPECT_EQ(GetString(ds, DCM_BodyPartExamined), "CHEST");
    EXPECT_FALSE(ds.tagExists(DCM_Laterality));
    EXPECT_EQ(GetString(ds, DCM_WindowCenter), "40\\400");
    EXPECT_EQ(GetString(ds, DCM_WindowWidth), "400\\1800");
    EXPECT_EQ(GetString(ds, DCM_ImagePositionPatient), GetString(src, DCM_ImagePositionPatient));
    EXPECT_EQ(GetString(ds, DCM_SeriesDescription), "Test series [AI synthetic CT]");
    // Nothing MR-specific leaks into the CT object.
    for (const DcmTagKey& tag : {DCM_ScanningSequence, DCM_EchoTime, DCM_RepetitionTime,
                                 DCM_MagneticFieldStrength, DCM_SpacingBetweenSlices}) {
      EXPECT_FALSE(ds.tagExists(tag)) << DcmTag(tag).getTagName();
    }
    DcmItem* item = nullptr;
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_ContributingEquipmentSequence, item, -1).good());
    EXPECT_EQ(GetString(*item, DCM_Manufacturer), kEquipmentManufacturer);
    DcmItem* purpose = nullptr;
    ASSERT_TRUE(
        item->findAndGetSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0).good());
    EXPECT_EQ(GetString(*purpose, DCM_CodeValue), "109100");
    EXPECT_EQ(GetString(*purpose, DCM_CodeMeaning), "Synthesizing Equipment");
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_SourceImageSequence, item, 0).good());
    EXPECT_EQ(GetString(*item, DCM_ReferencedSOPClassUID), UID_MRImageStorage);
    EXPECT_EQ(GetString(*item, DCM_ReferencedSOPInstanceUID), mr.instances[k].sopInstanceUid);
  }

  // Values in HU, clipped to the CT range.
  const DecodedSeries back = ReadSeries(testing::AsInstances(files), "synthetic CT");
  EXPECT_EQ(back.modality, "CT");
  EXPECT_EQ(back.volume.units, "HU");
  for (size_t i = 0; i < ct.voxels.size(); ++i) {
    const float want = std::clamp(ct.voxels[i], -1024.0f, 3071.0f);
    ASSERT_NEAR(back.volume.voxels[i], want, 0.5f) << "voxel " << i;
  }
  EXPECT_EQ(back.volume.voxels.front(), -1024.0f);
  EXPECT_EQ(back.volume.voxels.back(), 3071.0f);
}

TEST(SyntheticCtWriter, RealMrFileBecomesAValidSyntheticCt) {
  const DecodedSeries mr =
      ReadSeries({{"MR_small", testing::PydicomFile("MR_small.dcm")}}, "MR_small");
  const auto files = WriteDerivedSeries(mr, SyntheticCt(mr.volume), Mr2CtInfo());
  testing::ExpectDciodvfyAccepts(files, "synthetic CT from MR_small");
  auto file = ParseDicom(files.at(0));
  DcmDataset& ds = *file->getDataset();
  DcmDataset& src = const_cast<DcmDataset&>(*mr.instances[0].dataset);
  EXPECT_EQ(GetString(ds, DCM_StudyInstanceUID), GetString(src, DCM_StudyInstanceUID));
  EXPECT_EQ(GetString(ds, DCM_FrameOfReferenceUID), GetString(src, DCM_FrameOfReferenceUID));
  EXPECT_EQ(GetString(ds, DCM_Modality), "CT");
}

TEST(SyntheticCtWriter, MrWithoutGeometryIsRefusedNamingTheInstance) {
  testing::SeriesSpec spec;
  spec.modality = "MR";
  spec.writeRescale = false;
  spec.edit = [](DcmDataset& ds, int64_t s) {
    if (s == 1) ds.findAndDeleteElement(DCM_ImagePositionPatient);
  };
  const DecodedSeries mr = ReadSeries(testing::BuildSeries(spec), "mr");
  try {
    WriteDerivedSeries(mr, SyntheticCt(mr.volume), Mr2CtInfo());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    const std::string what = e.what();
    EXPECT_NE(what.find("instance s2"), std::string::npos) << what;
    EXPECT_NE(what.find("ImagePositionPatient"), std::string::npos) << what;
  }
}

TEST(SyntheticCtWriter, OutputNotInHounsfieldUnitsIsAModelFault) {
  const DecodedSeries mr =
      ReadSeries({{"MR_small", testing::PydicomFile("MR_small.dcm")}}, "MR_small");
  Volume output = mr.volume;  // units "" (MR)
  try {
    WriteDerivedSeries(mr, output, Mr2CtInfo());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInternal);
    EXPECT_NE(std::string(e.what()).find("MR_small"), std::string::npos) << e.what();
  }
}

}  // namespace enhance
