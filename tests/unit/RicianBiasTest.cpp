// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/RicianBias.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace enhance {
namespace {

double SampledMean(double signal, double sigma, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> gauss(0.0, sigma);
  double sum = 0;
  constexpr int kSamples = 400000;
  for (int i = 0; i < kSamples; ++i) sum += std::hypot(signal + gauss(rng), gauss(rng));
  return sum / kSamples;
}

// The mean follows sampled magnitudes, from pure noise (sqrt(pi / 2) sigma) to a strong
// signal (sqrt(x^2 + sigma^2)), and rises with the signal.
TEST(RicianBias, TheMeanFollowsSampledMagnitudes) {
  EXPECT_NEAR(RicianMeanOverSigma(0), std::sqrt(M_PI / 2), 1e-9);
  for (double snr : {0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 20.0}) {
    EXPECT_NEAR(RicianMeanOverSigma(snr), SampledMean(snr * 10, 10, 3) / 10, 0.01) << snr;
  }
  double previous = 0;
  for (double snr = 0; snr < 30; snr += 0.05) {
    const double m = RicianMeanOverSigma(snr);
    EXPECT_GT(m, previous) << snr;
    EXPECT_GE(m, snr);
    previous = m;
  }
  // Both sides of the switch to the asymptote agree.
  EXPECT_NEAR(RicianMeanOverSigma(12.6), RicianMeanOverSigma(12.7), 0.11);
}

// The inverse gives back the signal from its magnitude's mean, 0 at or below pure noise's,
// and leaves values alone where there is no noise.
TEST(RicianBias, TheInverseGivesTheSignalBack) {
  const double sigma = 25;
  for (double snr : {0.05, 0.3, 1.0, 2.5, 6.0, 9.99, 10.5, 40.0}) {
    const auto mean = static_cast<float>(sigma * RicianMeanOverSigma(snr));
    EXPECT_NEAR(UnbiasedRicianSignal(mean, sigma), snr * sigma, 1e-3 * sigma) << snr;
  }
  EXPECT_EQ(UnbiasedRicianSignal(static_cast<float>(sigma * std::sqrt(M_PI / 2)), sigma), 0.0f);
  EXPECT_EQ(UnbiasedRicianSignal(3.0f, sigma), 0.0f);
  EXPECT_EQ(UnbiasedRicianSignal(123.0f, 0), 123.0f);
}

// A disc of signal in a background of Rician noise, the background set to 0, or no
// background at all.
Volume Disc(double sigma, double background, bool noisyBackground, double radius) {
  Volume v;
  v.Resize(4, 64, 64);
  std::mt19937 rng(11);
  std::normal_distribution<double> gauss(0.0, sigma);
  for (int64_t s = 0; s < v.slices; ++s) {
    for (int64_t r = 0; r < v.rows; ++r) {
      for (int64_t c = 0; c < v.columns; ++c) {
        const bool inside = std::hypot(r - 32.0, c - 32.0) < radius;
        const double x = inside ? 400.0 : background;
        float& value = v.Slice(s)[r * v.columns + c];
        value = static_cast<float>(
            inside || noisyBackground ? std::hypot(x + gauss(rng), gauss(rng)) : background);
      }
    }
  }
  return v;
}

TEST(RicianBias, TellsABackgroundOfPureRicianNoise) {
  EXPECT_TRUE(HasRicianBackground(Disc(20, 0, true, 20), 20));
  EXPECT_TRUE(HasRicianBackground(Disc(20, 0, true, 20), 18));    // measured a little low
  EXPECT_FALSE(HasRicianBackground(Disc(20, 0, true, 20), 40));   // twice the noise
  EXPECT_FALSE(HasRicianBackground(Disc(20, 0, true, 20), 10));   // half of it
  EXPECT_FALSE(HasRicianBackground(Disc(20, 0, false, 20), 20));  // set to 0
  EXPECT_FALSE(HasRicianBackground(Disc(20, 0, true, 100), 20));  // no background
  EXPECT_FALSE(HasRicianBackground(Disc(20, 0, true, 20), 0));
}

}  // namespace
}  // namespace enhance
