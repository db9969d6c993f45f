// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/dicom/DicomSeriesReader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "DicomUtil.h"
#include "TestData.h"
#include "TestDicom.h"
#include "enhance/base/Error.h"
#include "enhance/dicom/DerivedSeriesWriter.h"
#include "enhance/dicom/FrameDecoder.h"

namespace enhance {
namespace {

using testing::BuildSeries;
using testing::PhantomSeries;
using testing::PydicomFile;
using testing::SeriesSpec;

ErrorKind ExpectError(std::vector<EncodedInstance> instances, const std::string& needle,
                      const FrameDecoder* decoder = nullptr) {
  try {
    ReadSeries(std::move(instances), "series S", decoder);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("series S"), std::string::npos) << e.what();
    return e.kind();
  }
  ADD_FAILURE() << "expected an error containing '" << needle << "'";
  return ErrorKind::kInternal;
}

// Edits slice `which` (0-based) of a generated series.
SeriesSpec WithEdit(int64_t which, std::function<void(DcmDataset&)> edit) {
  SeriesSpec spec;
  spec.edit = [which, edit](DcmDataset& ds, int64_t s) {
    if (s == which) edit(ds);
  };
  return spec;
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
  EXPECT_TRUE(series.warnings.empty());
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
  EXPECT_FALSE(const_cast<DcmDataset&>(*series.instances[0].dataset).tagExists(DCM_PixelData));
}

// Pixel formats a scanner may send, each decoded to the physical values it encodes.
TEST(DicomSeriesReader, GeneratedPixelFormatsDecodeToPhysicalValues) {
  struct Variant {
    const char* name;
    std::function<void(SeriesSpec&)> set;
  };
  const std::vector<Variant> variants = {
      {"12-bit unsigned", [](SeriesSpec&) {}},
      {"12-bit signed",
       [](SeriesSpec& s) {
         s.isSigned = true;
         s.intercept = 0;
       }},
      {"16-bit unsigned",
       [](SeriesSpec& s) {
         s.bitsStored = 16;
         s.slope = 0.5;
         s.stored = [](int64_t sl, int64_t r, int64_t c) {
           return static_cast<int32_t>((sl * 20011 + r * 4099 + c * 257) % 65536);
         };
       }},
      {"16-bit signed",
       [](SeriesSpec& s) {
         s.bitsStored = 16;
         s.isSigned = true;
         s.slope = 2;
         s.intercept = 100;
         s.stored = [](int64_t sl, int64_t r, int64_t c) {
           return static_cast<int32_t>((sl * 20011 + r * 4099 + c * 257) % 65536) - 32768;
         };
       }},
      {"12 bits at HighBit 13 with overlay bits set",
       [](SeriesSpec& s) {
         s.highBit = 13;
         s.setUnusedBits = true;
       }},
      {"MONOCHROME1", [](SeriesSpec& s) { s.photometric = "MONOCHROME1"; }},
      {"MR without rescale",
       [](SeriesSpec& s) {
         s.modality = "MR";
         s.writeRescale = false;
         s.bitsStored = 16;
       }},
  };
  for (const Variant& variant : variants) {
    SCOPED_TRACE(variant.name);
    SeriesSpec spec;
    variant.set(spec);
    const DecodedSeries series = ReadSeries(BuildSeries(spec), variant.name);
    ASSERT_EQ(series.volume.slices, spec.slices);
    EXPECT_TRUE(series.warnings.empty());
    for (int64_t s = 0; s < spec.slices; ++s) {
      for (int64_t r = 0; r < spec.rows; ++r) {
        for (int64_t c = 0; c < spec.columns; ++c) {
          ASSERT_EQ(series.volume.At(s, r, c), testing::ExpectedValue(spec, s, r, c))
              << "voxel " << s << "," << r << "," << c;
        }
      }
    }
    // A derived series of it is valid and decodes to the same values.
    DerivationInfo info;
    info.task = "denoise";
    info.modelName = "identity";
    const auto files = WriteDerivedSeries(series, series.volume, info);
    testing::ExpectDciodvfyAccepts(files, variant.name);
    const DecodedSeries back = ReadSeries(testing::AsInstances(files), "derived");
    ASSERT_EQ(back.volume.voxels.size(), series.volume.voxels.size());
    for (size_t i = 0; i < back.volume.voxels.size(); ++i) {
      ASSERT_NEAR(back.volume.voxels[i], series.volume.voxels[i], 0.5 * spec.slope) << i;
    }
    auto first = testing::ParseDicom(files[0]);
    EXPECT_EQ(GetString(*first->getDataset(), DCM_PhotometricInterpretation), spec.photometric);
  }
}

TEST(DicomSeriesReader, EightBitSignedAndUnsignedDecode) {
  for (bool isSigned : {false, true}) {
    SeriesSpec spec;
    spec.modality = "MR";
    spec.writeRescale = false;
    spec.bitsAllocated = 8;
    spec.bitsStored = 8;
    spec.isSigned = isSigned;
    spec.stored = [isSigned](int64_t s, int64_t r, int64_t c) {
      const auto v = static_cast<int32_t>((s * 17 + r * 11 + c * 5) % 256);
      return isSigned ? v - 128 : v;
    };
    const DecodedSeries series = ReadSeries(BuildSeries(spec), "8-bit");
    for (int64_t r = 0; r < spec.rows; ++r) {
      for (int64_t c = 0; c < spec.columns; ++c) {
        ASSERT_EQ(series.volume.At(1, r, c), testing::ExpectedValue(spec, 1, r, c));
      }
    }
  }
}

TEST(DicomSeriesReader, PaddedPixelsGetTheLowestRealValueOfTheirSlice) {
  for (bool isSigned : {false, true}) {
    SCOPED_TRACE(isSigned ? "signed" : "unsigned");
    SeriesSpec spec;
    spec.isSigned = isSigned;
    spec.intercept = isSigned ? 0 : -1024;
    const int32_t padding = isSigned ? -2000 : 0;
    spec.paddingValue = padding;
    // The first row is outside the reconstructed field; the rest holds 100..
    spec.stored = [padding](int64_t s, int64_t r, int64_t c) {
      return r == 0 ? padding : static_cast<int32_t>(100 + s * 50 + r * 6 + c);
    };
    const DecodedSeries series = ReadSeries(BuildSeries(spec), "padded");
    for (int64_t s = 0; s < spec.slices; ++s) {
      const double lowest = testing::ExpectedValue(spec, s, 1, 0);
      for (int64_t c = 0; c < spec.columns; ++c) {
        EXPECT_EQ(series.volume.At(s, 0, c), lowest);
        EXPECT_EQ(series.volume.At(s, 2, c), testing::ExpectedValue(spec, s, 2, c));
      }
    }
  }
}

TEST(DicomSeriesReader, ObliqueNonSquareGeometryIsKept) {
  SeriesSpec spec;
  spec.geometry.rowDirection = Normalized({0.0, 0.6, -0.8});
  spec.geometry.columnDirection = Normalized({0.28, 0.768, 0.576});
  spec.geometry.rowSpacing = 0.45;
  spec.geometry.columnSpacing = 0.9;
  spec.geometry.sliceSpacing = 3.0;
  auto files = BuildSeries(spec);
  std::reverse(files.begin(), files.end());
  const DecodedSeries series = ReadSeries(std::move(files), "oblique");
  const Geometry& g = series.volume.geometry;
  EXPECT_DOUBLE_EQ(g.rowSpacing, 0.45);
  EXPECT_DOUBLE_EQ(g.columnSpacing, 0.9);
  EXPECT_NEAR(g.sliceSpacing, 3.0, 1e-9);
  const std::vector<Vec3> positions = testing::SlicePositions(spec);
  for (size_t k = 0; k < positions.size(); ++k) {
    EXPECT_EQ(series.instances[k].id, "s" + std::to_string(k + 1));
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(g.slicePositions[k][i], positions[k][i], 1e-9);
  }
  const Vec3 normal = Cross(g.rowDirection, g.columnDirection);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(g.sliceDirection[i], normal[i], 1e-9);
}

TEST(DicomSeriesReader, GapsBetweenSlicesAreReportedAsWarnings) {
  SeriesSpec spec;
  spec.slices = 5;
  spec.geometry.sliceSpacing = 2.0;
  auto files = BuildSeries(spec);
  files.erase(files.begin() + 2);  // s3 is missing: a 4 mm gap between s2 and s4
  const DecodedSeries series = ReadSeries(std::move(files), "gappy");
  ASSERT_EQ(series.warnings.size(), 1u);
  const std::string& w = series.warnings[0];
  EXPECT_NE(w.find("gappy"), std::string::npos) << w;
  EXPECT_NE(w.find("s2 and s4"), std::string::npos) << w;
  EXPECT_NE(w.find("irregular slice spacing"), std::string::npos) << w;
  EXPECT_NEAR(series.volume.geometry.sliceSpacing, 2.0, 1e-9);
  EXPECT_NEAR(
      series.volume.geometry.slicePositions[2][2] - series.volume.geometry.slicePositions[1][2],
      4.0, 1e-9);
}

TEST(DicomSeriesReader, MixedPixelFormatsAreReportedAsWarnings) {
  SeriesSpec spec = WithEdit(1, [](DcmDataset& ds) {
    // The same values, declared in 16 bits.
    PutUint16(ds, DCM_BitsStored, 16);
    PutUint16(ds, DCM_HighBit, 15);
  });
  const DecodedSeries series = ReadSeries(BuildSeries(spec), "mixed");
  ASSERT_EQ(series.warnings.size(), 1u);
  EXPECT_NE(series.warnings[0].find("instance s2"), std::string::npos) << series.warnings[0];
  EXPECT_NE(series.warnings[0].find("16/16/15"), std::string::npos) << series.warnings[0];
  EXPECT_EQ(series.volume.At(1, 2, 3), testing::ExpectedValue(spec, 1, 2, 3));
}

TEST(DicomSeriesReader, MissingPositionsAreReportedAndOrderedByInstanceNumber) {
  SeriesSpec spec;
  spec.edit = [](DcmDataset& ds, int64_t) { ds.findAndDeleteElement(DCM_ImagePositionPatient); };
  auto files = BuildSeries(spec);
  std::reverse(files.begin(), files.end());
  const DecodedSeries series = ReadSeries(std::move(files), "unpositioned");
  ASSERT_EQ(series.warnings.size(), 1u);
  EXPECT_NE(series.warnings[0].find("InstanceNumber"), std::string::npos);
  EXPECT_EQ(series.instances[0].id, "s1");
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
  // MR_small_padded has excess bytes after the pixel data.
  for (const char* name :
       {"MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm", "MR_small_expb.dcm", "MR_small_padded.dcm"}) {
    SCOPED_TRACE(name);
    const DecodedSeries other = ReadSeries({{name, PydicomFile(name)}}, name);
    ASSERT_EQ(other.volume.voxels.size(), reference.volume.voxels.size());
    EXPECT_EQ(other.volume.voxels, reference.volume.voxels);
  }
}

TEST(DicomSeriesReader, ReadsTwelveBitJpegExtended) {
  // Reference values from pydicom's test suite (decoded there with GDCM).
  for (const char* name : {"JPEG-lossy.dcm", "JPGExtended.dcm"}) {
    SCOPED_TRACE(name);
    const DecodedSeries series = ReadSeries({{name, PydicomFile(name)}}, name);
    ASSERT_EQ(series.volume.rows, 1024);
    ASSERT_EQ(series.volume.columns, 256);
    EXPECT_EQ(series.volume.At(0, 420, 140), 244.0f);
    EXPECT_EQ(series.volume.At(0, 230, 120), 95.0f);
  }
}

TEST(DicomSeriesReader, NonImageObjectsAreRefusedWithTheReason) {
  EXPECT_EQ(ExpectError({{"rtdose", PydicomFile("rtdose_1frame.dcm")}}, "RTDoseStorage"),
            ErrorKind::kUnsupported);
  EXPECT_EQ(ExpectError({{"rtdose", PydicomFile("rtdose_1frame.dcm")}}, "not an image"),
            ErrorKind::kUnsupported);
  EXPECT_EQ(ExpectError({{"sr", PydicomFile("test-SR.dcm")}}, "ComprehensiveSRStorage"),
            ErrorKind::kUnsupported);
  EXPECT_EQ(ExpectError({{"sr", PydicomFile("test-SR.dcm")}}, "instance sr"),
            ErrorKind::kUnsupported);
}

TEST(DicomSeriesReader, TruncatedFilesAreRejectedNamingTheInstance) {
  EXPECT_EQ(ExpectError({{"MR_truncated", PydicomFile("MR_truncated.dcm")}}, "MR_truncated"),
            ErrorKind::kBadInput);
  const std::string whole = BuildSeries(SeriesSpec{})[0].bytes;
  for (size_t cut : {whole.size() - 20, whole.size() / 3}) {
    SCOPED_TRACE(cut);
    EXPECT_EQ(ExpectError({{"cut-short", whole.substr(0, cut)}}, "instance cut-short"),
              ErrorKind::kBadInput);
  }
}

TEST(DicomSeriesReader, BadHeadersAreRejectedNamingTheInstance) {
  auto expectBad = [](const SeriesSpec& spec, const std::string& needle, ErrorKind kind) {
    SCOPED_TRACE(needle);
    EXPECT_EQ(ExpectError(BuildSeries(spec), needle), kind);
    EXPECT_EQ(ExpectError(BuildSeries(spec), "instance s2"), kind);
  };
  expectBad(WithEdit(1, [](DcmDataset& ds) { PutString(ds, DCM_RescaleSlope, "0"); }),
            "RescaleSlope 0", ErrorKind::kBadInput);
  expectBad(WithEdit(1, [](DcmDataset& ds) { PutUint16(ds, DCM_Rows, 0); }), "image size 0x6",
            ErrorKind::kBadInput);
  expectBad(WithEdit(1, [](DcmDataset& ds) { PutUint16(ds, DCM_Columns, 60000); }),
            "outside 1..8192", ErrorKind::kBadInput);
  expectBad(WithEdit(1, [](DcmDataset& ds) { ds.findAndDeleteElement(DCM_PixelData); }),
            "no PixelData", ErrorKind::kBadInput);
  expectBad(WithEdit(1, [](DcmDataset& ds) { PutUint16(ds, DCM_Rows, 4000); }), "PixelData holds",
            ErrorKind::kBadInput);
  expectBad(
      WithEdit(1, [](DcmDataset& ds) { PutString(ds, DCM_PhotometricInterpretation, "HSV"); }),
      "photometric interpretation 'HSV'", ErrorKind::kUnsupported);
  expectBad(WithEdit(1, [](DcmDataset& ds) { PutUint16(ds, DCM_BitsAllocated, 32); }),
            "BitsAllocated=32", ErrorKind::kUnsupported);
}

TEST(DicomSeriesReader, ValuesBeyondFloatsOrTheGeometryAreRejected) {
  // Found by fuzz_dicom_series: each of these was accepted and gave infinite voxel values
  // (RescaleSlope 1e300), an infinite slice spacing (positions at +-1e308) or direction
  // vectors of length 0 (an orientation of huge components normalised to zero).
  auto expectBad = [](const SeriesSpec& spec, const std::string& needle) {
    SCOPED_TRACE(needle);
    EXPECT_EQ(ExpectError(BuildSeries(spec), needle), ErrorKind::kBadInput);
    EXPECT_EQ(ExpectError(BuildSeries(spec), "instance s"), ErrorKind::kBadInput);
  };
  expectBad(WithEdit(1, [](DcmDataset& ds) { PutString(ds, DCM_RescaleSlope, "1e300"); }),
            "RescaleSlope 1e+300 / RescaleIntercept -1024 cannot map stored values");
  expectBad(WithEdit(0, [](DcmDataset& ds) { PutString(ds, DCM_RescaleIntercept, "-1e31"); }),
            "RescaleIntercept -1e+31 cannot map");
  expectBad(
      WithEdit(2, [](DcmDataset& ds) { PutString(ds, DCM_ImagePositionPatient, "0\\0\\1e308"); }),
      "ImagePositionPatient 0\\0\\1e+308 lies more than 1000000 mm from the origin");
  expectBad(WithEdit(0, [](DcmDataset& ds) { PutString(ds, DCM_PixelSpacing, "0.7\\1e308"); }),
            "PixelSpacing 0.7\\1e+308 mm is larger than 10000 mm");
  expectBad(WithEdit(0,
                     [](DcmDataset& ds) {
                       PutString(ds, DCM_ImageOrientationPatient, "1e200\\0\\0\\0\\1e200\\0");
                     }),
            "ImageOrientationPatient does not hold two orthogonal unit vectors");

  // A thickness or spacing that is no distance counts as unknown.
  SeriesSpec spec = WithEdit(0, [](DcmDataset& ds) {
    PutString(ds, DCM_SliceThickness, "1e300");
    ds.findAndDeleteElement(DCM_ImagePositionPatient);
  });
  spec.slices = 1;
  const DecodedSeries series = ReadSeries(BuildSeries(spec), "series S");
  EXPECT_EQ(series.volume.geometry.sliceThickness, 0.0);
  EXPECT_EQ(series.volume.geometry.sliceSpacing, 1.0);
}

TEST(DicomSeriesReader, AbsurdlyLargeSeriesIsRefusedBeforeDecoding) {
  SeriesSpec spec;
  spec.slices = 1;
  spec.edit = [](DcmDataset& ds, int64_t) {
    PutUint16(ds, DCM_Rows, 8192);
    PutUint16(ds, DCM_Columns, 8192);
  };
  const std::string big = BuildSeries(spec)[0].bytes;  // claims 8192x8192, holds 8x6
  std::vector<EncodedInstance> files;
  for (int i = 0; i < 40; ++i) files.push_back({"big" + std::to_string(i), big});
  EXPECT_EQ(ExpectError(std::move(files), "voxels per series"), ErrorKind::kUnsupported);
}

namespace {

// Stands in for the plugin's decoder: answers with MR_small's stored values.
class FakeDecoder : public FrameDecoder {
 public:
  explicit FakeDecoder(DecodedFrame frame) : frame_(std::move(frame)) {}
  DecodedFrame DecodeFirstFrame(const std::string& bytes, const std::string& where) const override {
    ++calls;
    lastWhere = where;
    EXPECT_GT(bytes.size(), 128u);
    return frame_;
  }
  mutable int calls = 0;
  mutable std::string lastWhere;

 private:
  DecodedFrame frame_;
};

DecodedFrame MrSmallFrame() {
  const DecodedSeries mr = ReadSeries({{"MR_small", PydicomFile("MR_small.dcm")}}, "MR_small");
  DecodedFrame frame;
  frame.rows = mr.volume.rows;
  frame.columns = mr.volume.columns;
  frame.isSigned = true;
  frame.bitsPerSample = 16;
  for (float v : mr.volume.voxels) frame.values.push_back(static_cast<int32_t>(v));
  return frame;
}

}  // namespace

TEST(DicomSeriesReader, Jpeg2000WithoutADecoderIsUnsupportedNamingTheTransferSyntax) {
  EXPECT_EQ(ExpectError({{"j2k", PydicomFile("MR_small_jp2klossless.dcm")}}, "JPEG 2000"),
            ErrorKind::kUnsupported);
  EXPECT_EQ(ExpectError({{"j2k", PydicomFile("MR_small_jp2klossless.dcm")}}, "instance j2k"),
            ErrorKind::kUnsupported);
}

TEST(DicomSeriesReader, Jpeg2000IsDecodedByTheFrameDecoder) {
  const DecodedFrame reference = MrSmallFrame();
  FakeDecoder decoder(reference);
  const DecodedSeries series =
      ReadSeries({{"j2k", PydicomFile("MR_small_jp2klossless.dcm")}}, "series S", &decoder);
  EXPECT_EQ(decoder.calls, 1);
  EXPECT_NE(decoder.lastWhere.find("series S, instance j2k"), std::string::npos);
  ASSERT_EQ(series.volume.voxels.size(), reference.values.size());
  for (size_t i = 0; i < reference.values.size(); ++i) {
    ASSERT_EQ(series.volume.voxels[i], static_cast<float>(reference.values[i]));
  }
  // DCMTK still decodes what it can: the decoder is not asked for uncompressed files.
  ReadSeries({{"plain", PydicomFile("MR_small.dcm")}}, "series S", &decoder);
  EXPECT_EQ(decoder.calls, 1);
}

TEST(DicomSeriesReader, FrameDecoderValuesAreSignExtendedAndChecked) {
  DecodedFrame frame = MrSmallFrame();
  frame.isSigned = false;
  frame.values[0] = 65535;  // -1 in 16 bits, as an unsigned decoder would return it
  FakeDecoder unsignedDecoder(frame);
  const DecodedSeries series =
      ReadSeries({{"j2k", PydicomFile("MR_small_jp2klossless.dcm")}}, "series S", &unsignedDecoder);
  EXPECT_EQ(series.volume.voxels[0], -1.0f);

  frame.rows = 32;
  FakeDecoder wrongSize(frame);
  EXPECT_EQ(ExpectError({{"j2k", PydicomFile("MR_small_jp2klossless.dcm")}},
                        "decoded frame is 32x64", &wrongSize),
            ErrorKind::kBadInput);
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

TEST(DicomSeriesReader, MixedOrientationsAreRejected) {
  SeriesSpec spec = WithEdit(
      2, [](DcmDataset& ds) { PutString(ds, DCM_ImageOrientationPatient, "0\\1\\0\\0\\0\\-1"); });
  EXPECT_EQ(ExpectError(BuildSeries(spec), "mixed orientations"), ErrorKind::kBadInput);
}

// The reader decodes each instance into the volume as it is added and orders the slices in
// place at the end: every arrival order gives the volume read in anatomical order.
TEST(DicomSeriesReader, AnyArrivalOrderGivesTheSameVolume) {
  const auto ordered = PhantomSeries(8, 8, 13, 30.0);
  const DecodedSeries reference = ReadSeries(ordered, "phantom");
  std::mt19937 random(11);
  for (int trial = 0; trial < 20; ++trial) {
    auto files = ordered;
    std::shuffle(files.begin(), files.end(), random);
    SeriesReader reader("phantom", files.size());
    for (auto& file : files) reader.Add(std::move(file));
    EXPECT_EQ(reader.Count(), ordered.size());
    const DecodedSeries series = reader.Finish();
    ASSERT_EQ(series.volume.voxels, reference.volume.voxels) << "trial " << trial;
    for (size_t k = 0; k < series.instances.size(); ++k) {
      EXPECT_EQ(series.instances[k].id, reference.instances[k].id);
    }
  }
}

TEST(DicomSeriesReader, ReaderRefusesMoreInstancesThanAnnouncedAndOddSizesAtOnce) {
  auto files = PhantomSeries(16, 16, 2, 0.0);
  SeriesReader reader("series S", 2);
  reader.Add(files[0]);
  auto other = PhantomSeries(16, 20, 1, 0.0);
  other[0].id = "odd-one";
  try {
    reader.Add(other[0]);
    ADD_FAILURE() << "an instance of another size was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("odd-one"), std::string::npos) << e.what();
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
  }
  reader.Add(files[1]);
  EXPECT_THROW(reader.Add(files[1]), Error);
  EXPECT_EQ(reader.Finish().volume.slices, 2);
}

TEST(DicomSeriesReader, EmptySeriesIsRejected) {
  EXPECT_EQ(ExpectError({}, "no instances"), ErrorKind::kBadInput);
}

}  // namespace enhance
