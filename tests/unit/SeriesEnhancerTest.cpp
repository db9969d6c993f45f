// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/pipeline/SeriesEnhancer.h"

#include <gtest/gtest.h>

#include <cmath>

#include "DicomUtil.h"
#include "ModelFixtures.h"
#include "TestData.h"
#include "TestDicom.h"
#include "enhance/base/Error.h"
#include "enhance/dicom/FrameDecoder.h"
#include "enhance/inference/BilateralDenoiser.h"
#include "enhance/inference/TorchModel.h"

namespace enhance {

TEST(SeriesEnhancer, DenoisesAPhantomSeriesEndToEnd) {
  testing::MemoryInstanceSource source(testing::PhantomSeries(64, 64, 4, 30.0));
  std::vector<double> progress;
  RunContext context;
  context.progress = [&](double f) { progress.push_back(f); };
  OutputOptions output;
  output.softwareVersion = "1.2.3";
  const EnhancedSeries result = EnhanceSeries(source, BilateralDenoiser(), output, context);
  ASSERT_EQ(result.files.size(), 4u);
  testing::ExpectDciodvfyAccepts(result.files, "enhanced phantom");
  EXPECT_TRUE(result.warnings.empty());
  EXPECT_EQ(result.sourceModality, "CT");
  EXPECT_EQ(result.sourceSlices, 4);
  ASSERT_FALSE(progress.empty());
  EXPECT_DOUBLE_EQ(progress.back(), 1.0);
  for (size_t i = 1; i < progress.size(); ++i) EXPECT_GE(progress[i], progress[i - 1]);

  // The derived series decodes and is smoother than the source.
  std::vector<EncodedInstance> derived;
  for (size_t k = 0; k < result.files.size(); ++k)
    derived.push_back({std::to_string(k), result.files[k]});
  const DecodedSeries out = ReadSeries(std::move(derived), "derived");
  const DecodedSeries in = ReadSeries(testing::PhantomSeries(64, 64, 4, 30.0), "source");
  const double noiseIn = EstimateNoiseSigma(in.volume.Slice(1), 64, 64);
  const double noiseOut = EstimateNoiseSigma(out.volume.Slice(1), 64, 64);
  EXPECT_LT(noiseOut, noiseIn / 2) << noiseIn << " -> " << noiseOut;
}

// With a sink, each file is handed over as soon as it is encoded, in instance order, and
// is the same object as without one (same UIDs: the series UID is given).
TEST(SeriesEnhancer, SinkReceivesTheSameFilesOneByOne) {
  OutputOptions output;
  output.seriesInstanceUid = "1.2.826.0.1.3680043.10.1234.5";
  testing::MemoryInstanceSource whole(testing::PhantomSeries(32, 32, 5, 30.0));
  const EnhancedSeries kept = EnhanceSeries(whole, BilateralDenoiser(), output, {});
  ASSERT_EQ(kept.files.size(), 5u);
  EXPECT_EQ(kept.derivedInstances, 5u);

  testing::MemoryInstanceSource streamed(testing::PhantomSeries(32, 32, 5, 30.0));
  std::vector<std::string> received;
  const EnhancedSeries sunk = EnhanceSeries(streamed, BilateralDenoiser(), output, {}, nullptr,
                                            [&](size_t index, size_t count, std::string file) {
                                              EXPECT_EQ(index, received.size());
                                              EXPECT_EQ(count, 5u);
                                              received.push_back(std::move(file));
                                            });
  EXPECT_TRUE(sunk.files.empty());
  EXPECT_EQ(sunk.derivedInstances, 5u);
  ASSERT_EQ(received.size(), 5u);
  for (size_t k = 0; k < received.size(); ++k) {
    const DecodedSeries a = ReadSeries({{"a", kept.files[k]}}, "kept");
    const DecodedSeries b = ReadSeries({{"b", received[k]}}, "streamed");
    EXPECT_EQ(a.instances[0].sopInstanceUid, b.instances[0].sopInstanceUid);
    EXPECT_EQ(a.volume.voxels, b.volume.voxels);
  }

  // A sink that fails stops the writing: nothing more is encoded or handed over.
  testing::MemoryInstanceSource failing(testing::PhantomSeries(32, 32, 5, 30.0));
  size_t calls = 0;
  EXPECT_THROW(EnhanceSeries(failing, BilateralDenoiser(), output, {}, nullptr,
                             [&](size_t index, size_t, std::string) {
                               ++calls;
                               if (index == 1) throw Error(ErrorKind::kInternal, "disk full");
                             }),
               Error);
  EXPECT_EQ(calls, 2u);
}

TEST(SeriesEnhancer, ReportsTheReadersWarnings) {
  testing::SeriesSpec spec;
  spec.slices = 5;
  spec.rows = 16;
  spec.columns = 16;
  auto files = testing::BuildSeries(spec);
  files.erase(files.begin() + 2);
  testing::MemoryInstanceSource source(std::move(files));
  const EnhancedSeries result = EnhanceSeries(source, BilateralDenoiser(), {}, {});
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_NE(result.warnings[0].find("irregular slice spacing"), std::string::npos);
  testing::ExpectDciodvfyAccepts(result.files, "enhanced gappy series");
}

namespace {

// The bilateral filter, saying on each run that it took a fallback.
class WarningModel : public Model {
 public:
  const ModelInfo& Info() const override { return inner_.Info(); }
  std::string Parameters() const override { return inner_.Parameters(); }
  Volume Run(const Volume& input, const RunContext& context) const override {
    context.Warn("ran out of memory; retrying with tiles of 128 pixels");
    return inner_.Run(input, context);
  }

 private:
  BilateralDenoiser inner_;
};

}  // namespace

namespace {

// value * factor + offset, written over the input slice by slice, each slice reported
// final as a model running in place does; or, with `inPlace` false, into a new volume.
class AffineModel : public Model {
 public:
  AffineModel(float factor, float offset, bool inPlace)
      : factor_(factor), offset_(offset), inPlace_(inPlace) {
    info_.name = "affine";
    info_.version = "1";
    info_.task = "denoise";
    info_.modalities = {"CT"};
    info_.uid = "1.2.3.4";
  }
  const ModelInfo& Info() const override { return info_; }
  std::string Parameters() const override { return "affine"; }
  Volume Run(const Volume& input, const RunContext& context) const override {
    Volume copy = input;
    for (float& v : copy.voxels) v = v * factor_ + offset_;
    context.ThrowIfCancelled();
    return copy;
  }
  Volume RunReusing(Volume& input, const RunContext& context) const override {
    if (!inPlace_) return Run(input, context);
    for (int64_t k = 0; k < input.slices; ++k) {
      context.ThrowIfCancelled();
      float* slice = input.Slice(k);
      for (int64_t i = 0; i < input.VoxelsPerSlice(); ++i) slice[i] = slice[i] * factor_ + offset_;
      if (context.outputReady) context.outputReady(k);
    }
    return std::move(input);
  }

 private:
  ModelInfo info_;
  float factor_;
  float offset_;
  bool inPlace_;
};

struct Received {
  std::vector<std::string> files;  // by index
  int discarded = 0;
  std::vector<size_t> order;
};

EnhancedSeries Overlapped(const Model& model, Received& received, const RunContext& context = {},
                          int failAt = -1) {
  testing::MemoryInstanceSource source(testing::PhantomSeries(24, 24, 6, 30.0));
  OutputOptions output;
  output.seriesInstanceUid = "1.2.826.0.1.3680043.10.1234.6";
  return EnhanceSeries(
      source, model, output, context, nullptr,
      [&](size_t index, size_t count, std::string file) {
        if (static_cast<int>(index) == failAt) throw Error(ErrorKind::kInternal, "disk full");
        received.order.push_back(index);
        received.files.resize(count);
        received.files[index] = std::move(file);
      },
      [&] {
        ++received.discarded;
        received.files.clear();
        received.order.clear();
      });
}

// The derived values, decoded.
std::vector<float> Values(const std::vector<std::string>& files) {
  std::vector<EncodedInstance> instances;
  for (size_t k = 0; k < files.size(); ++k) instances.push_back({std::to_string(k), files[k]});
  return ReadSeries(std::move(instances), "derived").volume.voxels;
}

// Checks that the files handed over hold the source's values * factor + offset, within
// `tolerance`; returns the largest magnitude expected.
float ExpectAffineOfTheSource(const Received& received, float factor, float offset,
                              double tolerance) {
  std::vector<float> expected =
      ReadSeries(testing::PhantomSeries(24, 24, 6, 30.0), "s").volume.voxels;
  for (float& v : expected) v = v * factor + offset;
  const std::vector<float> values = Values(received.files);
  EXPECT_EQ(values.size(), expected.size());
  float largest = 0;
  for (size_t i = 0; i < std::min(values.size(), expected.size()); ++i) {
    largest = std::max(largest, std::abs(expected[i]));
    if (std::abs(values[i] - expected[i]) > tolerance) {
      ADD_FAILURE() << "value " << i << ": " << values[i] << " instead of " << expected[i];
      break;
    }
  }
  return largest;
}

}  // namespace

// A model writing over its input reports each slice; the files are encoded and handed
// over meanwhile, in order, and hold the same values as when written after the run.
TEST(SeriesEnhancer, FilesAreHandedOverWhileTheModelRuns) {
  for (bool inPlace : {true, false}) {
    Received received;
    const EnhancedSeries result = Overlapped(AffineModel(0.5f, 3.0f, inPlace), received);
    EXPECT_EQ(received.discarded, 0);
    EXPECT_EQ(received.order, (std::vector<size_t>{0, 1, 2, 3, 4, 5}));
    EXPECT_EQ(result.derivedInstances, 6u);
    ExpectAffineOfTheSource(received, 0.5f, 3.0f, 0.51);
    testing::ExpectDciodvfyAccepts(received.files, "overlapped");
  }
}

// Output beyond the encoding chosen before the run: what was handed over is discarded
// and the series written again with an encoding that holds every value, unclipped.
TEST(SeriesEnhancer, OutputBeyondTheEarlyEncodingIsWrittenAgain) {
  Received received;
  const EnhancedSeries result = Overlapped(AffineModel(30.0f, 0.0f, true), received);
  EXPECT_EQ(received.discarded, 1);
  EXPECT_EQ(received.order, (std::vector<size_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(result.derivedInstances, 6u);
  const float largest = ExpectAffineOfTheSource(received, 30.0f, 0.0f, 1.0);
  // Beyond what the CT's slope 1 and intercept -1024 can store as signed 16-bit values.
  EXPECT_GT(largest, 31743.0f);
}

// A sink that fails stops the model and is the error reported, not a cancellation.
TEST(SeriesEnhancer, SinkFailureWhileTheModelRunsIsTheErrorReported) {
  Received received;
  try {
    Overlapped(AffineModel(1.0f, 0.0f, true), received, {}, 2);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInternal);
    EXPECT_NE(std::string(e.what()).find("disk full"), std::string::npos) << e.what();
  }
  EXPECT_EQ(received.order, (std::vector<size_t>{0, 1}));
}

TEST(SeriesEnhancer, PassesTheModelsWarningsToTheCaller) {
  testing::MemoryInstanceSource source(testing::PhantomSeries(16, 16, 2, 30.0));
  std::vector<std::string> warnings;
  RunContext context;
  context.warning = [&](const std::string& w) { warnings.push_back(w); };
  EnhanceSeries(source, WarningModel(), {}, context);
  EXPECT_EQ(warnings,
            std::vector<std::string>{"ran out of memory; retrying with tiles of 128 pixels"});
}

namespace {

// Decodes any frame to a constant, standing in for the plugin's decoder.
class ConstantDecoder : public FrameDecoder {
 public:
  DecodedFrame DecodeFirstFrame(const std::string&, const std::string&) const override {
    ++calls;
    DecodedFrame frame;
    frame.rows = 64;
    frame.columns = 64;
    frame.bitsPerSample = 16;
    frame.values.assign(64 * 64, 100);
    return frame;
  }
  mutable int calls = 0;
};

}  // namespace

TEST(SeriesEnhancer, UsesTheSourcesDecoderForTransferSyntaxesDcmtkCannotDecode) {
  std::vector<EncodedInstance> files{{"j2k", testing::PydicomFile("MR_small_jp2klossless.dcm")}};
  testing::MemoryInstanceSource source(std::move(files));
  EXPECT_THROW(EnhanceSeries(source, BilateralDenoiser(), {}, {}), Error);
  ConstantDecoder decoder;
  source.SetDecoder(&decoder);
  const EnhancedSeries result = EnhanceSeries(source, BilateralDenoiser(), {}, {});
  EXPECT_EQ(decoder.calls, 1);
  ASSERT_EQ(result.files.size(), 1u);
  testing::ExpectDciodvfyAccepts(result.files, "enhanced JPEG 2000 MR");
}

TEST(SeriesEnhancer, RejectsAModalityTheModelDoesNotAccept) {
  std::vector<EncodedInstance> files{{"rt", testing::PydicomFile("rtdose_1frame.dcm")}};
  testing::MemoryInstanceSource source(std::move(files));
  // RT Dose is not greyscale CT/MR: the reader or the modality check must refuse it.
  EXPECT_THROW(EnhanceSeries(source, BilateralDenoiser(), {}, {}), Error);
}

TEST(SeriesEnhancer, CancelledBeforeFetchingStoresNothing) {
  testing::MemoryInstanceSource source(testing::PhantomSeries(16, 16, 2, 10.0));
  RunContext context;
  context.cancelled = [] { return true; };
  try {
    EnhanceSeries(source, BilateralDenoiser(), {}, context);
    FAIL() << "expected cancellation";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
}

}  // namespace enhance

namespace enhance {
namespace {

// A diffusion model of two samples, over the fixture denoiser (ModelFixtures.h).
std::shared_ptr<const TorchModel> TwoSampleDiffusion(const std::filesystem::path& parent) {
  Json::Value m = testing::DenoiseManifest("ct-diffusion");
  m["tile"]["size"] = 0;
  m["diffusion"]["training_timesteps"] = 40;
  m["diffusion"]["schedule"]["type"] = "cosine";
  m["diffusion"]["timesteps"]["count"] = 2;
  m["diffusion"]["samples"] = 2;
  m["diffusion"]["eta"] = 0.5;
  InferenceOptions options;
  options.device = "cpu";
  return TorchModel::Load(testing::WriteFixtureModel(parent, "diffusion-epsilon", m), options);
}

std::string TagOf(const std::string& file, const DcmTagKey& tag) {
  const auto parsed = testing::ParseDicom(file);
  return GetString(*parsed->getDataset(), tag);
}

}  // namespace

// A model that tells its uncertainty gives a second series, labelled as an uncertainty
// map, after the derived series, with its figures inside the body.
TEST(SeriesEnhancer, WritesTheUncertaintySeriesAfterTheDerivedSeries) {
  testing::TemporaryFolder folder;
  const auto model = TwoSampleDiffusion(folder.path());
  OutputOptions output;
  output.seriesDescriptionSuffix = " [AI denoised]";
  output.seriesInstanceUid = "1.2.826.0.1.3680043.10.1234.6";
  output.uncertainty = true;
  output.uncertaintySeriesInstanceUid = "1.2.826.0.1.3680043.10.1234.7";
  output.uncertaintyThreshold = 5.0;
  testing::MemoryInstanceSource source(testing::PhantomSeries(48, 40, 3, 30.0));
  const EnhancedSeries result = EnhanceSeries(source, *model, output, {});
  ASSERT_EQ(result.files.size(), 3u);
  ASSERT_TRUE(result.hasUncertainty);
  ASSERT_EQ(result.uncertaintyFiles.size(), 3u);
  testing::ExpectDciodvfyAccepts(result.uncertaintyFiles, "uncertainty series");
  const std::string& first = result.uncertaintyFiles.front();
  EXPECT_EQ(TagOf(first, DCM_SeriesInstanceUID), output.uncertaintySeriesInstanceUid);
  EXPECT_EQ(TagOf(first, DCM_SeriesDescription).find(" [AI uncertainty]") + 17,
            TagOf(first, DCM_SeriesDescription).size());
  EXPECT_EQ(std::stol(TagOf(first, DCM_SeriesNumber)),
            std::stol(TagOf(result.files.front(), DCM_SeriesNumber)) + 1);
  EXPECT_EQ(TagOf(first, DCM_DerivationDescription)
                .rfind("uncertainty map: per-voxel standard "
                       "deviation across 2 samples (HU) of "
                       "denoise by ct-diffusion",
                       0),
            0u)
      << TagOf(first, DCM_DerivationDescription);
  EXPECT_EQ(TagOf(first, DCM_WindowCenterWidthExplanation), "UNCERTAINTY SD");
  const UncertaintySummary& u = result.uncertainty;
  EXPECT_EQ(u.instances, 3u);
  EXPECT_EQ(u.samples, 2);
  EXPECT_EQ(u.units, "HU");
  EXPECT_GT(u.median, 0.0);
  EXPECT_GE(u.percentile99, u.median);
  EXPECT_GT(u.fractionAbove, 0.0);
  EXPECT_LE(u.fractionAbove, 1.0);
  EXPECT_DOUBLE_EQ(u.threshold, 5.0);

  // To a sink: the derived series' files, then the uncertainty series', each from 0.
  testing::MemoryInstanceSource again(testing::PhantomSeries(48, 40, 3, 30.0));
  std::vector<std::pair<size_t, std::string>> received;
  EnhanceSeries(again, *model, output, {}, nullptr, [&](size_t index, size_t, std::string file) {
    received.emplace_back(index, TagOf(file, DCM_SeriesInstanceUID));
  });
  ASSERT_EQ(received.size(), 6u);
  for (size_t k = 0; k < 6; ++k) {
    EXPECT_EQ(received[k].first, k % 3);
    EXPECT_EQ(received[k].second,
              k < 3 ? output.seriesInstanceUid : output.uncertaintySeriesInstanceUid);
  }

  // Not asked for: one series.
  output.uncertainty = false;
  testing::MemoryInstanceSource plain(testing::PhantomSeries(48, 40, 3, 30.0));
  const EnhancedSeries one = EnhanceSeries(plain, *model, output, {});
  EXPECT_FALSE(one.hasUncertainty);
  EXPECT_TRUE(one.uncertaintyFiles.empty());
}

}  // namespace enhance

namespace enhance {

// A deterministic model's map by test-time augmentation says what its "samples" are.
TEST(SeriesEnhancer, AnAugmentationMapNamesItsFlipsAndRotations) {
  testing::TemporaryFolder folder;
  Json::Value m = testing::DenoiseManifest("ct-mean-tta");
  m["uncertainty"]["method"] = "augmentation";
  InferenceOptions options;
  options.device = "cpu";
  const auto model =
      TorchModel::Load(testing::WriteFixtureModel(folder.path(), "mean3x3", m), options);
  OutputOptions output;
  output.uncertainty = true;
  testing::MemoryInstanceSource source(testing::PhantomSeries(40, 40, 2, 30.0));
  const EnhancedSeries result = EnhanceSeries(source, *model, output, {});
  ASSERT_TRUE(result.hasUncertainty);
  EXPECT_EQ(result.uncertainty.samples, 8);
  ASSERT_EQ(result.uncertaintyFiles.size(), 2u);
  testing::ExpectDciodvfyAccepts(result.uncertaintyFiles, "augmentation map");
  EXPECT_NE(TagOf(result.uncertaintyFiles[0], DCM_DerivationDescription)
                .find("standard deviation across 8 flips and rotations of the input (HU)"),
            std::string::npos);
}

namespace {

// Learns (it says so) before it writes anything, then doubles every voxel in place.
class LearningModel final : public Model {
 public:
  LearningModel() {
    info_.name = "learning";
    info_.version = "1";
    info_.task = "denoise";
    info_.modalities = {"CT"};
    info_.uid = "1.2.3.5";
  }
  const ModelInfo& Info() const override { return info_; }
  std::string Parameters() const override { return "learns"; }
  bool LearnsFromSeries() const override { return true; }
  Volume Run(const Volume& input, const RunContext& context) const override {
    Volume copy = input;
    return RunReusing(copy, context);
  }
  Volume RunReusing(Volume& input, const RunContext& context) const override {
    if (context.learned) context.learned(Report());
    for (int64_t k = 0; k < input.slices; ++k) {
      float* slice = input.Slice(k);
      for (int64_t i = 0; i < input.VoxelsPerSlice(); ++i) slice[i] *= 2;
      if (context.outputReady) context.outputReady(k);
    }
    return std::move(input);
  }
  static LearningReport Report() {
    LearningReport r;
    r.method = "test method";
    r.device = "cpu";
    r.plannedSteps = r.steps = 7;
    r.applied = true;
    r.curve = {{7, 0.5}};
    return r;
  }

 private:
  ModelInfo info_;
};

}  // namespace

// What a model learned from the series is in the result and in every derived instance's
// DerivationDescription, files handed over while it runs included.
TEST(SeriesEnhancer, SaysWhatTheModelLearnedFromTheSeries) {
  Received received;
  const EnhancedSeries result = Overlapped(LearningModel(), received);
  ASSERT_TRUE(result.hasLearning);
  EXPECT_EQ(result.learning.steps, 7);
  EXPECT_EQ(result.learning.curve.size(), 1u);
  EXPECT_EQ(received.discarded, 0);
  EXPECT_EQ(received.order, (std::vector<size_t>{0, 1, 2, 3, 4, 5}));
  const std::string learned = DescribeLearning(LearningModel::Report());
  for (const std::string& file : received.files) {
    EXPECT_NE(TagOf(file, DCM_DerivationDescription).find("(learns); " + learned),
              std::string::npos)
        << TagOf(file, DCM_DerivationDescription);
  }
  testing::ExpectDciodvfyAccepts(received.files, "learned");
  testing::MemoryInstanceSource source(testing::PhantomSeries(24, 24, 6, 30.0));
  EXPECT_FALSE(EnhanceSeries(source, BilateralDenoiser(), {}, {}).hasLearning);
}

}  // namespace enhance
