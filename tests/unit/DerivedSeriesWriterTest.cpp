// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/dicom/DerivedSeriesWriter.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "DicomUtil.h"
#include "TestData.h"
#include "TestDicom.h"
#include "enhance/base/Error.h"

namespace enhance {
namespace {

using testing::AsInstances;
using testing::ExpectDciodvfyAccepts;
using testing::ParseDicom;

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

DerivationInfo ResamplingInfo() {
  DerivationInfo info = Info();
  info.task = "superres";
  info.derivationCode = {"113085", "DCM", "Spatial resampling"};
  info.seriesDescriptionSuffix = " [AI super-resolution]";
  return info;
}

// Writes, checks every object with dciodvfy, and reads the derived series back.
DecodedSeries WriteAndReadBack(const DecodedSeries& source, const Volume& output,
                               const DerivationInfo& info, std::vector<std::string>* files) {
  *files = WriteDerivedSeries(source, output, info);
  ExpectDciodvfyAccepts(*files, info.task);
  return ReadSeries(AsInstances(*files), "derived");
}

// An oblique CT stack with non-square pixels.
testing::SeriesSpec ObliqueCt() {
  testing::SeriesSpec spec;
  spec.geometry.rowDirection = Normalized({0.8, 0.6, 0.0});
  spec.geometry.columnDirection = Normalized({-0.18, 0.24, 0.954});
  spec.geometry.columnDirection =
      Normalized(Cross(Cross(spec.geometry.rowDirection, spec.geometry.columnDirection),
                       spec.geometry.rowDirection));
  spec.geometry.rowSpacing = 0.6;
  spec.geometry.columnSpacing = 1.1;
  spec.geometry.sliceSpacing = 2.0;
  spec.geometry.sliceThickness = 2.0;
  spec.rows = 10;
  spec.columns = 7;
  spec.slices = 4;
  return spec;
}

void ExpectVecNear(const Vec3& a, const Vec3& b, double tolerance, const std::string& what) {
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(a[i], b[i], tolerance) << what << " axis " << i;
}

std::vector<std::string> Refs(DcmDataset& ds) {
  std::vector<std::string> uids;
  DcmItem* item = nullptr;
  for (int i = 0; ds.findAndGetSequenceItem(DCM_SourceImageSequence, item, i).good(); ++i) {
    uids.push_back(GetString(*item, DCM_ReferencedSOPInstanceUID));
  }
  return uids;
}

}  // namespace

TEST(DerivedSeriesWriter, WritesALabelledDerivedSeriesInTheSameStudy) {
  const DecodedSeries source = ReadSeries(testing::PhantomSeries(24, 24, 3, 10.0), "phantom");
  Volume output = source.volume;
  for (float& v : output.voxels) v += 0.25f;  // any change, still in range
  const auto files = WriteDerivedSeries(source, output, Info());
  ASSERT_EQ(files.size(), 3u);
  ExpectDciodvfyAccepts(files, "denoised phantom");

  std::set<std::string> seriesUids;
  for (size_t k = 0; k < files.size(); ++k) {
    auto file = ParseDicom(files[k]);
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
    // Same units: the source's display windows still apply.
    EXPECT_EQ(GetString(ds, DCM_WindowCenter), GetString(src, DCM_WindowCenter));
    EXPECT_EQ(GetString(ds, DCM_WindowWidth), GetString(src, DCM_WindowWidth));
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

    // Common Instance Reference: the source series and the referenced instance.
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_ReferencedSeriesSequence, item, 0).good());
    EXPECT_EQ(GetString(*item, DCM_SeriesInstanceUID), GetString(src, DCM_SeriesInstanceUID));
    DcmItem* instance = nullptr;
    ASSERT_TRUE(item->findAndGetSequenceItem(DCM_ReferencedInstanceSequence, instance, 0).good());
    EXPECT_EQ(GetString(*instance, DCM_ReferencedSOPInstanceUID),
              source.instances[k].sopInstanceUid);

    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_ContributingEquipmentSequence, item, 0).good());
    EXPECT_EQ(GetString(*item, DCM_Manufacturer), kEquipmentManufacturer);
    EXPECT_EQ(GetString(*item, DCM_ManufacturerModelName), "test-model");
    EXPECT_EQ(GetString(*item, DCM_SoftwareVersions), "9.9.9\\2.1");
    EXPECT_EQ(GetString(*item, DCM_DeviceUID), "2.25.1234");
    ASSERT_TRUE(
        item->findAndGetSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0).good());
    EXPECT_EQ(GetString(*purpose, DCM_CodeValue), "109102");
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
  std::vector<std::string> files;
  const DecodedSeries back = WriteAndReadBack(source, output, Info(), &files);
  ASSERT_EQ(back.volume.voxels.size(), output.voxels.size());
  for (size_t i = 0; i < output.voxels.size(); ++i) {
    ASSERT_NEAR(back.volume.voxels[i], output.voxels[i], 0.5f) << "voxel " << i;
  }
  for (size_t k = 0; k < 2; ++k) {
    ExpectVecNear(back.volume.geometry.slicePositions[k], source.volume.geometry.slicePositions[k],
                  1e-6, "position");
  }
}

TEST(DerivedSeriesWriter, ObliqueNonSquareVolumeRoundTripsWithItsGeometry) {
  const testing::SeriesSpec spec = ObliqueCt();
  const DecodedSeries source = ReadSeries(testing::BuildSeries(spec), "oblique");
  const Geometry& g = source.volume.geometry;
  ExpectVecNear(g.rowDirection, spec.geometry.rowDirection, 1e-9, "row direction");
  ExpectVecNear(g.columnDirection, spec.geometry.columnDirection, 1e-9, "column direction");
  EXPECT_DOUBLE_EQ(g.rowSpacing, 0.6);
  EXPECT_DOUBLE_EQ(g.columnSpacing, 1.1);
  EXPECT_NEAR(g.sliceSpacing, 2.0, 1e-9);
  for (int64_t s = 0; s < spec.slices; ++s) {
    for (int64_t r = 0; r < spec.rows; ++r) {
      for (int64_t c = 0; c < spec.columns; ++c) {
        ASSERT_EQ(source.volume.At(s, r, c), testing::ExpectedValue(spec, s, r, c));
      }
    }
  }

  Volume output = source.volume;
  for (size_t i = 0; i < output.voxels.size(); ++i) output.voxels[i] += 0.3f * (i % 3);
  std::vector<std::string> files;
  const DecodedSeries back = WriteAndReadBack(source, output, Info(), &files);
  ASSERT_EQ(back.volume.voxels.size(), output.voxels.size());
  for (size_t i = 0; i < output.voxels.size(); ++i) {
    ASSERT_NEAR(back.volume.voxels[i], output.voxels[i], 0.5f) << "voxel " << i;
  }
  const Geometry& b = back.volume.geometry;
  ExpectVecNear(b.rowDirection, g.rowDirection, 1e-9, "row direction");
  ExpectVecNear(b.columnDirection, g.columnDirection, 1e-9, "column direction");
  EXPECT_DOUBLE_EQ(b.rowSpacing, g.rowSpacing);
  EXPECT_DOUBLE_EQ(b.columnSpacing, g.columnSpacing);
  for (size_t k = 0; k < g.slicePositions.size(); ++k) {
    ExpectVecNear(b.slicePositions[k], g.slicePositions[k], 1e-9, "position");
  }
}

TEST(DerivedSeriesWriter, InPlaneSuperResolutionCoversTheSameFieldOfView) {
  const DecodedSeries source = ReadSeries(testing::BuildSeries(ObliqueCt()), "oblique");
  const Volume& in = source.volume;
  const int factor = 2;
  Volume output;
  output.geometry = UpsampleInPlane(in.geometry, factor);
  output.units = in.units;
  output.Resize(in.slices, in.rows * factor, in.columns * factor);
  for (int64_t s = 0; s < output.slices; ++s) {
    for (int64_t r = 0; r < output.rows; ++r) {
      for (int64_t c = 0; c < output.columns; ++c) {
        output.At(s, r, c) = in.At(s, r / factor, c / factor);
      }
    }
  }
  std::vector<std::string> files;
  const DecodedSeries back = WriteAndReadBack(source, output, ResamplingInfo(), &files);
  ASSERT_EQ(files.size(), static_cast<size_t>(in.slices));
  EXPECT_EQ(back.volume.rows, 20);
  EXPECT_EQ(back.volume.columns, 14);
  EXPECT_DOUBLE_EQ(back.volume.geometry.rowSpacing, 0.3);
  EXPECT_DOUBLE_EQ(back.volume.geometry.columnSpacing, 0.55);
  for (size_t i = 0; i < output.voxels.size(); ++i) {
    ASSERT_NEAR(back.volume.voxels[i], output.voxels[i], 0.5f) << "voxel " << i;
  }
  for (int64_t s = 0; s < in.slices; ++s) {
    auto file = ParseDicom(files[static_cast<size_t>(s)]);
    DcmDataset& ds = *file->getDataset();
    EXPECT_EQ(GetLong(ds, DCM_Rows, 0), 20);
    EXPECT_EQ(GetLong(ds, DCM_Columns, 0), 14);
    EXPECT_EQ(GetString(ds, DCM_PixelSpacing), "0.3\\0.55");
    EXPECT_EQ(GetString(ds, DCM_SliceThickness), "2");
    EXPECT_FALSE(ds.tagExists(DCM_SpacingBetweenSlices));
    EXPECT_EQ(Refs(ds),
              std::vector<std::string>{source.instances[static_cast<size_t>(s)].sopInstanceUid});
    DcmItem* code = nullptr;
    ASSERT_TRUE(ds.findAndGetSequenceItem(DCM_DerivationCodeSequence, code, 0).good());
    EXPECT_EQ(GetString(*code, DCM_CodeValue), "113085");
    // Each input pixel's centre is the mean of its factor x factor output centres.
    const Geometry& og = back.volume.geometry;
    for (int64_t r = 0; r < in.rows; ++r) {
      for (int64_t c = 0; c < in.columns; ++c) {
        Vec3 sum{0, 0, 0};
        for (int i = 0; i < factor; ++i) {
          for (int j = 0; j < factor; ++j) {
            sum = sum + og.VoxelCentre(s, static_cast<double>(r * factor + i),
                                       static_cast<double>(c * factor + j));
          }
        }
        ExpectVecNear((1.0 / (factor * factor)) * sum,
                      in.geometry.VoxelCentre(s, static_cast<double>(r), static_cast<double>(c)),
                      1e-6, "pixel centre");
      }
    }
  }
}

TEST(DerivedSeriesWriter, ThroughPlaneSuperResolutionInsertsReferencedSlices) {
  const DecodedSeries source = ReadSeries(testing::BuildSeries(ObliqueCt()), "oblique");
  const Volume& in = source.volume;
  Volume output;
  output.geometry = UpsampleThroughPlane(in.geometry, 2);
  output.units = in.units;
  output.Resize(2 * in.slices - 1, in.rows, in.columns);
  for (int64_t s = 0; s < output.slices; ++s) {
    for (int64_t i = 0; i < output.VoxelsPerSlice(); ++i) {
      output.Slice(s)[i] =
          s % 2 == 0 ? in.Slice(s / 2)[i] : (in.Slice(s / 2)[i] + in.Slice(s / 2 + 1)[i]) / 2;
    }
  }
  std::vector<std::string> files;
  const DecodedSeries back = WriteAndReadBack(source, output, ResamplingInfo(), &files);
  ASSERT_EQ(files.size(), 7u);
  ASSERT_EQ(back.volume.slices, 7);
  EXPECT_NEAR(back.volume.geometry.sliceSpacing, 1.0, 1e-9);
  ExpectVecNear(back.volume.geometry.slicePositions.front(), in.geometry.slicePositions.front(),
                1e-9, "first slice");
  ExpectVecNear(back.volume.geometry.slicePositions.back(), in.geometry.slicePositions.back(), 1e-9,
                "last slice");
  for (size_t i = 0; i < output.voxels.size(); ++i) {
    ASSERT_NEAR(back.volume.voxels[i], output.voxels[i], 0.5f) << "voxel " << i;
  }
  for (size_t k = 0; k < files.size(); ++k) {
    SCOPED_TRACE(k);
    auto file = ParseDicom(files[k]);
    DcmDataset& ds = *file->getDataset();
    EXPECT_EQ(GetString(ds, DCM_InstanceNumber), std::to_string(k + 1));
    EXPECT_EQ(GetString(ds, DCM_SliceThickness), "1");
    EXPECT_EQ(GetString(ds, DCM_SpacingBetweenSlices), "1");
    const Vec3& p = output.geometry.slicePositions[k];
    EXPECT_NEAR(GetDouble(ds, DCM_SliceLocation, 1e9), Dot(p, in.geometry.sliceDirection), 1e-6);
    const std::vector<std::string> refs = Refs(ds);
    if (k % 2 == 0) {
      EXPECT_EQ(refs, std::vector<std::string>{source.instances[k / 2].sopInstanceUid});
    } else {
      EXPECT_EQ(refs, (std::vector<std::string>{source.instances[k / 2].sopInstanceUid,
                                                source.instances[k / 2 + 1].sopInstanceUid}));
    }
  }
}

TEST(DerivedSeriesWriter, ResampledOutputDoesNotInventGeometryTheSourceLacks) {
  testing::SeriesSpec spec = ObliqueCt();
  spec.modality = "MR";
  spec.writeRescale = false;
  spec.edit = [](DcmDataset& ds, int64_t) {
    ds.findAndDeleteElement(DCM_ImagePositionPatient);
    ds.findAndDeleteElement(DCM_SliceLocation);
  };
  const DecodedSeries source = ReadSeries(testing::BuildSeries(spec), "unpositioned");
  Volume output;
  output.geometry = UpsampleInPlane(source.volume.geometry, 2);
  output.Resize(source.volume.slices, 20, 14);
  const auto files = WriteDerivedSeries(source, output, ResamplingInfo());
  for (const auto& bytes : files) {
    auto file = ParseDicom(bytes);
    DcmDataset& ds = *file->getDataset();
    EXPECT_FALSE(ds.tagExists(DCM_ImagePositionPatient));
    EXPECT_FALSE(ds.tagExists(DCM_SliceLocation));
    EXPECT_EQ(GetString(ds, DCM_PixelSpacing), "0.3\\0.55");
    EXPECT_EQ(GetLong(ds, DCM_Rows, 0), 20);
    // dciodvfy finds the source's fault and nothing else.
    for (const std::string& error : testing::RunDciodvfy(bytes).errors) {
      EXPECT_NE(error.find("ImagePositionPatient"), std::string::npos) << error;
    }
  }
}

TEST(DerivedSeriesWriter, OutputIsDeterministicApartFromUidsAndDates) {
  const DecodedSeries source = ReadSeries(testing::BuildSeries(ObliqueCt()), "oblique");
  Volume output;
  output.geometry = UpsampleThroughPlane(UpsampleInPlane(source.volume.geometry, 2), 2);
  output.units = "HU";
  output.Resize(7, 20, 14);
  for (size_t i = 0; i < output.voxels.size(); ++i) output.voxels[i] = static_cast<float>(i % 97);
  auto normalised = [&](const std::string& bytes) {
    auto file = ParseDicom(bytes);
    DcmDataset& ds = *file->getDataset();
    for (const DcmTagKey& tag :
         {DCM_SOPInstanceUID, DCM_SeriesInstanceUID, DCM_InstanceCreationDate,
          DCM_InstanceCreationTime, DCM_SeriesDate, DCM_SeriesTime, DCM_ContentDate,
          DCM_ContentTime, DCM_ContributionDateTime}) {
      ds.findAndDeleteElement(tag, OFTrue, OFTrue);
    }
    std::ostringstream text;
    ds.print(text);
    return text.str();
  };
  const auto first = WriteDerivedSeries(source, output, ResamplingInfo());
  const auto second = WriteDerivedSeries(source, output, ResamplingInfo());
  ExpectDciodvfyAccepts(first, "in-plane and through-plane superres");
  ASSERT_EQ(first.size(), second.size());
  for (size_t k = 0; k < first.size(); ++k) {
    EXPECT_EQ(normalised(first[k]), normalised(second[k])) << "slice " << k;
  }
}

TEST(DerivedSeriesWriter, SourceDatasetsAreNotModified) {
  const DecodedSeries source = ReadSeries(testing::PhantomSeries(16, 16, 2, 10.0), "phantom");
  const std::string before =
      GetString(const_cast<DcmDataset&>(*source.instances[0].dataset), DCM_SOPInstanceUID);
  ExpectDciodvfyAccepts(WriteDerivedSeries(source, source.volume, Info()), "unchanged volume");
  DcmDataset& after = const_cast<DcmDataset&>(*source.instances[0].dataset);
  EXPECT_EQ(GetString(after, DCM_SOPInstanceUID), before);
  EXPECT_EQ(GetString(after, DCM_ImageType), "ORIGINAL\\PRIMARY\\AXIAL");
  EXPECT_FALSE(after.tagExists(DCM_SourceImageSequence));
}

// However long a model's parameters, what it learned or a warning, the description stays
// within DICOM's 1024 characters with the warning's start and the labels at its end whole.
TEST(DerivedSeriesWriter, ALongDescriptionKeepsItsWarningAndItsLabels) {
  const DecodedSeries source = ReadSeries(testing::PhantomSeries(16, 16, 2, 10.0), "phantom");
  for (const size_t warningLength : {size_t{0}, size_t{40}, size_t{3000}, size_t{12000}}) {
    DerivationInfo info = Info();
    info.parameters = std::string(2000, 'p');
    info.learned = std::string(600, 'l');
    info.warning =
        warningLength == 0 ? "" : "outside the domain " + std::string(warningLength, 'w');
    const auto files = WriteDerivedSeries(source, source.volume, info);
    ExpectDciodvfyAccepts(files, "long description");
    const auto file = ParseDicom(files.front());
    const std::string d = GetString(*file->getDataset(), DCM_DerivationDescription);
    SCOPED_TRACE(d);
    EXPECT_LE(d.size(), 1024u);
    EXPECT_GE(d.size(), 1000u);  // shortened to the limit, not far below it
    const std::string label = "algorithm output, not an acquired image";
    ASSERT_GE(d.size(), label.size());
    EXPECT_EQ(d.substr(d.size() - label.size()), label);
    EXPECT_NE(d.find("; produced by " + std::string(kEquipmentManufacturer) + " 9.9.9;"),
              std::string::npos);
    EXPECT_NE(d.find("denoise by test-model 2.1 (ppp"), std::string::npos);
    EXPECT_NE(d.find("...; produced by"), std::string::npos);
    if (warningLength > 0) {
      EXPECT_EQ(d.rfind("WARNING: outside the domain www", 0), 0u);
      const std::string comments = GetString(*file->getDataset(), DCM_ImageComments);
      EXPECT_EQ(comments.rfind("WARNING: outside the domain www", 0), 0u);
      EXPECT_LE(comments.size(), 10240u);  // LT
    } else {
      EXPECT_EQ(d.find("WARNING"), std::string::npos);
    }
  }
}

TEST(DerivedSeriesWriter, InconsistentResampledOutputIsAModelFault) {
  const DecodedSeries source = ReadSeries(testing::PhantomSeries(16, 16, 2, 10.0), "phantom");
  auto expectInternal = [&](const Volume& output, const std::string& needle) {
    try {
      WriteDerivedSeries(source, output, ResamplingInfo());
      ADD_FAILURE() << "expected an error about " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInternal) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("phantom"), std::string::npos) << e.what();
    }
  };
  Volume output = source.volume;
  output.Resize(3, 16, 16);  // three slices, two positions
  expectInternal(output, "slice positions");
  output = source.volume;
  output.Resize(2, 32, 32);
  output.geometry.rowDirection = {0, 1, 0};
  output.geometry.columnDirection = {1, 0, 0};
  expectInternal(output, "orientation");
  output = source.volume;
  output.Resize(2, 32, 32);
  output.geometry.frameOfReferenceUid = "1.2.3";
  expectInternal(output, "frame of reference");
}

}  // namespace enhance
