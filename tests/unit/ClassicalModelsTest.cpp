// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/ClassicalModels.h"

#include <gtest/gtest.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <set>

#include "SliceEngine.h"
#include "enhance/base/Error.h"
#include "enhance/inference/ModelRegistry.h"
#include "enhance/inference/SelfSupervisedDenoiser.h"

namespace enhance {
namespace {

Volume Ramp(int64_t slices, int64_t rows, int64_t columns) {
  Volume v;
  v.Resize(slices, rows, columns);
  for (int64_t s = 0; s < slices; ++s) {
    v.geometry.slicePositions.push_back({0, 0, 3.0 * s});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < columns; ++c) v.At(s, r, c) = static_cast<float>(10 * s + r + 2 * c);
  }
  return v;
}

}  // namespace

TEST(ClassicalModels, RegistryHoldsEveryBuiltinModelOnce) {
  ModelRegistry registry;
  std::set<std::string> names;
  for (const auto& model : registry.List()) {
    EXPECT_TRUE(names.insert(model->Info().name).second);
    EXPECT_FALSE(model->Info().uid.empty());
    EXPECT_FALSE(model->Info().intendedUse.empty());
  }
  EXPECT_EQ(names, (std::set<std::string>{"classical-bilateral", "classical-gaussian",
                                          "classical-bicubic-x2", "classical-bicubic-x4",
                                          "classical-linear-z2", "self-supervised-denoise"}));
}

TEST(ClassicalModels, ABuiltinModelCanBeConfiguredOtherwise) {
  ModelRegistry registry;
  SelfSupervisedParameters p;
  p.steps = 12;
  registry.ReplaceBuiltin(std::make_shared<SelfSupervisedDenoiser>(p));
  EXPECT_NE(registry.Get("self-supervised-denoise")->Parameters().find("12 steps"),
            std::string::npos);
  EXPECT_EQ(registry.List().size(), 6u);
  registry.ReplaceBuiltin(MakeGaussianDenoiser(2.0));
  EXPECT_EQ(registry.Get("classical-gaussian")->Parameters(), "sigma 2.00 px");
}

TEST(ClassicalModels, GaussianKeepsALinearRampAwayFromTheBorder) {
  const Volume input = Ramp(1, 20, 20);
  const Volume output = MakeGaussianDenoiser(1.0)->Run(input, {});
  for (int64_t r = 4; r < 16; ++r)
    for (int64_t c = 4; c < 16; ++c) ASSERT_NEAR(output.At(0, r, c), input.At(0, r, c), 1e-3);
}

TEST(ClassicalModels, BicubicKeepsTheFieldOfView) {
  const Volume input = Ramp(2, 12, 10);
  const Volume output = MakeBicubicUpsampler(2)->Run(input, {});
  ASSERT_EQ(output.rows, 24);
  ASSERT_EQ(output.columns, 20);
  // Each input pixel is covered by a 2x2 block of output pixels placed symmetrically
  // around its centre (no half-pixel shift): on a linear ramp the block's mean is the
  // input value.
  for (int64_t r = 2; r < 10; ++r) {
    for (int64_t c = 2; c < 8; ++c) {
      const double mean = (output.At(1, 2 * r, 2 * c) + output.At(1, 2 * r + 1, 2 * c) +
                           output.At(1, 2 * r, 2 * c + 1) + output.At(1, 2 * r + 1, 2 * c + 1)) /
                          4;
      ASSERT_NEAR(mean, input.At(1, r, c), 1e-3) << r << "," << c;
    }
  }
}

TEST(ClassicalModels, LinearThroughPlaneAveragesNeighbours) {
  const Volume input = Ramp(3, 4, 4);
  const Volume output = MakeLinearThroughPlane()->Run(input, {});
  ASSERT_EQ(output.slices, 5);
  EXPECT_NEAR(output.At(1, 2, 2), 5 + 2 + 4, 1e-4);
  EXPECT_NEAR(output.At(3, 0, 0), 15, 1e-4);
  EXPECT_DOUBLE_EQ(output.geometry.slicePositions[3][2], 4.5);
}

TEST(SliceEngine, TilesCoverTheAxisAndEndAtTheBorder) {
  EXPECT_EQ(TileStarts(100, 0, 0), std::vector<int64_t>{0});
  EXPECT_EQ(TileStarts(50, 64, 8), std::vector<int64_t>{0});
  EXPECT_EQ(TileStarts(100, 40, 10), (std::vector<int64_t>{0, 30, 60}));
  EXPECT_EQ(TileStarts(101, 40, 10), (std::vector<int64_t>{0, 30, 60, 61}));
}

TEST(SliceEngine, BlendRampIsZeroNearInnerEdgesAndOneInside) {
  const std::vector<float> w = BlendRamp(16, 8, 0);
  EXPECT_LT(w[0], 1e-5f);
  EXPECT_LT(w[1], 1e-5f);
  EXPECT_GT(w[3], 0.0f);
  EXPECT_LT(w[3], 1.0f);
  EXPECT_EQ(w[6], 1.0f);
  EXPECT_EQ(w[15], 1.0f);  // the image border needs no ramp
}

}  // namespace enhance

namespace enhance {

// In place, each output slice is written over its input slice: same result as a separate
// output volume, with tiles and a volume-wide (percentile) normalisation. A run stopped
// part-way by running out of memory resumes with the slices it finished and the
// normalisation of the untouched input, and ends with the same result.
TEST(SliceEngine, InPlaceRunEqualsASeparateOutputAndResumesAfterAFailure) {
  ModelSpec spec;
  spec.name = "nonlinear";
  spec.input.method = Normalization::Method::kPercentile;
  spec.input.low = 1;
  spec.input.high = 99;
  spec.tileSize = 8;
  spec.tileOverlap = 4;
  spec.maxBatch = 1;  // out of memory at a batch of one is not retried by the engine
  ASSERT_TRUE(CanRunInPlace(spec));
  int calls = 0;
  int failAt = -1;
  const SliceFunction function = [&](const at::Tensor& batch) {
    if (++calls == failAt) TORCH_CHECK(false, "DefaultCPUAllocator: not enough memory");
    return at::tanh(batch * 1.5) + 0.25 * batch;
  };
  Volume input = Ramp(7, 13, 11);
  for (size_t i = 0; i < input.voxels.size(); i += 7) input.voxels[i] *= -1.5f;
  EngineOptions options;
  const Volume expected = RunSliceEngine(input, spec, function, options, {});

  Volume volume = input;
  EngineResume resume;
  RunSliceEngineInPlace(volume, spec, function, options, {}, resume);
  EXPECT_EQ(volume.voxels, expected.voxels);

  // Fails at the 13th batch: 6 tiles of 8x8 cover a 13x11 slice, one slice per batch, so
  // slices 0 and 1 are finished and written over their input.
  volume = input;
  resume = EngineResume();
  calls = 0;
  failAt = 13;
  try {
    RunSliceEngineInPlace(volume, spec, function, options, {}, resume);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("out of memory", 0), 0u) << e.what();
  }
  ASSERT_EQ(resume.finished.size(), 7u);
  EXPECT_TRUE(resume.finished[0] && resume.finished[1]);
  EXPECT_FALSE(resume.finished[2]);
  failAt = -1;
  RunSliceEngineInPlace(volume, spec, function, options, {}, resume);
  EXPECT_EQ(volume.voxels, expected.voxels);

  // Models whose output slice needs other input slices cannot run in place.
  ModelSpec context = spec;
  context.sliceContext = 1;
  EXPECT_FALSE(CanRunInPlace(context));
  EngineResume unused;
  EXPECT_THROW(RunSliceEngineInPlace(volume, context, function, options, {}, unused), Error);
}

}  // namespace enhance
