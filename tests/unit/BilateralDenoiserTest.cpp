// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/BilateralDenoiser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

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

// A 256x256 slice: a 1000 HU disc in a 0 HU background, plus noise of deviation `sigma`
// that is white (smoothing 0) or spatially correlated: white noise blurred by a Gaussian of
// `smoothing` pixels, then scaled back to `sigma`.
Volume DiscWithNoise(double sigma, double smoothing, uint64_t seed) {
  constexpr int64_t n = 256;
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<double> noise(n * n);
  for (double& x : noise) x = gauss(rng);
  if (smoothing > 0) {
    const int64_t radius = static_cast<int64_t>(std::ceil(4 * smoothing));
    std::vector<double> kernel;
    double squares = 0;
    for (int64_t k = -radius; k <= radius; ++k) {
      kernel.push_back(std::exp(-0.5 * static_cast<double>(k * k) / (smoothing * smoothing)));
    }
    for (double a : kernel)
      for (double b : kernel) squares += a * a * b * b;
    const auto pass = [&](int64_t step, int64_t across) {
      std::vector<double> out(n * n, 0.0);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
          for (int64_t k = -radius; k <= radius; ++k) {
            const int64_t m = (j + k + n) % n;  // periodic: no border effect on the statistics
            out[i * across + j * step] += kernel[k + radius] * noise[i * across + m * step];
          }
      noise = out;
    };
    pass(1, n);  // along rows
    pass(n, 1);  // along columns
    for (double& x : noise) x /= std::sqrt(squares);
  }
  Volume v;
  v.Resize(1, n, n);
  v.units = "HU";
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c) {
      const bool inside = (r - 128) * (r - 128) + (c - 128) * (c - 128) < 80 * 80;
      v.At(0, r, c) = static_cast<float>((inside ? 1000.0 : 0.0) + sigma * noise[r * n + c]);
    }
  return v;
}

}  // namespace

TEST(BilateralDenoiser, EstimatesTheNoiseLevelOfCorrelatedNoise) {
  // Correlated noise (as CT's filtered back-projection makes) hides from a mask with
  // adjacent taps: at a correlation length of 1.5 px it sees a fraction of it. The
  // estimate the filter uses widens the mask until it sees all of it.
  for (const double smoothing : {0.0, 0.5, 0.7, 1.0, 1.5}) {
    for (const uint64_t seed : {1u, 2u, 3u}) {
      const Volume v = DiscWithNoise(30.0, smoothing, seed);
      const double adjacent = EstimateNoiseSigmaAtSpacing(v.Slice(0), v.rows, v.columns, 1);
      const double estimate = EstimateNoiseSigma(v.Slice(0), v.rows, v.columns);
      EXPECT_NEAR(estimate, 30.0, 4.5) << "smoothing " << smoothing << ", seed " << seed;
      // The spacing it was taken at: 1 for white noise, wider for correlated noise.
      const int64_t spacing = EstimateNoise(v.Slice(0), v.rows, v.columns).spacing;
      if (smoothing == 0.0) {
        EXPECT_EQ(spacing, 1);
      } else if (smoothing >= 1.0) {
        EXPECT_GE(spacing, 2);
      }
      if (smoothing >= 1.0) {
        EXPECT_LT(adjacent, 15.0) << "smoothing " << smoothing;
      }
    }
  }
}

// Residual deviation against the noise-free disc, away from its edge, relative to the input's.
double RemainingNoise(const Volume& input, const Volume& output) {
  double before = 0, after = 0;
  for (int64_t r = 4; r < 252; ++r)
    for (int64_t c = 4; c < 252; ++c) {
      const int64_t d2 = (r - 128) * (r - 128) + (c - 128) * (c - 128);
      if (d2 < 76 * 76 || d2 > 84 * 84) {
        const double truth = d2 < 80 * 80 ? 1000.0 : 0.0;
        before += std::pow(input.At(0, r, c) - truth, 2);
        after += std::pow(output.At(0, r, c) - truth, 2);
      }
    }
  return std::sqrt(after / before);
}

TEST(BilateralDenoiser, FiltersCorrelatedNoiseWithARangeSetByItsWholeDeviation) {
  for (const double smoothing : {0.0, 0.5, 0.7, 1.0}) {
    const Volume input = DiscWithNoise(30.0, smoothing, 7);
    const double adjacent = EstimateNoiseSigmaAtSpacing(input.Slice(0), 256, 256, 1);
    const double estimate = EstimateNoiseSigma(input.Slice(0), 256, 256);
    // The same filter with its range set from the white-noise estimate, as it was.
    BilateralParameters whiteNoiseRange;
    whiteNoiseRange.rangeFactor *= adjacent / estimate;
    const double now = RemainingNoise(input, BilateralDenoiser().Run(input, {}));
    const double before = RemainingNoise(input, BilateralDenoiser(whiteNoiseRange).Run(input, {}));
    // Measured: white noise 0.27 either way; correlated over 0.5, 0.7 and 1 px: 0.44, 0.81
    // and 0.98 of the noise remained with the white-noise range, 0.35, 0.49 and 0.62 now.
    if (smoothing == 0.0) {
      EXPECT_NEAR(now, before, 1e-6);
      EXPECT_LT(now, 0.35);
    } else {
      EXPECT_LT(now, 0.65) << "smoothing " << smoothing;
      EXPECT_LT(now, before - (smoothing >= 0.7 ? 0.25 : 0.05)) << "smoothing " << smoothing;
    }
  }
}

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
