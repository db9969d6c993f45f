// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/DerivedSeriesWriter.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <gtest/gtest.h>

#include <set>

#include "DicomUtil.h"
#include "TestData.h"
#include "enhance/Error.h"

namespace enhance {
namespace {

std::unique_ptr<DcmFileFormat> Parse(const std::string& bytes) {
  DcmInputBufferStream stream;
  stream.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  stream.setEos();
  auto file = std::make_unique<DcmFileFormat>();
  file->transferInit();
  EXPECT_TRUE(file->read(stream).good());
  file->transferEnd();
  return file;
}

DerivationInfo Info() {
  DerivationInfo info;
  info.task = "denoise";
  info.modelName = "test-model";
  info.modelVersion = "2.1";
  info.modelUid = "2.25.1234";
  info.parameters = "k=3";
  info.derivationCode = {"113087", "DCM", "Smoothing"};
  info.softwareVersion = "9.9.9";
  info.seriesDescriptionSuffix = " [AI denoised]";
  info.seriesNumberOffset = 1000;
  return info;
}

}  // namespace

TEST(DerivedSeriesWriter, WritesALabelledDerivedSeriesInTheSameStudy) {
  const DecodedSeries source = ReadSeries(testing::PhantomSeries(24, 24, 3, 10.0), "phantom");
  Volume output = source.volume;
  for (float& v : output.voxels) v += 0.25f;  // any change, still in range
  const auto files = WriteDerivedSeries(source, output, Info());
  ASSERT_EQ(files.size(), 3u);

  std::set<std::string> seriesUids;
  for (size_t k = 0; k < files.size(); ++k) {
    auto file = Parse(files[k]);
    DcmDataset& ds = *file->getDataset();
    DcmDataset& src = const_cast<DcmDataset&>(*source.instances[k].dataset);
    EXPECT_EQ(GetString(ds, DCM_StudyInstanceUID), GetString(src, DCM_StudyInstanceUID));
    EXPECT_EQ(GetString(ds, DCM_PatientID), GetString(src, DCM_PatientID));
    EXPECT_EQ(GetString(ds, DCM_FrameOfReferenceUID), GetString(src, DCM_FrameOfReferenceUID));
    EXPECT_NE(GetString(ds, DCM_SeriesInstanceUID), GetString(src, DCM_SeriesInstanceUID));
    EXPECT_NE(GetString(ds, DCM_SOPInstanceUID), GetString(src, DCM_SOPInstanceUID));
    seriesUids.insert(GetString(ds, DCM_SeriesInstanceUID));
    EXPECT_EQ(GetString(ds, DCM_ImageType), "DERIVED\\SECONDARY\\AXIAL");
    EXPECT_EQ(GetString(ds, DCM_SeriesDescription), "Phantom low-dose chest-abdomen [AI denoised]");
    EXPECT_EQ(GetString(ds, DCM_SeriesNumber), "1002");
    EXPECT_EQ(GetString(ds, DCM_InstanceNumber), std::to_string(k + 1));
    EXPECT_EQ(GetString(ds, DCM_ImagePositionPatient), GetString(src, DCM_ImagePositionPatient));
    const std::string derivation = GetString(ds, DCM_DerivationDescription);
    EXPECT_NE(derivation.find("denoise by test-model 2.1 (k=3)"), std::string::npos) << derivation;

    DcmItem* item = nullptr;
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_SourceImageSequence, item, 0).good());
    EXPECT_EQ(GetString(*item, DCM_ReferencedSOPInstanceUID), source.instances[k].sopInstanceUid);
    EXPECT_EQ(GetString(*item, DCM_ReferencedSOPClassUID), source.instances[k].sopClassUid);
    DcmItem* purpose = nullptr;
    ASSERT_TRUE(
        item->findAndGetSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0).good());
    EXPECT_EQ(GetString(*purpose, DCM_CodeValue), "121322");

    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_ContributingEquipmentSequence, item, 0).good());
    EXPECT_EQ(GetString(*item, DCM_Manufacturer), kEquipmentManufacturer);
    EXPECT_EQ(GetString(*item, DCM_ManufacturerModelName), "test-model");
    EXPECT_EQ(GetString(*item, DCM_SoftwareVersions), "9.9.9\\2.1");
    EXPECT_EQ(GetString(*item, DCM_DeviceUID), "2.25.1234");
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_DerivationCodeSequence, item, 0).good());
    EXPECT_EQ(GetString(*item, DCM_CodeValue), "113087");
  }
  EXPECT_EQ(seriesUids.size(), 1u);
}

TEST(DerivedSeriesWriter, PixelValuesRoundTripWithinRounding) {
  const DecodedSeries source = ReadSeries(testing::PhantomSeries(32, 32, 2, 10.0), "phantom");
  Volume output = source.volume;
  // Values outside the source's stored range must survive too (no clipping).
  output.At(0, 0, 0) = -3000.0f;
  output.At(1, 5, 5) = 5000.4f;
  const auto files = WriteDerivedSeries(source, output, Info());
  std::vector<EncodedInstance> encoded;
  for (size_t k = 0; k < files.size(); ++k) encoded.push_back({std::to_string(k), files[k]});
  const DecodedSeries back = ReadSeries(std::move(encoded), "derived");
  ASSERT_EQ(back.volume.voxels.size(), output.voxels.size());
  for (size_t i = 0; i < output.voxels.size(); ++i) {
    ASSERT_NEAR(back.volume.voxels[i], output.voxels[i], 0.5f) << "voxel " << i;
  }
  for (size_t k = 0; k < 2; ++k) {
    for (int axis = 0; axis < 3; ++axis) {
      EXPECT_NEAR(back.volume.geometry.slicePositions[k][axis],
                  source.volume.geometry.slicePositions[k][axis], 1e-6);
    }
  }
}

TEST(DerivedSeriesWriter, SourceDatasetsAreNotModified) {
  const DecodedSeries source = ReadSeries(testing::PhantomSeries(16, 16, 2, 10.0), "phantom");
  const std::string before =
      GetString(const_cast<DcmDataset&>(*source.instances[0].dataset), DCM_SOPInstanceUID);
  WriteDerivedSeries(source, source.volume, Info());
  DcmDataset& after = const_cast<DcmDataset&>(*source.instances[0].dataset);
  EXPECT_EQ(GetString(after, DCM_SOPInstanceUID), before);
  EXPECT_EQ(GetString(after, DCM_ImageType), "ORIGINAL\\PRIMARY\\AXIAL");
  EXPECT_FALSE(after.tagExists(DCM_SourceImageSequence));
}

TEST(DerivedSeriesWriter, OutputOfADifferentSizeIsRejected) {
  const DecodedSeries source = ReadSeries(testing::PhantomSeries(16, 16, 2, 10.0), "phantom");
  Volume output = source.volume;
  output.Resize(2, 32, 32);
  EXPECT_THROW(WriteDerivedSeries(source, output, Info()), Error);
}

}  // namespace enhance
