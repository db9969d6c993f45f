// SPDX-License-Identifier: GPL-3.0-or-later
//
// The noise power spectrum against analytic cases: white noise is flat at its variance,
// binomially filtered noise follows the filter's squared transfer function, a cosine peaks
// at its frequency, and the area is the variance of the masked pixels (Parseval).
#include "enhance/quality/NoisePowerSpectrum.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

constexpr double kPi = 3.14159265358979323846;

Volume WhiteNoise(int64_t slices, int64_t size, double sigma, uint32_t seed) {
  Volume v;
  v.Resize(slices, size, size);
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, static_cast<float>(sigma));
  for (float& x : v.voxels) x = noise(rng);
  return v;
}

// [1 2 1] / 4 along rows and columns, wrapping around: transfer cos^2(pi f) per axis.
Volume Binomial(const Volume& in) {
  Volume out = in;
  const int64_t n = in.rows;
  for (int64_t s = 0; s < in.slices; ++s) {
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        double sum = 0;
        for (int dr = -1; dr <= 1; ++dr) {
          for (int dc = -1; dc <= 1; ++dc) {
            sum += in.At(s, (r + dr + n) % n, (c + dc + n) % n) * (dr ? 1 : 2) * (dc ? 1 : 2);
          }
        }
        out.At(s, r, c) = static_cast<float>(sum / 16);
      }
    }
  }
  return out;
}

// Variance of the masked voxels with each slice's masked mean removed.
double MaskedVariance(const Volume& v, const std::vector<uint8_t>& mask) {
  double squares = 0;
  int64_t count = 0;
  for (int64_t s = 0; s < v.slices; ++s) {
    double sum = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < v.VoxelsPerSlice(); ++i) {
      if (mask[s * v.VoxelsPerSlice() + i]) sum += v.Slice(s)[i], ++n;
    }
    for (int64_t i = 0; i < v.VoxelsPerSlice(); ++i) {
      if (mask[s * v.VoxelsPerSlice() + i]) squares += std::pow(v.Slice(s)[i] - sum / n, 2);
    }
    count += n;
  }
  return squares / static_cast<double>(count);
}

}  // namespace

TEST(NoisePowerSpectrum, WhiteNoiseIsFlatAtItsVariance) {
  const Volume noise = WhiteNoise(8, 128, 10.0, 1);
  const NoisePowerSpectrum nps = ComputeNoisePowerSpectrum(noise, {}, 16);
  ASSERT_EQ(nps.power.size(), 16u);
  EXPECT_EQ(nps.pixels, 8 * 128 * 128);
  EXPECT_NEAR(nps.area, 100.0, 3.0);
  EXPECT_NEAR(nps.frequency.front(), 0.5 / 32, 1e-12);
  EXPECT_NEAR(nps.frequency.back(), 0.5 - 0.5 / 32, 1e-12);
  double mean = 0;
  for (size_t b = 0; b < nps.power.size(); ++b) {
    EXPECT_NEAR(nps.power[b], 100.0, 15.0) << "ring " << b;
    mean += nps.power[b] / 16;
  }
  EXPECT_NEAR(mean, 100.0, 4.0);
  // The mean distance from the centre of the unit square: (sqrt(2) + asinh(1)) / 6.
  EXPECT_NEAR(nps.meanFrequency, (std::sqrt(2.0) + std::asinh(1.0)) / 6, 0.005);
}

TEST(NoisePowerSpectrum, FilteredNoiseFollowsTheSquaredTransferFunction) {
  const Volume noise = Binomial(WhiteNoise(8, 128, 10.0, 2));
  const NoisePowerSpectrum nps = ComputeNoisePowerSpectrum(noise, {}, 16);
  // Variance 100 times the sum of the squared weights: (6/16)^2.
  EXPECT_NEAR(nps.area, 100.0 * 0.140625, 0.6);
  EXPECT_NEAR(nps.peakFrequency, nps.frequency.front(), 1e-12);
  EXPECT_LT(nps.meanFrequency, 0.2);
  // Along an axis, 100 cos^4(pi f); rings average over directions, so compare loosely.
  for (double f : {0.11, 0.2}) {
    const double axis = 100.0 * std::pow(std::cos(kPi * f), 4);
    const double diagonal = 100.0 * std::pow(std::cos(kPi * f / std::sqrt(2.0)), 8);
    EXPECT_LT(PowerAt(nps, f), 1.15 * std::max(axis, diagonal)) << f;
    EXPECT_GT(PowerAt(nps, f), 0.85 * std::min(axis, diagonal)) << f;
  }
  EXPECT_LT(PowerAt(nps, 0.45), 0.05 * PowerAt(nps, 0.05));
}

TEST(NoisePowerSpectrum, ACosinePeaksAtItsFrequency) {
  Volume v;
  v.Resize(2, 64, 64);
  for (int64_t s = 0; s < 2; ++s) {
    for (int64_t r = 0; r < 64; ++r) {
      for (int64_t c = 0; c < 64; ++c) v.At(s, r, c) = 3.0f * std::cos(2 * kPi * 0.25 * c) + 7;
    }
  }
  const NoisePowerSpectrum nps = ComputeNoisePowerSpectrum(v, {}, 32);
  EXPECT_NEAR(nps.peakFrequency, 0.25, 0.5 / 32);
  EXPECT_NEAR(nps.meanFrequency, 0.25, 1e-9);
  EXPECT_NEAR(nps.area, 4.5, 1e-4);  // amplitude^2 / 2; the offset 7 is removed
}

TEST(NoisePowerSpectrum, AreaIsTheVarianceOfTheMaskedPixels) {
  Volume v = Binomial(WhiteNoise(3, 96, 5.0, 3));
  std::vector<uint8_t> mask(v.voxels.size(), 0);
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t r = 20; r < 80; ++r) {
      for (int64_t c = 10 + s; c < 60; ++c) {
        mask[(s * 96 + r) * 96 + c] = 1;
        v.At(s, r, c) += 50.0f * static_cast<float>(s);  // an offset per slice, removed
      }
    }
  }
  for (int64_t i = 0; i < 96; ++i) v.At(0, 0, i) = 1e4f;  // outside the mask: ignored
  const NoisePowerSpectrum nps = ComputeNoisePowerSpectrum(v, mask);
  EXPECT_EQ(nps.pixels, 60 * 50 + 60 * 49 + 60 * 48);
  EXPECT_NEAR(nps.area, MaskedVariance(v, mask), 1e-9 * nps.area);
}

TEST(NoisePowerSpectrum, RejectsBadInput) {
  const Volume v = WhiteNoise(1, 16, 1.0, 4);
  EXPECT_THROW(ComputeNoisePowerSpectrum(Volume{}, {}), Error);
  EXPECT_THROW(ComputeNoisePowerSpectrum(v, std::vector<uint8_t>(10, 1)), Error);
  EXPECT_THROW(ComputeNoisePowerSpectrum(v, std::vector<uint8_t>(256, 0)), Error);
  EXPECT_THROW(ComputeNoisePowerSpectrum(v, {}, 0), Error);
  Volume other = v;
  other.Resize(1, 16, 8);
  EXPECT_THROW(Difference(v, other), Error);
  EXPECT_FLOAT_EQ(Difference(v, v).voxels[5], 0.0f);
}

}  // namespace enhance
