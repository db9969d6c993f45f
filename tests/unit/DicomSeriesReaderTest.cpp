// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/DicomSeriesReader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "TestData.h"
#include "enhance/Error.h"

namespace enhance {
namespace {

using testing::PhantomSeries;
using testing::PydicomFile;

ErrorKind ExpectError(std::vector<EncodedInstance> instances, const std::string& needle) {
  try {
    ReadSeries(std::move(instances), "series S");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("series S"), std::string::npos) << e.what();
    return e.kind();
  }
  ADD_FAILURE() << "expected an error containing '" << needle << "'";
  return ErrorKind::kInternal;
}

}  // namespace

TEST(DicomSeriesReader, PhantomRoundTripsInHuWithGeometry) {
  PhantomOptions options;
  options.rows = 48;
  options.columns = 64;
  options.slices = 5;
  options.pixelSpacing = 400.0 / 64.0;  // as PhantomSeries() does
  options.noiseSigmaHu = 0;
  options.seed = 7;
  auto files = PhantomSeries(48, 64, 5, 0.0);
  const Volume expected = MakeCtPhantom(options);

  std::shuffle(files.begin(), files.end(), std::mt19937(3));
  const DecodedSeries series = ReadSeries(std::move(files), "phantom");
  const Volume& v = series.volume;
  ASSERT_EQ(v.slices, 5);
  ASSERT_EQ(v.rows, 48);
  ASSERT_EQ(v.columns, 64);
  EXPECT_EQ(series.modality, "CT");
  EXPECT_EQ(v.units, "HU");
  EXPECT_DOUBLE_EQ(v.geometry.rowSpacing, 6.25);
  EXPECT_NEAR(v.geometry.sliceSpacing, 2.5, 1e-9);
  for (size_t k = 1; k < v.geometry.slicePositions.size(); ++k) {
    EXPECT_GT(v.geometry.slicePositions[k][2], v.geometry.slicePositions[k - 1][2]);
  }
  // Sorted back into anatomical order whatever order the instances came in.
  for (int64_t s = 0; s < v.slices; ++s) {
    EXPECT_EQ(series.instances[static_cast<size_t>(s)].id, "slice-" + std::to_string(s + 1));
    for (int64_t i = 0; i < v.VoxelsPerSlice(); ++i) {
      const float want = std::clamp(std::round(expected.Slice(s)[i]), -1024.0f, 3071.0f);
      ASSERT_FLOAT_EQ(v.Slice(s)[i], want) << "slice " << s << " voxel " << i;
    }
  }
}

TEST(DicomSeriesReader, SourceDatasetsKeepTagsButNotPixels) {
  const DecodedSeries series = ReadSeries(PhantomSeries(16, 16, 2, 0.0), "phantom");
  ASSERT_EQ(series.instances.size(), 2u);
  EXPECT_FALSE(series.instances[0].sopInstanceUid.empty());
  EXPECT_EQ(series.instances[0].sopClassUid, "1.2.840.10008.5.1.4.1.1.2");
  ASSERT_TRUE(series.instances[0].dataset);
}

TEST(DicomSeriesReader, ReadsPydicomCtSmallSigned16Bit) {
  std::vector<EncodedInstance> files{{"CT_small", PydicomFile("CT_small.dcm")}};
  const DecodedSeries series = ReadSeries(std::move(files), "CT_small");
  EXPECT_EQ(series.volume.rows, 128);
  EXPECT_EQ(series.volume.columns, 128);
  // Values cross-checked with pydicom: stored 175 at [0,0], slope 1, intercept -1024.
  EXPECT_FLOAT_EQ(series.volume.At(0, 0, 0), 175.0f - 1024.0f);
  EXPECT_NEAR(series.volume.geometry.rowSpacing, 0.661468, 1e-6);
}

TEST(DicomSeriesReader, EveryEncodingOfMrSmallDecodesToTheSameValues) {
  const DecodedSeries reference =
      ReadSeries({{"MR_small", PydicomFile("MR_small.dcm")}}, "MR_small");
  for (const char* name : {"MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
                           "MR_small_jpeg_ls_lossless.dcm", "MR_small_expb.dcm"}) {
    SCOPED_TRACE(name);
    const DecodedSeries other = ReadSeries({{name, PydicomFile(name)}}, name);
    ASSERT_EQ(other.volume.voxels.size(), reference.volume.voxels.size());
    EXPECT_EQ(other.volume.voxels, reference.volume.voxels);
  }
}

TEST(DicomSeriesReader, TruncatedFileIsRejectedNamingTheInstance) {
  EXPECT_EQ(ExpectError({{"MR_truncated", PydicomFile("MR_truncated.dcm")}}, "MR_truncated"),
            ErrorKind::kBadInput);
}

TEST(DicomSeriesReader, Jpeg2000WithoutADecoderIsUnsupportedNamingTheTransferSyntax) {
  EXPECT_EQ(ExpectError({{"j2k", PydicomFile("MR_small_jp2klossless.dcm")}}, "JPEG 2000"),
            ErrorKind::kUnsupported);
}

TEST(DicomSeriesReader, ColourImagesAreUnsupported) {
  EXPECT_EQ(ExpectError({{"rgb", PydicomFile("SC_rgb_small_odd.dcm")}}, "photometric"),
            ErrorKind::kUnsupported);
}

TEST(DicomSeriesReader, GarbageAndEmptyBuffersAreRejected) {
  EXPECT_EQ(ExpectError({{"empty", ""}}, "instance empty"), ErrorKind::kBadInput);
  EXPECT_EQ(ExpectError({{"junk", std::string(300, 'x')}}, "instance junk"), ErrorKind::kBadInput);
}

TEST(DicomSeriesReader, DuplicateSlicesAreRejected) {
  auto files = PhantomSeries(16, 16, 2, 0.0);
  files.push_back({"copy", files[0].bytes});
  EXPECT_EQ(ExpectError(std::move(files), "same position"), ErrorKind::kBadInput);
}

TEST(DicomSeriesReader, MixedImageSizesAreRejected) {
  auto files = PhantomSeries(16, 16, 2, 0.0);
  auto other = PhantomSeries(16, 20, 1, 0.0);
  other[0].id = "odd-one";
  files.push_back(other[0]);
  EXPECT_EQ(ExpectError(std::move(files), "odd-one"), ErrorKind::kBadInput);
}

TEST(DicomSeriesReader, EmptySeriesIsRejected) {
  EXPECT_EQ(ExpectError({}, "no instances"), ErrorKind::kBadInput);
}

}  // namespace enhance
