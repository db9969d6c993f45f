// SPDX-License-Identifier: GPL-3.0-or-later
#include "RiskEstimate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

namespace enhance {
namespace {

constexpr int64_t kSide = 128;

// A ramp with a bright square: smooth parts and edges.
std::vector<float> CleanImage() {
  std::vector<float> image(kSide * kSide);
  for (int64_t r = 0; r < kSide; ++r) {
    for (int64_t c = 0; c < kSide; ++c) {
      const bool square = r >= 32 && r < 96 && c >= 40 && c < 88;
      image[static_cast<size_t>(r * kSide + c)] = static_cast<float>(c + (square ? 50 : 0));
    }
  }
  return image;
}

std::vector<float> WithNoise(const std::vector<float>& clean, double sigma, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss(0.0f, static_cast<float>(sigma));
  std::vector<float> noisy = clean;
  for (float& x : noisy) x += gauss(rng);
  return noisy;
}

// 3x3 mean, the border pixels kept.
std::vector<float> Box(const std::vector<float>& image) {
  std::vector<float> out = image;
  for (int64_t r = 1; r + 1 < kSide; ++r) {
    for (int64_t c = 1; c + 1 < kSide; ++c) {
      float sum = 0;
      for (int64_t dr = -1; dr <= 1; ++dr) {
        for (int64_t dc = -1; dc <= 1; ++dc)
          sum += image[static_cast<size_t>((r + dr) * kSide + c + dc)];
      }
      out[static_cast<size_t>(r * kSide + c)] = sum / 9;
    }
  }
  return out;
}

double TrueError(const std::vector<float>& estimate, const std::vector<float>& clean) {
  double sum = 0;
  for (size_t i = 0; i < clean.size(); ++i) sum += std::pow(estimate[i] - clean[i], 2);
  return sum / static_cast<double>(clean.size());
}

// Without the clean image, the estimate finds each denoiser's error within a few percent,
// and ranks a smoothing filter, the noisy image itself and a filter that halves the image.
TEST(RiskEstimate, FindsTheErrorOfDenoisersWithoutTheCleanImage) {
  const std::vector<float> clean = CleanImage();
  const double sigma = 10;
  const std::vector<float> noisy = WithNoise(clean, sigma, 5);
  const std::vector<uint8_t> all(noisy.size(), 1);
  const auto identity = [](const std::vector<float>& y) { return y; };
  const auto half = [](const std::vector<float>& y) {
    std::vector<float> out = y;
    for (float& x : out) x *= 0.5f;
    return out;
  };
  const RiskEstimate asIs = MonteCarloSure(identity, noisy, all, sigma, 1);
  EXPECT_EQ(asIs.pixels, kSide * kSide);
  EXPECT_NEAR(asIs.meanSquaredError, sigma * sigma, 1e-3 * sigma * sigma);
  const RiskEstimate box = MonteCarloSure(Box, noisy, all, sigma, 1);
  EXPECT_NEAR(box.meanSquaredError, TrueError(Box(noisy), clean),
              0.05 * TrueError(Box(noisy), clean));
  const RiskEstimate halved = MonteCarloSure(half, noisy, all, sigma, 1);
  EXPECT_NEAR(halved.meanSquaredError, TrueError(half(noisy), clean),
              0.02 * TrueError(half(noisy), clean));
  EXPECT_LT(box.meanSquaredError, asIs.meanSquaredError);
  EXPECT_LT(asIs.meanSquaredError, halved.meanSquaredError);
}

// The estimate of a blend is quadratic in its weight: at 1 and 0 it is each denoiser's own
// estimate, in between it follows the blend's true error, and its lowest weight is near the
// truly best one, with a lower error than either denoiser alone.
TEST(RiskEstimate, FindsTheErrorOfEveryBlendOfTwoDenoisers) {
  const std::vector<float> clean = CleanImage();
  const double sigma = 10;
  const std::vector<float> noisy = WithNoise(clean, sigma, 7);
  const std::vector<uint8_t> all(noisy.size(), 1);
  const auto identity = [](const std::vector<float>& y) { return y; };
  const BlendRiskEstimate e = MonteCarloSureOfBlend(Box, identity, noisy, all, sigma, 1);
  EXPECT_EQ(e.pixels, kSide * kSide);
  EXPECT_NEAR(e.At(1), MonteCarloSure(Box, noisy, all, sigma, 1).meanSquaredError, 1e-6);
  EXPECT_NEAR(e.At(0), MonteCarloSure(identity, noisy, all, sigma, 1).meanSquaredError, 1e-6);
  const std::vector<float> box = Box(noisy);
  const auto blend = [&](double w) {
    std::vector<float> out(noisy.size());
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<float>(w * box[i] + (1 - w) * noisy[i]);
    return out;
  };
  double truest = 0;
  double lowest = 1e30;
  for (int step = 0; step <= 100; ++step) {
    const double w = step / 100.0;
    const double error = TrueError(blend(w), clean);
    if (step % 25 == 0) {
      EXPECT_NEAR(e.At(w), error, 0.06 * error) << w;
    }
    if (error < lowest) {
      lowest = error;
      truest = w;
    }
  }
  const double best = e.BestWeight();
  EXPECT_GT(best, 0.0);
  EXPECT_LT(best, 1.0);
  EXPECT_NEAR(best, truest, 0.05);
  EXPECT_LT(TrueError(blend(best), clean), 1.01 * lowest);
  EXPECT_LT(e.At(best), std::min(e.At(0), e.At(1)));

  // Pooled by their pixels; two denoisers that agree leave nothing to weigh.
  BlendRiskEstimate pooled = e;
  pooled.Add(e);
  EXPECT_EQ(pooled.pixels, 2 * e.pixels);
  EXPECT_NEAR(pooled.At(best), e.At(best), 1e-9);
  EXPECT_EQ(MonteCarloSureOfBlend(Box, Box, noisy, all, sigma, 1).BestWeight(), 0.0);
  EXPECT_EQ(MonteCarloSureOfBlend(Box, identity, noisy, all, 0, 1).pixels, 0);
}

// Pixels not counted (padding) are neither perturbed nor scored; no noise, no estimate.
TEST(RiskEstimate, SkipsPaddingAndNoiselessImages) {
  const std::vector<float> noisy = WithNoise(CleanImage(), 10, 6);
  std::vector<uint8_t> counted(noisy.size(), 0);
  for (size_t i = 0; i < counted.size() / 2; ++i) counted[i] = 1;
  std::vector<float> seen;
  const auto record = [&seen](const std::vector<float>& y) {
    if (!seen.empty()) {
      for (size_t i = y.size() / 2; i < y.size(); ++i) EXPECT_EQ(y[i], seen[i]);
    }
    seen = y;
    return y;
  };
  EXPECT_EQ(MonteCarloSure(record, noisy, counted, 10, 1).pixels, kSide * kSide / 2);
  EXPECT_EQ(MonteCarloSure(record, noisy, counted, 0, 1).pixels, 0);
  EXPECT_THROW(MonteCarloSure(record, noisy, std::vector<uint8_t>(3, 1), 10, 1),
               std::invalid_argument);
}

}  // namespace
}  // namespace enhance
