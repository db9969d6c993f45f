// SPDX-License-Identifier: GPL-3.0-or-later
//
// The model folders shipped under models/ load through the same path as in the plugin
// and keep their contract on a small phantom; the CT denoiser lowers noise; the
// super-resolution models beat their classical baselines on a phantom they were not
// trained on; the synthetic-CT model maps a T1-like head to plausible HU.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <json/reader.h>
#include <json/writer.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "FusedConvolution.h"
#include "Int8Convolution.h"
#include "ModelFixtures.h"
#include "enhance/base/Error.h"
#include "enhance/inference/ClassicalModels.h"
#include "enhance/inference/DomainCheck.h"
#include "enhance/inference/ModelSpec.h"
#include "enhance/inference/TorchModel.h"
#include "enhance/samples/Phantom.h"

namespace enhance {
namespace {

const std::filesystem::path kShipped = ENHANCE_SHIPPED_MODELS;

// Float: these tests compare the networks as trained (bf16 has its own test below).
InferenceOptions Cpu() {
  InferenceOptions o;
  o.device = "cpu";
  o.precision = "float";
  return o;
}

std::vector<std::filesystem::path> ShippedFolders() {
  std::vector<std::filesystem::path> folders;
  for (const auto& entry : std::filesystem::directory_iterator(kShipped)) {
    if (std::filesystem::is_regular_file(entry.path() / "manifest.json")) {
      folders.push_back(entry.path());
    }
  }
  return folders;
}

// `slices` slices of `size` x `size` pixels over a 384 mm field of view.
Volume SmallPhantom(double noiseSigmaHu, int64_t size = 96, int64_t slices = 2) {
  PhantomOptions o;
  o.rows = size;
  o.columns = size;
  o.slices = slices;
  o.pixelSpacing = 384.0 / static_cast<double>(size);
  o.noiseSigmaHu = noiseSigmaHu;
  o.seed = 3;
  return MakeCtPhantom(o);
}

// A 256x256 phantom slice with the mild blur of a reconstructed image (3x3 binomial): the
// raw phantom's perfectly sharp 2000 HU edges never occur in a real scan.
Volume ReconstructedLikePhantom() {
  PhantomOptions o;
  o.rows = 256;
  o.columns = 256;
  o.slices = 1;
  o.pixelSpacing = 1.6;
  o.seed = 3;
  const Volume sharp = MakeCtPhantom(o);
  Volume v = sharp;
  for (int64_t r = 1; r + 1 < v.rows; ++r) {
    for (int64_t c = 1; c + 1 < v.columns; ++c) {
      float sum = 0;
      for (int dr = -1; dr <= 1; ++dr) {
        for (int dc = -1; dc <= 1; ++dc) {
          sum += sharp.At(0, r + dr, c + dc) * static_cast<float>((dr ? 1 : 2) * (dc ? 1 : 2));
        }
      }
      v.At(0, r, c) = sum / 16;
    }
  }
  return v;
}

double RmseInBody(const Volume& reference, const Volume& test) {
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < reference.voxels.size(); ++i) {
    if (reference.voxels[i] > -500) {
      const double d = static_cast<double>(test.voxels[i]) - reference.voxels[i];
      sum += d * d;
      ++count;
    }
  }
  return std::sqrt(sum / static_cast<double>(count));
}

// 3x3 binomial blur of every slice (borders kept).
Volume Binomial(const Volume& sharp) {
  Volume v = sharp;
  for (int64_t s = 0; s < v.slices; ++s) {
    for (int64_t r = 1; r + 1 < v.rows; ++r) {
      for (int64_t c = 1; c + 1 < v.columns; ++c) {
        float sum = 0;
        for (int dr = -1; dr <= 1; ++dr) {
          for (int dc = -1; dc <= 1; ++dc) {
            sum += sharp.At(s, r + dr, c + dc) * static_cast<float>((dr ? 1 : 2) * (dc ? 1 : 2));
          }
        }
        v.At(s, r, c) = sum / 16;
      }
    }
  }
  return v;
}

// 2x2 means with the matching geometry: pixel centres of the coarse grid half-way
// between those of the fine one.
Volume Halve(const Volume& high) {
  Volume low = high;
  low.rows = high.rows / 2;
  low.columns = high.columns / 2;
  low.voxels.assign(static_cast<size_t>(low.slices * low.rows * low.columns), 0.0f);
  for (int64_t s = 0; s < low.slices; ++s) {
    for (int64_t r = 0; r < low.rows; ++r) {
      for (int64_t c = 0; c < low.columns; ++c) {
        low.At(s, r, c) = 0.25f * (high.At(s, 2 * r, 2 * c) + high.At(s, 2 * r, 2 * c + 1) +
                                   high.At(s, 2 * r + 1, 2 * c) + high.At(s, 2 * r + 1, 2 * c + 1));
      }
    }
  }
  low.geometry.rowSpacing *= 2;
  low.geometry.columnSpacing *= 2;
  for (Vec3& p : low.geometry.slicePositions) {
    p[0] += 0.5 * high.geometry.columnSpacing;
    p[1] += 0.5 * high.geometry.rowSpacing;
  }
  return low;
}

double Rmse(const Volume& reference, const Volume& test) {
  double sum = 0;
  for (size_t i = 0; i < reference.voxels.size(); ++i) {
    const double d = static_cast<double>(test.voxels[i]) - reference.voxels[i];
    sum += d * d;
  }
  return std::sqrt(sum / static_cast<double>(reference.voxels.size()));
}

// A small input of the model's modality: the CT phantom, or for MR a magnitude-image
// stand-in (non-negative, arbitrary units).
Volume SmallInputFor(const ModelInfo& info, int64_t size = 96, int64_t slices = 2) {
  Volume input = SmallPhantom(0.0, size, slices);
  if (info.modalities.front() != "CT") {
    for (float& x : input.voxels) x = std::max(0.0f, x + 1000.0f);
    input.units = "";
  }
  return input;
}

// Two runs of a model agree within 0.05: HU or the MR input's units, out of a range of
// thousands.
void ExpectSameOutput(const Volume& actual, const Volume& expected) {
  ASSERT_EQ(actual.voxels.size(), expected.voxels.size());
  float worst = 0;
  for (size_t i = 0; i < actual.voxels.size(); ++i) {
    worst = std::max(worst, std::abs(actual.voxels[i] - expected.voxels[i]));
  }
  EXPECT_LT(worst, 0.05f);
}

bool Shipped(const std::string& name) {
  return std::filesystem::is_regular_file(kShipped / name / "manifest.json");
}

}  // namespace

TEST(ShippedModels, EachLoadsAndKeepsItsContract) {
  const auto folders = ShippedFolders();
  ASSERT_FALSE(folders.empty()) << "no model folders in " << kShipped;
  for (const auto& folder : folders) {
    SCOPED_TRACE(folder.string());
    const auto model = TorchModel::Load(folder, Cpu());
    const ModelInfo& info = model->Info();
    EXPECT_EQ(info.name, folder.filename().string());
    EXPECT_TRUE(std::filesystem::is_regular_file(folder / "MODEL_CARD.md"));
    EXPECT_LE(std::filesystem::file_size(info.archive), 5u << 20);

    const Volume input = SmallInputFor(info);
    const Volume output = model->Run(input, {});
    EXPECT_EQ(output.slices, info.throughPlaneScale > 1 ? 2 * input.slices - 1 : input.slices);
    EXPECT_EQ(output.rows, input.rows * info.inPlaneScale);
    EXPECT_EQ(output.columns, input.columns * info.inPlaneScale);
    for (float x : output.voxels) ASSERT_TRUE(std::isfinite(x));
  }
}

namespace {

// The mean |actual - expected| as a share of the range of `expected`.
double MeanDifferenceShare(const Volume& actual, const Volume& expected) {
  EXPECT_EQ(actual.voxels.size(), expected.voxels.size());
  if (actual.voxels.size() != expected.voxels.size() || expected.voxels.empty()) return 1;
  const auto [lowest, highest] =
      std::minmax_element(expected.voxels.begin(), expected.voxels.end());
  double sum = 0;
  for (size_t i = 0; i < actual.voxels.size(); ++i)
    sum += std::abs(actual.voxels[i] - expected.voxels[i]);
  return sum / static_cast<double>(actual.voxels.size()) / (*highest - *lowest);
}

}  // namespace

// A shipped model that allows bf16 has a calibration input that fits it, and its bf16 version
// stays within its manifest's tolerance there; where the processor has bf16 instructions,
// the loader compares them itself and keeps bf16 only within that tolerance. On a small
// phantom, bf16's output stays within 1% of the output's range of float's.
TEST(ShippedModels, Bf16StaysWithinEachManifestsTolerance) {
  int allowing = 0;
  for (const auto& folder : ShippedFolders()) {
    SCOPED_TRACE(folder.string());
    InferenceOptions automatic = Cpu(), low = Cpu();
    automatic.precision = "auto";
    low.precision = "bf16";
    const auto model = TorchModel::Load(folder, automatic);
    const LowPrecisionReport* report = model->LowPrecision();
    if (report == nullptr) continue;
    ++allowing;
    const LowPrecisionSpec& allowed = model->Info().lowPrecision;
    if (CpuHasBf16()) {
      ASSERT_TRUE(report->compared) << report->note;
      EXPECT_LE(report->meanDeviation, allowed.meanTolerance);
      EXPECT_LE(report->p999Deviation, allowed.p999Tolerance);
      EXPECT_TRUE(report->runs == "bf16" ||
                  report->note.find("not the fastest") != std::string::npos)
          << report->note;
    } else {
      EXPECT_EQ(report->runs, "float");
    }
    InferenceOptions one = Cpu();
    if (model->Info().isDiffusion) one.diffusionSamples = low.diffusionSamples = 1;
    const Volume input = SmallInputFor(model->Info());
    const Volume expected = TorchModel::Load(folder, one)->Run(input, {});
    const double share =
        MeanDifferenceShare(TorchModel::Load(folder, low)->Run(input, {}), expected);
    EXPECT_LT(share, 0.01);
  }
  EXPECT_GT(allowing, 0) << "no shipped model allows bf16";
}

// A shipped model that allows int8 stays within its int8 tolerance on its calibration input
// where the processor has 8-bit dot-product instructions (the loader keeps int8 only
// then), and forced int8's output on a small phantom stays within 1% of the output's range
// of float's on average.
TEST(ShippedModels, Int8StaysWithinEachManifestsTolerance) {
  int allowing = 0;
  for (const auto& folder : ShippedFolders()) {
    SCOPED_TRACE(folder.string());
    InferenceOptions automatic = Cpu();
    automatic.precision = "auto";
    const auto model = TorchModel::Load(folder, automatic);
    const LowPrecisionReport* report = model->LowPrecision();
    if (report == nullptr || !model->Info().lowPrecision.int8) continue;
    ++allowing;
    const LowPrecisionSpec& allowed = model->Info().lowPrecision;
    if (CpuHasInt8()) {
      ASSERT_TRUE(report->int8.compared) << report->int8.note;
      EXPECT_LE(report->int8.meanDeviation, allowed.int8MeanTolerance);
      EXPECT_LE(report->int8.p999Deviation, allowed.int8P999Tolerance);
      EXPECT_TRUE(report->runs == "int8" ||
                  report->int8.note.find("not the fastest") != std::string::npos)
          << report->int8.note;
    } else {
      EXPECT_NE(report->runs, "int8");
    }
    InferenceOptions float32 = Cpu(), int8 = Cpu();
    float32.precision = "float";
    int8.precision = "int8";
    const Volume input = SmallInputFor(model->Info());
    const Volume expected = TorchModel::Load(folder, float32)->Run(input, {});
    const double share =
        MeanDifferenceShare(TorchModel::Load(folder, int8)->Run(input, {}), expected);
    EXPECT_GT(share, 0.0);
    EXPECT_LT(share, 0.01);
  }
  EXPECT_GT(allowing, 0) << "no shipped model allows int8";
}

// The fused CPU layout (FusedConvolution.h) computes what the graph as saved computes.
TEST(ShippedModels, FusedConvolutionsGiveTheSameResults) {
  for (const auto& folder : ShippedFolders()) {
    SCOPED_TRACE(folder.string());
    InferenceOptions channelsLast = Cpu(), fused = Cpu();
    channelsLast.cpuLayout = "channels-last";
    fused.cpuLayout = "fused";
    const auto reference = TorchModel::Load(folder, channelsLast);
    const auto model = TorchModel::Load(folder, fused);
    EXPECT_NE(model->Parameters().find("fused convolutions"), std::string::npos);
    const Volume input = SmallInputFor(model->Info());
    const Volume expected = reference->Run(input, {});
    const Volume actual = model->Run(input, {});
    ExpectSameOutput(actual, expected);
  }
}

// One phantom slice of rows x (rows - 24) pixels (not a multiple of 8: padded) for a domain
// check of `spec`: in HU for a CT check, shifted to non-negative values for an MR one.
Volume DomainCheckSlice(const ModelSpec& spec, int64_t rows, double noiseSigmaHu, uint64_t seed) {
  PhantomOptions o;
  o.rows = rows;
  o.columns = rows - 24;
  o.slices = 1;
  o.pixelSpacing = 384.0 / static_cast<double>(rows);
  o.noiseSigmaHu = noiseSigmaHu;
  o.seed = seed;
  Volume slice = MakeCtPhantom(o);
  if (spec.modalities.front() != "CT") {
    for (float& x : slice.voxels) x = std::max(0.0f, x + 1000.0f);
  }
  return slice;
}

// A domain check's figures of one slice computed two ways agree to float rounding.
void ExpectSameFeatures(const SliceDomainFeatures& a, const SliceDomainFeatures& b) {
  EXPECT_NEAR(a.logReconstruction, b.logReconstruction, 1e-4);
  EXPECT_NEAR(a.logKl, b.logKl, 1e-4);
  EXPECT_NEAR(a.logResidual, b.logResidual, 1e-4);
  EXPECT_NEAR(a.meanIntensity, b.meanIntensity, 1e-6);
  EXPECT_NEAR(a.residualCorrelation, b.residualCorrelation, 1e-4);
}

// Each shipped domain check scores a slice the same with the node's fused convolutions as
// optimised by LibTorch or run as saved: its thresholds hold however it runs.
TEST(ShippedModels, DomainChecksScoreTheSameFusedAsSaved) {
  for (const auto& folder : ShippedFolders()) {
    const ModelSpec spec = LoadManifest(folder);
    if (!spec.hasDomainCheck) continue;
    SCOPED_TRACE(folder.string());
    const auto fused = DomainCheck::Load(spec.domainCheck, "cpu", folder.string());
    const auto optimised =
        DomainCheck::Load(spec.domainCheck, "cpu", folder.string(), DomainCheckCpu::kLibTorch);
    const auto saved =
        DomainCheck::Load(spec.domainCheck, "cpu", folder.string(), DomainCheckCpu::kAsSaved);
    if (FusedConvolutionUsesOneDnn()) {
      EXPECT_EQ(fused->Describe(), "fused convolutions");
    }
    EXPECT_EQ(optimised->Describe(), "optimised by LibTorch");
    EXPECT_EQ(saved->Describe(), "as saved");
    for (const int64_t size : {96, 200}) {
      const Volume slice = DomainCheckSlice(spec, size, 30.0, 7);
      const SliceDomainFeatures a = fused->SliceFeatures(slice.Slice(0), slice.rows, slice.columns);
      for (const auto* other : {saved.get(), optimised.get()}) {
        SCOPED_TRACE(other->Describe());
        ExpectSameFeatures(a, other->SliceFeatures(slice.Slice(0), slice.rows, slice.columns));
      }
    }
  }
}

// A series' slices scored together (DomainBatch: one forward pass for up to kDomainBatch
// slices of one size) have the figures each has alone, in the order they were added, with
// slices of another size between them and more slices than one batch holds.
TEST(ShippedModels, DomainChecksScoreABatchAsEachSliceAlone) {
  for (const auto& folder : ShippedFolders()) {
    const ModelSpec spec = LoadManifest(folder);
    if (!spec.hasDomainCheck) continue;
    SCOPED_TRACE(folder.string());
    const auto check = DomainCheck::Load(spec.domainCheck, "cpu", folder.string());
    std::vector<Volume> slices;
    for (int k = 0; k < static_cast<int>(kDomainBatch) + 3; ++k) {
      // 9 of one size (a batch and one), then another
      slices.push_back(
          DomainCheckSlice(spec, k == 9 ? 120 : 96, 20.0 + 5.0 * k, static_cast<uint64_t>(11 + k)));
    }
    DomainBatch batch(*check);
    for (const Volume& v : slices) batch.Add(v.Slice(0), v.rows, v.columns);
    EXPECT_EQ(batch.Size(), slices.size());
    const std::vector<SliceDomainFeatures> together = batch.Features();
    EXPECT_EQ(batch.Size(), 0u);
    ASSERT_EQ(together.size(), slices.size());
    for (size_t k = 0; k < slices.size(); ++k) {
      SCOPED_TRACE("slice " + std::to_string(k));
      ExpectSameFeatures(
          together[k], check->SliceFeatures(slices[k].Slice(0), slices[k].rows, slices[k].columns));
    }
    // The slices differ (their noise grows): a batch that mixed them up would fail above.
    EXPECT_NE(together.front().logResidual, together.back().logResidual);
    // Emptied by Features(): the next series' slices alone.
    batch.Add(slices[2].Slice(0), slices[2].rows, slices[2].columns);
    const std::vector<SliceDomainFeatures> next = batch.Features();
    ASSERT_EQ(next.size(), 1u);
    EXPECT_NEAR(next[0].logResidual, together[2].logResidual, 1e-4);
  }
}

// Every shipped check judges a series shorter than its minimum of scored slices slice by
// slice against the single slices of its reference series, with a threshold set for each
// length (enhance-domain calibrate): each length below the minimum has its threshold.
TEST(ShippedModels, DomainChecksJudgeEachShortLength) {
  for (const auto& folder : ShippedFolders()) {
    const ModelSpec spec = LoadManifest(folder);
    if (!spec.hasDomainCheck) continue;
    SCOPED_TRACE(folder.string());
    const DomainCheckSpec& d = spec.domainCheck;
    EXPECT_EQ(d.shortSeriesThresholds.size(), static_cast<size_t>(d.minSlices - 1));
    for (double t : d.shortSeriesThresholds) EXPECT_GE(t, d.threshold);
    EXPECT_GE(d.shortSeriesSlices.size(), 32u);
  }
}

// A series' check (SeriesDomainScorer, what the node and the REST route use) scores the
// slices DomainSlicesScored selects, by their position in the order they are offered, and
// nothing else: its score is the aggregate of those slices' figures alone.
TEST(ShippedModels, SeriesDomainScorerScoresTheSelectedSlices) {
  for (const auto& folder : ShippedFolders()) {
    const ModelSpec spec = LoadManifest(folder);
    if (!spec.hasDomainCheck) continue;
    SCOPED_TRACE(folder.string());
    const auto check = DomainCheck::Load(spec.domainCheck, "cpu", folder.string());
    // Enough slices that the check scores some, not all, each with its own noise.
    const int64_t count = 4 * std::max(spec.domainCheck.minSlices, 2);
    const std::vector<bool> selected = DomainSlicesScored(count, spec.domainCheck);
    ASSERT_LT(std::count(selected.begin(), selected.end(), true), count);
    SeriesDomainScorer scorer(*check, count);
    std::vector<SliceDomainFeatures> alone;
    for (int64_t k = 0; k < count; ++k) {
      const Volume v = DomainCheckSlice(spec, 96, 10.0 + 3.0 * static_cast<double>(k),
                                        static_cast<uint64_t>(40 + k));
      EXPECT_EQ(scorer.Offer(v.Slice(0), v.rows, v.columns), selected[static_cast<size_t>(k)])
          << "slice " << k;
      if (selected[static_cast<size_t>(k)]) {
        alone.push_back(check->SliceFeatures(v.Slice(0), v.rows, v.columns));
      }
    }
    // A slice past the series' count is passed over.
    const Volume extra = DomainCheckSlice(spec, 96, 90.0, 99);
    EXPECT_FALSE(scorer.Offer(extra.Slice(0), extra.rows, extra.columns));
    const DomainScore score = scorer.Score();
    const DomainScore expected = AggregateDomainScore(spec.domainCheck, alone);
    EXPECT_EQ(score.slices, expected.slices);
    EXPECT_NEAR(score.score, expected.score, 1e-3);
    EXPECT_NEAR(score.logResidual, expected.logResidual, 1e-4);
    // A series of which no slice was scored has no score.
    SeriesDomainScorer empty(*check, 0);
    EXPECT_FALSE(empty.Offer(extra.Slice(0), extra.rows, extra.columns));
    try {
      empty.Score();
      ADD_FAILURE() << "a series without a scored slice got a score";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    }
  }
}

// Every shipped model gives the same result cut into tiles as in one piece: its receptive
// field fits in a quarter of its tiles' overlap, where the blending weights are zero
// (docs/models.md). So a manifest's tile size is a matter of speed and memory only.
TEST(ShippedModels, TilesGiveTheSameResultAsWholeSlices) {
  for (const auto& folder : ShippedFolders()) {
    SCOPED_TRACE(folder.string());
    Json::Value manifest;
    {
      std::ifstream in(folder / "manifest.json");
      Json::CharReaderBuilder builder;
      std::string errors;
      ASSERT_TRUE(Json::parseFromStream(builder, in, &manifest, &errors)) << errors;
    }
    const int64_t overlap = manifest["tile"]["overlap"].asInt64();
    // Tiles of twice the overlap and 16 pixels, two across the image.
    const int64_t tile = 2 * overlap + 16;
    const auto load = [&](const testing::TemporaryFolder& copy, int64_t tileSize) {
      manifest["tile"]["size"] = Json::Int64(tileSize);
      manifest.removeMember("domain_check");   // the network alone is compared ...
      manifest.removeMember("low_precision");  // ... in float
      std::filesystem::copy_file(folder / manifest["archive"].asString(),
                                 copy.path() / manifest["archive"].asString());
      std::ofstream(copy.path() / "manifest.json") << manifest;
      InferenceOptions options = Cpu();
      options.cpuLayout = "channels-last";
      // One sample is enough to compare (the noise of a tile is the crop of the slice's).
      if (manifest.isMember("diffusion")) options.diffusionSamples = 1;
      return TorchModel::Load(copy.path(), options);
    };
    testing::TemporaryFolder wholeFolder, tiledFolder;
    const auto whole = load(wholeFolder, 0);
    const auto tiled = load(tiledFolder, tile);
    EXPECT_NE(tiled->Parameters().find("tiles " + std::to_string(tile) + " px"), std::string::npos);
    Volume input = SmallInputFor(whole->Info(), 2 * tile - overlap);
    if (whole->Info().isDiffusion) {  // its slices are independent: one is enough
      input.slices = 1;
      input.voxels.resize(static_cast<size_t>(input.VoxelsPerSlice()));
      input.geometry.slicePositions.resize(1);
    }
    const Volume expected = whole->Run(input, {});
    const Volume actual = tiled->Run(input, {});
    ExpectSameOutput(actual, expected);
  }
}

TEST(ShippedModels, CtDenoiserLowersNoise) {
  const auto model = TorchModel::Load(kShipped / "ct-denoise", Cpu());
  const Volume clean = ReconstructedLikePhantom();
  Volume noisy = clean;
  std::mt19937 rng(1);
  std::normal_distribution<float> noise(0.0f, 30.0f);
  for (float& x : noisy.voxels) x += noise(rng);
  const double before = RmseInBody(clean, noisy);
  const double after = RmseInBody(clean, model->Run(noisy, {}));
  // About 30 HU -> 10 HU with the shipped weights.
  EXPECT_LT(after, 0.5 * before) << "RMSE " << before << " HU -> " << after << " HU";
}

TEST(ShippedModels, CtSuperResolutionBeatsBicubic) {
  if (!Shipped("ct-superres-x2")) GTEST_SKIP() << "ct-superres-x2 is not shipped";
  const auto model = TorchModel::Load(kShipped / "ct-superres-x2", Cpu());
  // A phantom seed and pixel size the training set did not use, reconstructed-like.
  PhantomOptions o;
  o.rows = 384;
  o.columns = 384;
  o.slices = 1;
  o.pixelSpacing = 1.0;
  o.seed = 77;
  const Volume high = Binomial(MakeCtPhantom(o));
  const Volume low = Halve(high);
  const Volume learned = model->Run(low, {});
  const Volume bicubic = MakeBicubicUpsampler(2)->Run(low, {});
  ASSERT_EQ(learned.rows, high.rows);
  ASSERT_EQ(learned.columns, high.columns);
  EXPECT_NEAR(learned.geometry.rowSpacing, high.geometry.rowSpacing, 1e-9);
  EXPECT_NEAR(learned.geometry.slicePositions[0][0], high.geometry.slicePositions[0][0], 1e-6);
  const double a = RmseInBody(high, bicubic);
  const double b = RmseInBody(high, learned);
  EXPECT_LT(b, 0.85 * a) << "RMSE in the body: bicubic " << a << " HU, learned " << b << " HU";
}

TEST(ShippedModels, ThroughPlaneBeatsLinearInterpolation) {
  if (!Shipped("ct-superres-z2")) GTEST_SKIP() << "ct-superres-z2 is not shipped";
  const auto model = TorchModel::Load(kShipped / "ct-superres-z2", Cpu());
  ASSERT_EQ(model->Info().throughPlaneScale, 2);
  // 12 thin slices of 1 mm averaged four by four: 3 thick slices of 4 mm, and the thick
  // slices centred in the two gaps as the reference.
  PhantomOptions o;
  o.rows = 256;
  o.columns = 256;
  o.slices = 12;
  o.pixelSpacing = 1.6;
  o.sliceSpacing = 1.0;
  o.seed = 78;
  const Volume thin = Binomial(MakeCtPhantom(o));
  auto slab = [&](int64_t first, float* out) {
    for (int64_t i = 0; i < thin.VoxelsPerSlice(); ++i) {
      out[i] = 0.25f * (thin.Slice(first)[i] + thin.Slice(first + 1)[i] + thin.Slice(first + 2)[i] +
                        thin.Slice(first + 3)[i]);
    }
  };
  Volume thick = thin;
  thick.slices = 3;
  thick.voxels.resize(static_cast<size_t>(3 * thin.VoxelsPerSlice()));
  thick.geometry.slicePositions.clear();
  for (int64_t k = 0; k < 3; ++k) {
    slab(4 * k, thick.Slice(k));
    Vec3 p = thin.geometry.slicePositions[static_cast<size_t>(4 * k)];
    p[2] += 1.5;
    thick.geometry.slicePositions.push_back(p);
  }
  thick.geometry.sliceSpacing = thick.geometry.sliceThickness = 4.0;
  Volume reference = thick;
  for (int64_t g = 0; g < 2; ++g) slab(4 * g + 2, reference.Slice(g));
  reference.slices = 2;
  reference.voxels.resize(static_cast<size_t>(2 * thin.VoxelsPerSlice()));

  const Volume learned = model->Run(thick, {});
  const Volume linear = MakeLinearThroughPlane()->Run(thick, {});
  ASSERT_EQ(learned.slices, 5);
  EXPECT_NEAR(learned.geometry.slicePositions[1][2],
              0.5 * (thick.geometry.slicePositions[0][2] + thick.geometry.slicePositions[1][2]),
              1e-6);
  for (int64_t k = 0; k < 3; ++k) {  // the source slices are kept exactly
    ASSERT_TRUE(
        std::equal(thick.Slice(k), thick.Slice(k) + thick.VoxelsPerSlice(), learned.Slice(2 * k)));
  }
  Volume learnedGaps = reference, linearGaps = reference;
  for (int64_t g = 0; g < 2; ++g) {
    std::copy(learned.Slice(2 * g + 1), learned.Slice(2 * g + 2), learnedGaps.Slice(g));
    std::copy(linear.Slice(2 * g + 1), linear.Slice(2 * g + 2), linearGaps.Slice(g));
  }
  const double a = RmseInBody(reference, linearGaps);
  const double b = RmseInBody(reference, learnedGaps);
  EXPECT_LT(b, a) << "RMSE in the body: linear " << a << " HU, learned " << b << " HU";
}

TEST(ShippedModels, MrSuperResolutionBeatsBicubic) {
  if (!Shipped("mr-superres-x2")) GTEST_SKIP() << "mr-superres-x2 is not shipped";
  const auto model = TorchModel::Load(kShipped / "mr-superres-x2", Cpu());
  // A T1-like head: scalp, dark skull, brain with a darker cortex ribbon and ventricles.
  Volume high;
  high.Resize(1, 192, 192);
  high.units = "";
  high.geometry.rowSpacing = high.geometry.columnSpacing = 1.0;
  high.geometry.slicePositions = {{0.0, 0.0, 0.0}};
  for (int64_t r = 0; r < 192; ++r) {
    for (int64_t c = 0; c < 192; ++c) {
      const double y = (static_cast<double>(r) - 96.0) / 80.0;
      const double x = (static_cast<double>(c) - 96.0) / 66.0;
      const double d = std::sqrt(x * x + y * y);
      double v = 0.0;
      if (d < 1.0) v = 0.9;
      if (d < 0.93) v = 0.1;
      if (d < 0.86) v = 0.55 + 0.05 * std::sin(12 * std::atan2(y, x));
      if (d < 0.75) v = 0.8;
      if (std::abs(x) < 0.12 && std::abs(y) < 0.3) v = 0.15;
      high.At(0, r, c) = static_cast<float>(v);
    }
  }
  high = Binomial(high);
  const Volume low = Halve(high);
  const double a = Rmse(high, MakeBicubicUpsampler(2)->Run(low, {}));
  const double b = Rmse(high, model->Run(low, {}));
  EXPECT_LT(b, a) << "RMSE: bicubic " << a << ", learned " << b;
}

class SyntheticCtModels : public ::testing::TestWithParam<std::string> {};

// The regression model and the diffusion model (the mean of its samples).
TEST_P(SyntheticCtModels, SyntheticCtOfAT1LikeHead) {
  if (!Shipped(GetParam())) GTEST_SKIP() << GetParam() << " is not shipped";
  const auto model = TorchModel::Load(kShipped / GetParam(), Cpu());
  EXPECT_EQ(model->Info().outputUnits, "HU");
  // Bright scalp, a dark skull, then brain (grey and white matter) with dark ventricles.
  Volume mr;
  mr.Resize(1, 200, 170);
  mr.units = "";
  mr.geometry.rowSpacing = mr.geometry.columnSpacing = 1.0;
  mr.geometry.slicePositions = {{0.0, 0.0, 0.0}};
  auto at = [](double x, double y, double a, double b) {
    return (x * x) / (a * a) + (y * y) / (b * b);
  };
  for (int64_t r = 0; r < mr.rows; ++r) {
    for (int64_t c = 0; c < mr.columns; ++c) {
      const double y = static_cast<double>(r) - 100.0, x = static_cast<double>(c) - 85.0;
      double v = 0.0;                     // background
      if (at(x, y, 75, 90) < 1) v = 150;  // scalp and fat
      if (at(x, y, 69, 84) < 1) v = 40;   // skull
      if (at(x, y, 63, 78) < 1) v = 85;   // grey matter
      if (at(x, y, 55, 70) < 1) v = 110;  // white matter
      if (at(x, y, 8, 20) < 1) v = 30;    // ventricles
      mr.At(0, r, c) = static_cast<float>(v);
    }
  }
  mr = Binomial(mr);
  const Volume ct = model->Run(mr, {});
  ASSERT_EQ(ct.rows, mr.rows);
  EXPECT_EQ(ct.units, "HU");
  EXPECT_LT(ct.At(0, 5, 5), -800.0f);          // air
  EXPECT_GT(ct.At(0, 100, 85 + 45), -100.0f);  // white matter
  EXPECT_LT(ct.At(0, 100, 85 + 45), 150.0f);
  const float skull = std::max(ct.At(0, 100, 85 + 66), ct.At(0, 100, 85 - 66));
  // Far denser than any soft tissue (the 6 px ring is partly averaged with its neighbours).
  EXPECT_GT(skull, 200.0f) << "the dark ring between scalp and brain should be bone";
}

INSTANTIATE_TEST_SUITE_P(ShippedModels, SyntheticCtModels,
                         ::testing::Values("mr2ct", "mr2ct-diffusion"));

// The diffusion model on a GPU gives the CPU's synthetic CT within the tolerance that
// docs/models.md states: a mean absolute difference under 1 HU and 99.9% of the voxels
// within 20 HU (the sampler carries rounding differences of the network through its steps).
// Skipped without a CUDA device.
TEST(ShippedModels, DiffusionModelAgreesOnCpuAndCuda) {
  if (!Shipped("mr2ct-diffusion")) GTEST_SKIP() << "mr2ct-diffusion is not shipped";
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: nothing to compare";
  InferenceOptions gpuOptions;
  gpuOptions.device = "cuda";
  const auto gpu = TorchModel::Load(kShipped / "mr2ct-diffusion", gpuOptions);
  const auto cpu = TorchModel::Load(kShipped / "mr2ct-diffusion", Cpu());
  const Volume input = SmallInputFor(cpu->Info(), 128);
  RunContext context;
  context.randomKey = 11;
  const Volume a = cpu->Run(input, context);
  const Volume b = gpu->Run(input, context);
  ASSERT_EQ(a.voxels.size(), b.voxels.size());
  std::vector<float> differences;
  double sum = 0;
  for (size_t i = 0; i < a.voxels.size(); ++i) {
    differences.push_back(std::abs(a.voxels[i] - b.voxels[i]));
    sum += differences.back();
  }
  std::sort(differences.begin(), differences.end());
  EXPECT_LT(sum / static_cast<double>(differences.size()), 1.0);
  EXPECT_LT(differences[differences.size() * 999 / 1000], 20.0f);
}

// Every shipped network that runs in one pass gives on a GPU what it gives on the CPU, in
// batches that do not divide the series (5 slices, batches of 2): within 0.2% of the
// output's range on average (cuDNN may run convolutions in TF32 on GPUs that have it).
// Skipped without a CUDA device.
TEST(ShippedModels, EachAgreesOnCpuAndCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: nothing to compare";
  int compared = 0;
  for (const auto& folder : ShippedFolders()) {
    SCOPED_TRACE(folder.string());
    const auto cpu = TorchModel::Load(folder, Cpu());
    if (cpu->Info().isDiffusion) continue;  // DiffusionModelAgreesOnCpuAndCuda
    InferenceOptions gpuOptions;
    gpuOptions.device = "cuda";
    gpuOptions.maxBatch = 2;
    const auto gpu = TorchModel::Load(folder, gpuOptions);
    EXPECT_EQ(gpu->Device(), "cuda:0");
    const Volume input = SmallInputFor(cpu->Info(), 128, 5);
    const Volume expected = cpu->Run(input, {});
    const Volume actual = gpu->Run(input, {});
    ASSERT_EQ(actual.slices, expected.slices);
    EXPECT_LT(MeanDifferenceShare(actual, expected), 0.002);
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

// Multiply-accumulates are counted on the grid each convolution runs on: the figures
// enhance-train prints for each network (docs/models.md), whether it keeps the
// resolution, works on the coarse grid before a pixel shuffle, or takes four slices; for
// the diffusion model's U-Net (strided and transposed convolutions), one network pass.
TEST(ShippedModels, MacsAreCountedOnTheGridEachConvolutionRunsOn) {
  const std::vector<std::pair<std::string, double>> gmacPer512Slice{
      {"ct-denoise", 3.70},     {"mr-denoise", 4.81},     {"mr2ct", 4.81},
      {"ct-superres-x2", 2.86}, {"mr-superres-x2", 2.86}, {"ct-superres-z2", 4.95},
      {"mr2ct-diffusion", 5.44}};
  for (const auto& [name, expected] : gmacPer512Slice) {
    const auto model = TorchModel::Load(kShipped / name, Cpu());
    EXPECT_NEAR(model->MacsPerPixel() * 512 * 512 / 1e9, expected, 0.01) << name;
  }
}

}  // namespace enhance
