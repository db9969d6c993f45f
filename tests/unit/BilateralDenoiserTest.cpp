// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/BilateralDenoiser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

// A 64x64 slice: left half 0 HU, right half 1000 HU, plus Gaussian noise.
Volume StepEdge(int64_t slices, double noise, uint64_t seed = 11) {
  Volume v;
  v.Resize(slices, 64, 64);
  v.units = "HU";
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> gauss(0.0f, static_cast<float>(noise));
  for (int64_t s = 0; s < slices; ++s)
    for (int64_t r = 0; r < 64; ++r)
      for (int64_t c = 0; c < 64; ++c) v.At(s, r, c) = (c < 32 ? 0.0f : 1000.0f) + gauss(rng);
  return v;
}

// Standard deviation of the residual against the noise-free step, inside one half.
double ResidualSigma(const Volume& v, int64_t c0, int64_t c1, float truth) {
  double sum = 0, sum2 = 0;
  int64_t n = 0;
  for (int64_t s = 0; s < v.slices; ++s)
    for (int64_t r = 4; r < 60; ++r)
      for (int64_t c = c0; c < c1; ++c) {
        const double d = v.At(s, r, c) - truth;
        sum += d;
        sum2 += d * d;
        ++n;
      }
  const double mean = sum / static_cast<double>(n);
  return std::sqrt(sum2 / static_cast<double>(n) - mean * mean);
}

}  // namespace

TEST(BilateralDenoiser, EstimatesTheNoiseLevelOfWhiteNoise) {
  const Volume v = StepEdge(1, 30.0);
  // The edge is one column out of 64: the median-based estimate ignores it.
  EXPECT_NEAR(EstimateNoiseSigma(v.Slice(0), v.rows, v.columns), 30.0, 3.0);
}

TEST(BilateralDenoiser, ReducesNoiseAtLeastThreefoldAndKeepsTheEdge) {
  const Volume input = StepEdge(3, 30.0);
  const Volume output = BilateralDenoiser().Run(input, {});
  ASSERT_EQ(output.voxels.size(), input.voxels.size());
  EXPECT_EQ(output.units, "HU");
  // Away from the edge, noise drops well below its original 30 HU.
  EXPECT_LT(ResidualSigma(output, 4, 26, 0.0f), 10.0);
  EXPECT_LT(ResidualSigma(output, 38, 60, 1000.0f), 10.0);
  // The edge stays sharp: the columns right beside it keep their side's level.
  for (int64_t r = 8; r < 56; ++r) {
    EXPECT_NEAR(output.At(1, r, 31), 0.0f, 60.0f) << "row " << r;
    EXPECT_NEAR(output.At(1, r, 32), 1000.0f, 60.0f) << "row " << r;
  }
}

TEST(BilateralDenoiser, ConstantImageIsUnchanged) {
  Volume v;
  v.Resize(2, 20, 20);
  for (float& x : v.voxels) x = -1000.0f;
  const Volume out = BilateralDenoiser().Run(v, {});
  for (float x : out.voxels) ASSERT_FLOAT_EQ(x, -1000.0f);
}

TEST(BilateralDenoiser, BatchSizeDoesNotChangeTheResult) {
  const Volume input = StepEdge(5, 20.0);
  BilateralParameters one;
  one.slicesPerBatch = 1;
  BilateralParameters four;
  four.slicesPerBatch = 4;
  const Volume a = BilateralDenoiser(one).Run(input, {});
  const Volume b = BilateralDenoiser(four).Run(input, {});
  for (size_t i = 0; i < a.voxels.size(); ++i) ASSERT_NEAR(a.voxels[i], b.voxels[i], 1e-3f);
}

TEST(BilateralDenoiser, TinyImagesWork) {
  Volume v;
  v.Resize(1, 2, 3);
  v.voxels = {1, 2, 3, 4, 5, 6};
  const Volume out = BilateralDenoiser().Run(v, {});
  for (float x : out.voxels) EXPECT_TRUE(std::isfinite(x));
}

TEST(BilateralDenoiser, HonoursCancellationAndReportsProgress) {
  const Volume input = StepEdge(4, 20.0);
  BilateralParameters p;
  p.slicesPerBatch = 1;
  int calls = 0;
  double last = 0;
  RunContext context;
  context.progress = [&](double f) {
    ++calls;
    last = f;
  };
  context.cancelled = [&] { return calls >= 2; };
  try {
    BilateralDenoiser(p).Run(input, context);
    FAIL() << "expected cancellation";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_EQ(calls, 2);
  EXPECT_DOUBLE_EQ(last, 0.5);
}

TEST(BilateralDenoiser, DescribesItselfAsADenoiserForCtAndMr) {
  const BilateralDenoiser model;
  EXPECT_EQ(model.Info().name, "classical-bilateral");
  EXPECT_EQ(model.Info().task, "denoise");
  EXPECT_FALSE(model.Info().uid.empty());
  EXPECT_NE(model.Parameters().find("radius 3"), std::string::npos);
}

}  // namespace enhance
