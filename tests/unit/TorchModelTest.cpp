// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/TorchModel.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/cuda.h>

#include <fstream>
#include <random>

#include "FusedConvolution.h"
#include "Int8Convolution.h"
#include "ModelFixtures.h"
#include "enhance/base/Error.h"
#include "enhance/inference/ModelRegistry.h"

namespace enhance {
namespace {

using testing::DenoiseManifest;
using testing::TemporaryFolder;
using testing::WriteFixtureModel;

InferenceOptions Cpu() {
  InferenceOptions o;
  o.device = "cpu";
  return o;
}

Volume RandomVolume(int64_t slices, int64_t rows, int64_t columns, uint32_t seed = 5) {
  Volume v;
  v.Resize(slices, rows, columns);
  v.units = "HU";
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-900.0f, 900.0f);
  for (float& x : v.voxels) x = u(rng);
  for (int64_t s = 0; s < slices; ++s) v.geometry.slicePositions.push_back({0, 0, 2.0 * s});
  return v;
}

std::string LoadError(const std::filesystem::path& folder) {
  try {
    TorchModel::Load(folder, Cpu());
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(folder.string()), std::string::npos) << e.what();
    return e.what();
  }
  return "no error";
}

// Reference 3x3 mean filter with zero padding, in physical units.
at::Tensor Mean3x3(const Volume& v) {
  const at::Tensor x =
      at::from_blob(const_cast<float*>(v.voxels.data()), {v.slices, 1, v.rows, v.columns});
  // The model sees (x + 1000) / 2000 with zero padding; map the padding back to -1000 HU.
  const at::Tensor padded = at::constant_pad_nd(x, {1, 1, 1, 1}, -1000.0);
  return at::conv2d(padded, at::full({1, 1, 3, 3}, 1.0f / 9.0f)).squeeze(1);
}

// The mean filter with 256-pixel tiles, loaded twice: without a memory limit, and on a
// device simulated to have 6 MB, where a 256x256 tile (about 16 MB at 256 bytes per pixel)
// does not fit and a 128x128 one (4 MB) does.
struct FreeAndConstrained {
  std::shared_ptr<const TorchModel> free;
  std::shared_ptr<const TorchModel> constrained;
};
FreeAndConstrained LoadWithAndWithoutMemoryLimit(const TemporaryFolder& dir, Json::Value manifest) {
  manifest["tile"]["size"] = 256;
  manifest["tile"]["overlap"] = 16;  // receptive radius 1 <= overlap / 4
  const auto folder = WriteFixtureModel(dir.path(), "mean3x3", manifest);
  InferenceOptions small = Cpu();
  small.simulatedDeviceMemoryBytes = size_t{6} << 20;
  return {TorchModel::Load(folder, Cpu()), TorchModel::Load(folder, small)};
}

}  // namespace

TEST(TorchModel, IdentityModelReturnsTheInputThroughNormalisation) {
  TemporaryFolder dir;
  const auto folder = WriteFixtureModel(dir.path(), "identity", DenoiseManifest("identity"));
  const auto model = TorchModel::Load(folder, Cpu());
  EXPECT_EQ(model->Device(), "cpu");
  EXPECT_EQ(model->Info().name, "identity");
  EXPECT_FALSE(model->Info().uid.empty());
  const Volume input = RandomVolume(3, 20, 24);
  const Volume output = model->Run(input, {});
  ASSERT_EQ(output.voxels.size(), input.voxels.size());
  for (size_t i = 0; i < input.voxels.size(); ++i)
    ASSERT_NEAR(output.voxels[i], input.voxels[i], 1e-3);
  EXPECT_EQ(output.units, "HU");
}

TEST(TorchModel, KnownConvolutionMatchesTheReference) {
  TemporaryFolder dir;
  Json::Value manifest = DenoiseManifest("mean");
  manifest["tile"]["size"] = 0;
  const auto model = TorchModel::Load(WriteFixtureModel(dir.path(), "mean3x3", manifest), Cpu());
  const Volume input = RandomVolume(2, 17, 19);
  const Volume output = model->Run(input, {});
  const at::Tensor expected = Mean3x3(input).contiguous();
  const float* e = expected.data_ptr<float>();
  for (size_t i = 0; i < output.voxels.size(); ++i) ASSERT_NEAR(output.voxels[i], e[i], 1e-2) << i;
}

TEST(TorchModel, TiledOutputEqualsUntiledOutput) {
  TemporaryFolder dir;
  Json::Value whole = DenoiseManifest("whole");
  whole["tile"]["size"] = 0;
  Json::Value tiled = DenoiseManifest("tiled");
  tiled["tile"]["size"] = 16;
  tiled["tile"]["overlap"] = 6;  // receptive radius 1 <= overlap / 4
  const auto a = TorchModel::Load(WriteFixtureModel(dir.path(), "mean3x3", whole), Cpu());
  const auto b = TorchModel::Load(WriteFixtureModel(dir.path(), "mean3x3", tiled), Cpu());
  const Volume input = RandomVolume(3, 45, 38);
  const Volume x = a->Run(input, {});
  const Volume y = b->Run(input, {});
  for (size_t i = 0; i < x.voxels.size(); ++i) ASSERT_NEAR(x.voxels[i], y.voxels[i], 1e-2) << i;
}

// Out of memory (here simulated on the CPU) halves the batch, then the tiles; the result
// is the unconstrained one, and each step is reported as a warning.
TEST(TorchModel, OutOfMemoryHalvesTheBatchThenTheTilesWithTheSameResult) {
  TemporaryFolder dir;
  Json::Value manifest = DenoiseManifest("oom");
  manifest["max_batch"] = 8;
  const auto [free, constrained] = LoadWithAndWithoutMemoryLimit(dir, manifest);

  const Volume input = RandomVolume(5, 256, 256);
  std::vector<std::string> warnings;
  RunContext context;
  context.warning = [&](const std::string& w) { warnings.push_back(w); };
  const Volume x = free->Run(input, {});
  const Volume y = constrained->Run(input, context);
  ASSERT_EQ(x.voxels.size(), y.voxels.size());
  for (size_t i = 0; i < x.voxels.size(); ++i) ASSERT_NEAR(x.voxels[i], y.voxels[i], 1e-2) << i;

  auto has = [&](const std::string& text) {
    for (const auto& w : warnings)
      if (w.find(text) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has("out of memory on cpu with a batch of 5; retrying with batches of 2"));
  EXPECT_TRUE(has("model 'oom' ran out of memory on cpu; retrying with tiles of 128 pixels"));
  EXPECT_FALSE(has("tiles of 64 pixels"));
}

// RunReusing writes the output over the input's memory: same values as Run, also when
// running out of memory makes it retry with smaller tiles; a model whose output is on
// another grid leaves the input alone and returns a new volume.
TEST(TorchModel, RunReusingGivesRunsResultInTheInputsMemory) {
  TemporaryFolder dir;
  const auto [free, constrained] = LoadWithAndWithoutMemoryLimit(dir, DenoiseManifest("reuse"));
  const Volume input = RandomVolume(5, 256, 256);
  const Volume expected = free->Run(input, {});
  for (const auto* model : {free.get(), constrained.get()}) {
    Volume volume = input;
    const float* memory = volume.voxels.data();
    const Volume output = model->RunReusing(volume, {});
    EXPECT_EQ(output.voxels.data(), memory);
    ASSERT_EQ(output.voxels.size(), expected.voxels.size());
    for (size_t i = 0; i < expected.voxels.size(); ++i)
      ASSERT_NEAR(output.voxels[i], expected.voxels[i], 1e-2) << i;
    EXPECT_EQ(output.geometry.slicePositions, input.geometry.slicePositions);
    EXPECT_EQ(output.units, "HU");
  }
}

TEST(TorchModel, OutOfMemoryEvenWithTheSmallestTilesFailsClearlyOnTheCpu) {
  TemporaryFolder dir;
  InferenceOptions tiny = Cpu();
  tiny.simulatedDeviceMemoryBytes = size_t{1} << 19;  // below one 64x64 tile (1 MB)
  const auto model =
      TorchModel::Load(WriteFixtureModel(dir.path(), "mean3x3", DenoiseManifest("tiny")), tiny);
  try {
    model->Run(RandomVolume(2, 256, 256), {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("model 'tiny' ran out of memory on cpu even with tiles of "
                                         "64 pixels"),
              std::string::npos)
        << e.what();
  }
}

TEST(TorchModel, BatchSizeDoesNotChangeResultsAndRunsAreDeterministic) {
  TemporaryFolder dir;
  Json::Value one = DenoiseManifest("one");
  one["max_batch"] = 1;
  Json::Value many = DenoiseManifest("many");
  many["max_batch"] = 7;
  many["slice_context"] = 0;
  const auto a = TorchModel::Load(WriteFixtureModel(dir.path(), "mean3x3", one), Cpu());
  const auto b = TorchModel::Load(WriteFixtureModel(dir.path(), "mean3x3", many), Cpu());
  const Volume input = RandomVolume(9, 30, 30);
  const Volume x = a->Run(input, {});
  const Volume y = b->Run(input, {});
  const Volume z = b->Run(input, {});
  for (size_t i = 0; i < x.voxels.size(); ++i) ASSERT_NEAR(x.voxels[i], y.voxels[i], 1e-3);
  EXPECT_EQ(y.voxels, z.voxels);
}

TEST(TorchModel, EveryCpuLayoutGivesTheSameResult) {
  TemporaryFolder dir;
  Json::Value manifest = DenoiseManifest("mean");
  manifest["tile"]["size"] = 0;
  const auto folder = WriteFixtureModel(dir.path(), "mean3x3", manifest);
  const Volume input = RandomVolume(3, 33, 29);
  InferenceOptions plain = Cpu();
  plain.cpuLayout = "plain";
  const Volume reference = TorchModel::Load(folder, plain)->Run(input, {});
  for (const std::string layout : {"channels-last", "fused", "optimised", "auto"}) {
    SCOPED_TRACE(layout);
    InferenceOptions options = Cpu();
    options.cpuLayout = layout;
    const auto model = TorchModel::Load(folder, options);
    if (layout != "auto") {
      EXPECT_NE(model->Parameters().find(layout), std::string::npos);
    }
    const Volume output = model->Run(input, {});
    ASSERT_EQ(output.voxels.size(), reference.voxels.size());
    for (size_t i = 0; i < output.voxels.size(); ++i)
      ASSERT_NEAR(output.voxels[i], reference.voxels[i], 1e-2) << i;
  }
  InferenceOptions wrong = Cpu();
  wrong.cpuLayout = "nhwc";
  EXPECT_THROW(TorchModel::Load(folder, wrong), Error);
}

TEST(TorchModel, TilesArePaddedToTheSizeMultipleAndCropped) {
  TemporaryFolder dir;
  const Volume input = RandomVolume(2, 17, 23);
  Json::Value plain = DenoiseManifest("odd");
  plain["tile"]["size"] = 0;
  const auto refuses = TorchModel::Load(WriteFixtureModel(dir.path(), "unshuffle2", plain), Cpu());
  EXPECT_THROW(refuses->Run(input, {}), Error);  // odd sizes reach the network

  for (const int tile : {0, 16}) {
    SCOPED_TRACE(tile);
    Json::Value manifest = DenoiseManifest("even" + std::to_string(tile));
    manifest["size_multiple"] = 2;
    manifest["tile"]["size"] = tile;
    manifest["tile"]["overlap"] = 4;
    const auto model =
        TorchModel::Load(WriteFixtureModel(dir.path(), "unshuffle2", manifest), Cpu());
    const Volume output = model->Run(input, {});
    ASSERT_EQ(output.voxels.size(), input.voxels.size());
    for (size_t i = 0; i < input.voxels.size(); ++i)
      ASSERT_NEAR(output.voxels[i], input.voxels[i], 1e-3) << i;
  }
}

TEST(TorchModel, SliceContextFeedsNeighboursAsChannels) {
  TemporaryFolder dir;
  Json::Value manifest = DenoiseManifest("context");
  manifest["slice_context"] = 2;  // 5 channels; the identity fixture returns the middle one
  const auto model = TorchModel::Load(WriteFixtureModel(dir.path(), "identity", manifest), Cpu());
  EXPECT_EQ(model->Info().InputChannels(), 5);
  const Volume input = RandomVolume(4, 8, 8);
  const Volume output = model->Run(input, {});
  for (size_t i = 0; i < input.voxels.size(); ++i)
    ASSERT_NEAR(output.voxels[i], input.voxels[i], 1e-3);
}

TEST(TorchModel, InPlaneUpsamplerDoublesTheGridOverTheSameFieldOfView) {
  TemporaryFolder dir;
  Json::Value manifest = DenoiseManifest("up2");
  manifest["task"] = "superres";
  manifest["scale"]["in_plane"] = 2;
  manifest["tile"]["size"] = 16;
  manifest["tile"]["overlap"] = 4;
  const auto model = TorchModel::Load(WriteFixtureModel(dir.path(), "upsample2", manifest), Cpu());
  Volume input = RandomVolume(2, 20, 30);
  input.geometry.rowSpacing = 1.0;
  input.geometry.columnSpacing = 0.5;
  const Volume output = model->Run(input, {});
  ASSERT_EQ(output.rows, 40);
  ASSERT_EQ(output.columns, 60);
  EXPECT_DOUBLE_EQ(output.geometry.rowSpacing, 0.5);
  EXPECT_DOUBLE_EQ(output.geometry.columnSpacing, 0.25);
  // First voxel centre moves by (new - old spacing) / 2 along each in-plane direction.
  EXPECT_NEAR(output.geometry.slicePositions[0][0], -0.125, 1e-12);
  EXPECT_NEAR(output.geometry.slicePositions[0][1], -0.25, 1e-12);
  for (int64_t r = 0; r < 40; ++r)
    for (int64_t c = 0; c < 60; ++c)
      ASSERT_NEAR(output.At(1, r, c), input.At(1, r / 2, c / 2), 1e-3) << r << "," << c;
  // Another grid: RunReusing cannot write over the input and gives Run's result.
  Volume reused = input;
  EXPECT_EQ(model->RunReusing(reused, {}).voxels, output.voxels);
}

TEST(TorchModel, ThroughPlaneModelFillsTheGapsAndKeepsTheSourceSlices) {
  TemporaryFolder dir;
  Json::Value manifest = DenoiseManifest("z2");
  manifest["task"] = "superres";
  manifest["scale"]["through_plane"] = 2;
  const auto model =
      TorchModel::Load(WriteFixtureModel(dir.path(), "interpolate", manifest), Cpu());
  const Volume input = RandomVolume(3, 6, 7);
  const Volume output = model->Run(input, {});
  ASSERT_EQ(output.slices, 5);
  EXPECT_DOUBLE_EQ(output.geometry.slicePositions[1][2], 1.0);
  EXPECT_DOUBLE_EQ(output.geometry.sliceSpacing, input.geometry.sliceSpacing / 2);
  for (int64_t i = 0; i < 42; ++i) {
    EXPECT_EQ(output.Slice(2)[i], input.Slice(1)[i]);
    EXPECT_NEAR(output.Slice(3)[i], 0.5f * (input.Slice(1)[i] + input.Slice(2)[i]), 1e-3);
  }
}

TEST(TorchModel, WrongOutputShapeIsRejectedAtLoad) {
  TemporaryFolder dir;
  const auto folder = WriteFixtureModel(dir.path(), "wrong-shape", DenoiseManifest("bad"));
  const std::string error = LoadError(folder);
  EXPECT_NE(error.find("returned [1, 1, 31, 32]"), std::string::npos) << error;
  EXPECT_NE(error.find("must return [1, 1, 32, 32]"), std::string::npos) << error;
}

TEST(TorchModel, CorruptArchiveIsRejected) {
  TemporaryFolder dir;
  const auto folder = WriteFixtureModel(dir.path(), "identity", DenoiseManifest("corrupt"));
  std::ofstream(folder / "model.pt", std::ios::trunc) << "this is not a zip archive";
  EXPECT_NE(LoadError(folder).find("model.pt is not a loadable TorchScript archive"),
            std::string::npos);
}

TEST(TorchModel, MissingArchiveIsRejected) {
  TemporaryFolder dir;
  const auto folder = WriteFixtureModel(dir.path(), "identity", DenoiseManifest("missing"));
  std::filesystem::remove(folder / "model.pt");
  EXPECT_NE(LoadError(folder).find("the archive model.pt named in manifest.json does not exist"),
            std::string::npos);
}

TEST(TorchModel, NonFiniteOutputFailsTheRun) {
  TemporaryFolder dir;
  const auto model =
      TorchModel::Load(WriteFixtureModel(dir.path(), "nan", DenoiseManifest("nan")), Cpu());
  try {
    model->Run(RandomVolume(1, 8, 8), {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
  }
}

TEST(TorchModel, CancellationStopsBetweenBatches) {
  TemporaryFolder dir;
  Json::Value manifest = DenoiseManifest("cancel");
  manifest["max_batch"] = 1;
  const auto model = TorchModel::Load(WriteFixtureModel(dir.path(), "identity", manifest), Cpu());
  int batches = 0;
  RunContext context;
  context.progress = [&](double) { ++batches; };
  context.cancelled = [&] { return batches >= 2; };
  EXPECT_THROW(model->Run(RandomVolume(5, 8, 8), context), Error);
  EXPECT_EQ(batches, 2);
}

TEST(TorchModel, DeviceNames) {
  EXPECT_EQ(ResolveDevice("cpu"), "cpu");
  EXPECT_EQ(ResolveDevice("cuda"), "cuda:0");
  EXPECT_EQ(ResolveDevice("cuda:1"), "cuda:1");
  EXPECT_THROW(ResolveDevice("gpu"), Error);
  EXPECT_EQ(ResolveDevice("auto"), torch::cuda::is_available() ? "cuda:0" : "cpu");
}

TEST(TorchModel, RunsOnCudaWhenAvailable) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: the CUDA path is not tested here";
  TemporaryFolder dir;
  Json::Value manifest = DenoiseManifest("gpu");
  manifest["fp16"] = true;
  InferenceOptions options;
  options.device = "cuda";
  const auto model = TorchModel::Load(WriteFixtureModel(dir.path(), "mean3x3", manifest), options);
  EXPECT_EQ(model->Device(), "cuda:0");
  const Volume input = RandomVolume(4, 64, 64);
  const Volume gpu = model->Run(input, {});
  const auto cpu = TorchModel::Load(dir.path() / "gpu", Cpu());
  const Volume reference = cpu->Run(input, {});
  for (size_t i = 0; i < gpu.voxels.size(); ++i)
    ASSERT_NEAR(gpu.voxels[i], reference.voxels[i], 2.0);
}

TEST(ModelRegistry, LoadsGoodModelsAndReportsBadOnes) {
  TemporaryFolder dir;
  WriteFixtureModel(dir.path(), "identity", DenoiseManifest("good"));
  WriteFixtureModel(dir.path(), "wrong-shape", DenoiseManifest("broken"));
  Json::Value clash = DenoiseManifest("classical-gaussian");
  WriteFixtureModel(dir.path(), "identity", clash);
  ModelRegistry registry;
  const ModelLoadReport report =
      registry.LoadDirectories({dir.path(), dir.path() / "nowhere"}, Cpu());
  EXPECT_EQ(report.loaded, std::vector<std::string>{"good"});
  ASSERT_EQ(report.problems.size(), 3u);
  EXPECT_NE(report.problems[0].folder.find("broken"), std::string::npos);
  EXPECT_NE(report.problems[1].message.find("already used"), std::string::npos);
  EXPECT_NE(report.problems[2].message.find("not a readable folder"), std::string::npos);
  EXPECT_TRUE(registry.Find("good"));
  EXPECT_TRUE(registry.Find("classical-bilateral"));
  EXPECT_EQ(registry.Problems().size(), 3u);
}

TEST(ModelRegistry, AModelFolderLinkedFromOutsideIsIgnored) {
  TemporaryFolder inside;
  TemporaryFolder outside;
  const auto target = WriteFixtureModel(outside.path(), "identity", DenoiseManifest("elsewhere"));
  std::filesystem::create_directory_symlink(target, inside.path() / "linked");
  ModelRegistry registry;
  const ModelLoadReport report = registry.LoadDirectories({inside.path()}, Cpu());
  EXPECT_TRUE(report.loaded.empty());
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_NE(report.problems[0].message.find("resolves outside"), std::string::npos);
  EXPECT_FALSE(registry.Find("elsewhere"));
}

TEST(ModelRegistry, ReloadReplacesModelsWithoutDisturbingThoseInUse) {
  TemporaryFolder dir;
  WriteFixtureModel(dir.path(), "identity", DenoiseManifest("first"));
  ModelRegistry registry;
  registry.LoadDirectories({dir.path()}, Cpu());
  const auto inUse = registry.Get("first");
  std::filesystem::remove_all(dir.path() / "first");
  WriteFixtureModel(dir.path(), "identity", DenoiseManifest("second"));
  registry.LoadDirectories({dir.path()}, Cpu());
  EXPECT_FALSE(registry.Find("first"));
  EXPECT_TRUE(registry.Find("second"));
  // The job holding the old model can still finish with it.
  EXPECT_EQ(inUse->Run(RandomVolume(1, 8, 8), {}).voxels.size(), 64u);
  try {
    registry.Get("first");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("second"), std::string::npos);
  }
}

TEST(ModelRegistry, AModelThatFailedToLoadIsNamedWithItsFileWhenAskedFor) {
  TemporaryFolder dir;
  const auto folder = WriteFixtureModel(dir.path(), "identity", DenoiseManifest("fragile"));
  ModelRegistry registry;
  registry.LoadDirectories({dir.path()}, Cpu());
  std::ofstream(folder / "model.pt", std::ios::binary | std::ios::trunc) << "not a zip archive";
  registry.LoadDirectories({dir.path()}, Cpu());
  try {
    registry.Get("fragile");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    const std::string what = e.what();
    EXPECT_NE(what.find("model 'fragile' is not available"), std::string::npos) << what;
    EXPECT_NE(what.find((folder).string() + ": model.pt is not a loadable TorchScript archive"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("POST /enhance/models/reload"), std::string::npos) << what;
  }
}

}  // namespace enhance

namespace enhance {

// Test-time augmentation: a model that is its own flips and rotations (a symmetric mean
// filter) agrees with itself, gives its plain output and no spread; one that is not (a
// shift) gives the mean of its turned predictions and a spread.
TEST(TorchModel, AugmentationGivesTheSpreadOfFlipsAndRotations) {
  testing::TemporaryFolder dir;
  Json::Value manifest = testing::DenoiseManifest("mean-tta");
  manifest["tile"]["size"] = 32;  // non-square edge tiles turn too
  manifest["tile"]["overlap"] = 8;
  manifest["uncertainty"]["method"] = "augmentation";
  const auto mean =
      TorchModel::Load(testing::WriteFixtureModel(dir.path(), "mean3x3", manifest), Cpu());
  ASSERT_TRUE(mean->ProducesUncertainty());
  const Volume input = RandomVolume(2, 40, 36);
  const Volume plain = mean->Run(input, {});
  Volume spread;
  RunContext context;
  context.uncertainty = &spread;
  const Volume augmented = mean->Run(input, context);
  ASSERT_EQ(spread.voxels.size(), input.voxels.size());
  for (size_t i = 0; i < plain.voxels.size(); ++i) {
    ASSERT_NEAR(augmented.voxels[i], plain.voxels[i], 1e-2) << i;
    ASSERT_LT(spread.voxels[i], 1e-2) << i;
  }

  manifest["name"] = "shift-tta";
  manifest["tile"]["size"] = 0;
  const auto shift =
      TorchModel::Load(testing::WriteFixtureModel(dir.path(), "shift", manifest), Cpu());
  Volume shiftSpread;
  context.uncertainty = &shiftSpread;
  const Volume shifted = shift->Run(input, context);
  const Volume once = shift->Run(input, {});
  EXPECT_NE(shifted.voxels, once.voxels);
  // Each prediction turned back is a shift in one of the four directions, each twice: the
  // mean is the mean of the four neighbours (inside the slice, away from the wrap-around).
  for (int64_t k = 0; k < input.slices; ++k) {
    for (int64_t r = 1; r + 1 < input.rows; ++r) {
      for (int64_t c = 1; c + 1 < input.columns; ++c) {
        const float* x = input.Slice(k);
        const int64_t w = input.columns;
        const double expected =
            (x[r * w + c - 1] + x[r * w + c + 1] + x[(r - 1) * w + c] + x[(r + 1) * w + c]) / 4.0;
        ASSERT_NEAR(shifted.Slice(k)[r * w + c], expected, 1e-2) << k << " " << r << " " << c;
      }
    }
  }
  double largest = 0;
  for (float v : shiftSpread.voxels) largest = std::max(largest, static_cast<double>(v));
  EXPECT_GT(largest, 10.0);  // HU: the four neighbours of a random volume disagree
  // Without the uncertainty asked for, one plain pass.
  EXPECT_FALSE(TorchModel::Load(testing::WriteFixtureModel(dir.path(), "mean3x3",
                                                           testing::DenoiseManifest("plain")),
                                Cpu())
                   ->ProducesUncertainty());
}

}  // namespace enhance

namespace enhance {
namespace {

// The "residual-cnn" fixture with bf16 allowed at `mean` and `p999` tolerances, or not.
std::filesystem::path Bf16Fixture(const TemporaryFolder& dir, const std::string& name,
                                  double mean = 0, double p999 = 0) {
  Json::Value manifest = DenoiseManifest(name);
  manifest["tile"]["size"] = 0;
  if (mean > 0) manifest["low_precision"] = testing::LowPrecisionSection(mean, p999);
  return WriteFixtureModel(dir.path(), "residual-cnn", manifest);
}

// The same network with int8 allowed (alone, or besides bf16), within `mean` and `p999`.
std::filesystem::path Int8Fixture(const TemporaryFolder& dir, const std::string& name, double mean,
                                  double p999, bool bf16 = false) {
  Json::Value manifest = DenoiseManifest(name);
  manifest["tile"]["size"] = 0;
  Json::Value section = testing::LowPrecisionSection(1, 1);
  section["allow"] = Json::Value(Json::arrayValue);
  if (bf16) section["allow"].append("bf16");
  section["allow"].append("int8");
  section["int8_tolerance"]["mean"] = mean;
  section["int8_tolerance"]["p999"] = p999;
  manifest["low_precision"] = section;
  return WriteFixtureModel(dir.path(), "residual-cnn", manifest);
}

double LargestDifference(const Volume& a, const Volume& b) {
  EXPECT_EQ(a.voxels.size(), b.voxels.size());
  double largest = 0;
  for (size_t i = 0; i < a.voxels.size() && i < b.voxels.size(); ++i)
    largest = std::max(largest, static_cast<double>(std::abs(a.voxels[i] - b.voxels[i])));
  return largest;
}

}  // namespace

// A model whose bf16 output drifts beyond its manifest's tolerance runs in float, and says
// why; on a processor without bf16 instructions, float runs and the reason is that.
TEST(TorchModelPrecision, Bf16BeyondTheToleranceIsKeptInFloatWithTheReason) {
  TemporaryFolder dir;
  const auto model = TorchModel::Load(Bf16Fixture(dir, "strict", 1e-9, 1e-9), Cpu());
  const LowPrecisionReport* report = model->LowPrecision();
  ASSERT_NE(report, nullptr);
  EXPECT_EQ(report->runs, "float");
  EXPECT_EQ(model->Parameters().find("bf16"), std::string::npos) << model->Parameters();
  if (CpuHasBf16()) {
    EXPECT_TRUE(report->compared);
    EXPECT_GT(report->meanDeviation, 1e-9);
    EXPECT_NE(report->note.find("deviates from float by a mean of"), std::string::npos)
        << report->note;
    EXPECT_NE(report->note.find("calibration.pt"), std::string::npos) << report->note;
  } else {
    EXPECT_FALSE(report->compared);
    EXPECT_NE(report->note.find("no bf16 instructions"), std::string::npos) << report->note;
  }
}

// Within the tolerance, bf16 runs when it is the fastest version, and its output is close
// to float's; otherwise the note says it was slower.
TEST(TorchModelPrecision, Bf16WithinTheToleranceRunsWhenFaster) {
  if (!CpuHasBf16()) GTEST_SKIP() << "this processor has no bf16 instructions";
  TemporaryFolder dir;
  const auto model = TorchModel::Load(Bf16Fixture(dir, "loose", 0.01, 0.1), Cpu());
  const LowPrecisionReport* report = model->LowPrecision();
  ASSERT_NE(report, nullptr);
  EXPECT_TRUE(report->compared);
  EXPECT_GT(report->meanDeviation, 0);
  EXPECT_LE(report->meanDeviation, 0.01);
  EXPECT_LE(report->meanDeviation, report->p999Deviation);
  EXPECT_GT(report->floatSeconds, 0);
  EXPECT_GT(report->bf16Seconds, 0);
  if (report->runs == "bf16") {
    EXPECT_TRUE(report->note.empty()) << report->note;
    EXPECT_NE(model->Parameters().find("fused convolutions, bf16"), std::string::npos);
  } else {
    EXPECT_NE(report->note.find("not the fastest"), std::string::npos) << report->note;
  }
}

// "float" forces the float path: the output is that of the same network without the
// manifest's section, to the bit; "bf16" forces bf16, whose output stays close to float's.
TEST(TorchModelPrecision, TheOptionsForceEitherPath) {
  TemporaryFolder dir;
  const auto allowed = Bf16Fixture(dir, "allowed", 0.01, 0.1);
  const auto plain = Bf16Fixture(dir, "plain");
  const Volume input = RandomVolume(2, 40, 36);
  InferenceOptions fused = Cpu();
  fused.cpuLayout = "fused";
  const Volume reference = TorchModel::Load(plain, fused)->Run(input, {});
  EXPECT_EQ(TorchModel::Load(plain, fused)->LowPrecision(), nullptr);

  InferenceOptions noBf16 = fused;
  noBf16.precision = "float";
  const auto floatModel = TorchModel::Load(allowed, noBf16);
  ASSERT_NE(floatModel->LowPrecision(), nullptr);
  EXPECT_EQ(floatModel->LowPrecision()->runs, "float");
  EXPECT_NE(floatModel->LowPrecision()->note.find("forced"), std::string::npos);
  EXPECT_EQ(floatModel->Run(input, {}).voxels, reference.voxels);

  InferenceOptions bf16 = Cpu();
  bf16.precision = "bf16";
  const auto lowModel = TorchModel::Load(allowed, bf16);
  EXPECT_EQ(lowModel->LowPrecision()->runs, "bf16");
  EXPECT_NE(lowModel->Parameters().find("bf16"), std::string::npos);
  const Volume low = lowModel->Run(input, {});
  // The window is 2000 HU wide; bfloat16 keeps 8 bits of each activation.
  EXPECT_GT(LargestDifference(low, reference), 0.0);
  EXPECT_LT(LargestDifference(low, reference), 20.0);

  InferenceOptions wrong = Cpu();
  wrong.precision = "fp8";
  EXPECT_THROW(TorchModel::Load(allowed, wrong), Error);
  InferenceOptions plainLayout = Cpu();
  plainLayout.precision = "bf16";
  plainLayout.cpuLayout = "channels-last";
  EXPECT_THROW(TorchModel::Load(allowed, plainLayout), Error);
  // A network without a convolution to fuse cannot run in bf16: said at load.
  Json::Value identity = DenoiseManifest("identity");
  identity["tile"]["size"] = 0;
  try {
    TorchModel::Load(WriteFixtureModel(dir.path(), "identity", identity), bf16);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model 'identity': bf16 was asked for"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("no convolution the fused operator takes"),
              std::string::npos)
        << e.what();
  }
}

// Int8 beyond its own tolerance runs in float, and says why; within it, int8 runs when it is
// the fastest version. Without 8-bit dot-product instructions, the reason is that.
TEST(TorchModelPrecision, Int8IsKeptOnlyWithinItsToleranceAndWhenFaster) {
  TemporaryFolder dir;
  const auto strict = TorchModel::Load(Int8Fixture(dir, "strict", 1e-9, 1e-9), Cpu());
  const LowPrecisionReport* report = strict->LowPrecision();
  ASSERT_NE(report, nullptr);
  EXPECT_EQ(report->runs, "float");
  if (!CpuHasInt8()) {
    EXPECT_FALSE(report->int8.compared);
    EXPECT_NE(report->int8.note.find("no 8-bit dot-product instructions"), std::string::npos)
        << report->int8.note;
    return;
  }
  EXPECT_TRUE(report->int8.compared);
  EXPECT_GT(report->int8.meanDeviation, 1e-9);
  EXPECT_NE(report->int8.note.find("int8 deviates from float by a mean of"), std::string::npos)
      << report->int8.note;
  EXPECT_FALSE(report->compared);  // bf16 is not allowed by this manifest
  EXPECT_TRUE(report->note.empty()) << report->note;

  const auto loose = TorchModel::Load(Int8Fixture(dir, "loose", 0.02, 0.2, true), Cpu());
  report = loose->LowPrecision();
  EXPECT_TRUE(report->int8.compared);
  EXPECT_GT(report->int8.meanDeviation, 0);
  EXPECT_LE(report->int8.meanDeviation, report->int8.p999Deviation);
  EXPECT_GT(report->int8.seconds, 0);
  EXPECT_GT(report->floatSeconds, 0);
  if (report->runs == "int8") {
    EXPECT_TRUE(report->int8.note.empty()) << report->int8.note;
    EXPECT_NE(loose->Parameters().find("fused convolutions, int8"), std::string::npos);
  } else {
    EXPECT_NE(report->int8.note.find("not the fastest"), std::string::npos) << report->int8.note;
  }
}

// When int8 everywhere is beyond its tolerance, the loader keeps in int8 the wide layers that
// cost least, as long as the whole stays within it, and runs the others in bf16 or float.
TEST(TorchModelPrecision, Int8BeyondTheToleranceKeepsTheLayersThatFit) {
  if (!CpuHasInt8()) GTEST_SKIP() << "this processor has no 8-bit dot-product instructions";
  TemporaryFolder dir;
  const auto everywhere = TorchModel::Load(Int8Fixture(dir, "everywhere", 1, 1), Cpu());
  const LowPrecisionReport::Int8 all = everywhere->LowPrecision()->int8;
  ASSERT_TRUE(all.compared);
  ASSERT_GE(all.wideLayers, 2);
  EXPECT_EQ(all.layers, all.wideLayers);
  const double tolerance = 0.6 * all.meanDeviation;
  const auto mixed = TorchModel::Load(Int8Fixture(dir, "mixed", tolerance, 1), Cpu());
  const LowPrecisionReport::Int8 some = mixed->LowPrecision()->int8;
  ASSERT_TRUE(some.compared);
  EXPECT_EQ(some.wideLayers, all.wideLayers);
  ASSERT_GT(some.layers, 0) << some.note;
  EXPECT_LT(some.layers, some.wideLayers);
  EXPECT_LE(some.meanDeviation, tolerance);
  EXPECT_GT(some.meanDeviation, 0);
  if (mixed->LowPrecision()->runs == "int8") {
    EXPECT_NE(
        mixed->Parameters().find("of " + std::to_string(some.wideLayers) + " wide layers in int8"),
        std::string::npos)
        << mixed->Parameters();
  }
  // Below what any one layer costs, int8 does not run, and the note says why.
  const auto none = TorchModel::Load(Int8Fixture(dir, "none", 1e-12, 1e-12), Cpu());
  EXPECT_EQ(none->LowPrecision()->runs, "float");
  EXPECT_NE(none->LowPrecision()->int8.note.find("no wide convolution alone stays within it"),
            std::string::npos)
      << none->LowPrecision()->int8.note;
}

// "int8" forces int8 (calibrated, unchecked), whose output stays close to float's; "float"
// forces float, to the bit.
TEST(TorchModelPrecision, TheOptionsForceInt8OrFloat) {
  TemporaryFolder dir;
  const auto allowed = Int8Fixture(dir, "allowed", 0.02, 0.2);
  const auto plain = Bf16Fixture(dir, "plain");
  const Volume input = RandomVolume(2, 40, 36);
  InferenceOptions fused = Cpu();
  fused.cpuLayout = "fused";
  const Volume reference = TorchModel::Load(plain, fused)->Run(input, {});
  InferenceOptions noInt8 = fused;
  noInt8.precision = "float";
  const auto floatModel = TorchModel::Load(allowed, noInt8);
  EXPECT_EQ(floatModel->LowPrecision()->runs, "float");
  EXPECT_NE(floatModel->LowPrecision()->int8.note.find("forced"), std::string::npos);
  EXPECT_EQ(floatModel->Run(input, {}).voxels, reference.voxels);

  InferenceOptions int8 = Cpu();
  int8.precision = "int8";
  const auto lowModel = TorchModel::Load(allowed, int8);
  EXPECT_EQ(lowModel->LowPrecision()->runs, "int8");
  EXPECT_NE(lowModel->Parameters().find("int8"), std::string::npos);
  const Volume low = lowModel->Run(input, {});
  // The window is 2000 HU wide; 8-bit activations keep steps of a few HU.
  EXPECT_GT(LargestDifference(low, reference), 0.0);
  EXPECT_LT(LargestDifference(low, reference), 60.0);
  InferenceOptions plainLayout = int8;
  plainLayout.cpuLayout = "plain";
  EXPECT_THROW(TorchModel::Load(allowed, plainLayout), Error);
}

// A calibration input that does not fit the network is named at load, on every machine.
TEST(TorchModelPrecision, AWrongCalibrationInputIsNamed) {
  TemporaryFolder dir;
  const auto folder = Bf16Fixture(dir, "miscalibrated", 0.01, 0.1);
  const std::vector<char> bytes = torch::jit::pickle_save(at::rand({2, 3, 32, 32}));
  std::ofstream(folder / "calibration.pt", std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const std::string error = LoadError(folder);
  EXPECT_NE(error.find("calibration.pt"), std::string::npos) << error;
  EXPECT_NE(error.find("[N, 1, H, W]"), std::string::npos) << error;
  std::ofstream(folder / "calibration.pt", std::ios::binary) << "not a tensor";
  EXPECT_NE(LoadError(folder).find("calibration.pt"), std::string::npos);
  std::filesystem::remove(folder / "calibration.pt");
  EXPECT_NE(LoadError(folder).find("does not exist"), std::string::npos);
}

}  // namespace enhance
