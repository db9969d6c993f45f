// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/SelfSupervisedDenoiser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "enhance/base/Error.h"
#include "enhance/inference/BilateralDenoiser.h"
#include "enhance/samples/Phantom.h"

namespace enhance {
namespace {

// Small and quick: a few seconds of training on two cores. The network's result stands
// wherever it beats its held-out baseline (the comparison with the bilateral filter has
// tests of its own).
SelfSupervisedParameters Quick() {
  SelfSupervisedParameters p;
  p.compareWithBilateral = false;
  p.steps = 120;
  p.batch = 8;
  p.patch = 32;
  p.features = 16;
  p.layers = 4;
  p.augmentations = 2;
  p.device = "cpu";
  return p;
}

// A context whose learned() keeps what the model learned in `report`.
RunContext Recording(LearningReport& report) {
  RunContext context;
  context.learned = [&report](const LearningReport& r) { report = r; };
  return context;
}

// 16 slices of 96x96, 2.5 mm apart and thick, without noise. `changing`: the whole
// phantom, whose anatomy goes from thorax to abdomen over the 16 slices (much faster than
// a body's); otherwise its middle slice 16 times (the same anatomy in every slice).
Volume Clean(bool changing = false, int64_t size = 96) {
  PhantomOptions o;
  o.rows = size;
  o.columns = size;
  o.slices = 16;
  o.pixelSpacing = 4.0 * 96 / static_cast<double>(size);
  o.sliceSpacing = 2.5;
  Volume v = MakeCtPhantom(o);
  if (changing) return v;
  for (int64_t s = 0; s < v.slices; ++s) {
    if (s != 8) std::copy(v.Slice(8), v.Slice(9), v.Slice(s));
  }
  return v;
}

// Noise of deviation `sigma`, independent between slices; within a slice white
// (smoothing 0) or correlated (blurred by a 3-tap kernel along rows and columns, then
// scaled back to `sigma`), as CT's filtered back-projection leaves it.
Volume WithNoise(const Volume& clean, double sigma, bool correlated, uint64_t seed) {
  Volume v = clean;
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> n(static_cast<size_t>(v.VoxelsPerSlice()));
  std::vector<float> m(n.size());
  for (int64_t s = 0; s < v.slices; ++s) {
    for (float& x : n) x = gauss(rng);
    double gain = 1.0;
    if (correlated) {
      for (int pass = 0; pass < 2; ++pass) {  // rows, then columns
        for (int64_t r = 0; r < v.rows; ++r) {
          for (int64_t c = 0; c < v.columns; ++c) {
            const auto at = [&](int64_t rr, int64_t cc) {
              rr = std::clamp<int64_t>(rr, 0, v.rows - 1);
              cc = std::clamp<int64_t>(cc, 0, v.columns - 1);
              return n[static_cast<size_t>(rr * v.columns + cc)];
            };
            m[static_cast<size_t>(r * v.columns + c)] =
                pass == 0 ? 0.25f * at(r, c - 1) + 0.5f * at(r, c) + 0.25f * at(r, c + 1)
                          : 0.25f * at(r - 1, c) + 0.5f * at(r, c) + 0.25f * at(r + 1, c);
          }
        }
        n.swap(m);
      }
      gain = 1.0 / (0.375 * 1.0);  // each pass keeps sqrt(0.375) of the deviation
    }
    float* slice = v.Slice(s);
    for (size_t i = 0; i < n.size(); ++i) slice[i] += static_cast<float>(sigma * gain) * n[i];
  }
  return v;
}

// The phantom's 16 slices with a smooth ramp for anatomy, whose noise level and
// correlation EstimateNoise can tell (on the phantom's dense 96x96 grid it cannot).
Volume Smooth() {
  Volume v = Clean();
  for (int64_t s = 0; s < v.slices; ++s) {
    for (int64_t p = 0; p < v.VoxelsPerSlice(); ++p) {
      v.Slice(s)[p] = static_cast<float>(4 * (p % v.columns + p / v.columns));
    }
  }
  return v;
}

// The same anatomy in every slice, its contrast changing quadratically along the series
// (as during a contrast injection): the second difference between neighbours is the
// anatomy scaled by 2 x `gain`, enough for the blind spot; the difference of slice k's
// neighbours is the dense anatomy scaled by 4 (k - 8) x `gain`, whose structure decides
// the noise's estimate at every spacing.
Volume Enhancing(double gain) {
  Volume v = Clean();
  for (int64_t s = 0; s < v.slices; ++s) {
    const double scale = gain * static_cast<double>((s - 8) * (s - 8)) / 1000.0;
    for (int64_t p = 0; p < v.VoxelsPerSlice(); ++p) {
      v.Slice(s)[p] += static_cast<float>(scale * (v.Slice(s)[p] + 1000.0));
    }
  }
  return v;
}

double Rmse(const Volume& a, const Volume& b) {
  double sum = 0;
  for (size_t i = 0; i < a.voxels.size(); ++i) {
    const double d = a.voxels[i] - b.voxels[i];
    sum += d * d;
  }
  return std::sqrt(sum / static_cast<double>(a.voxels.size()));
}

TEST(SelfSupervisedDenoiser, PlansPairsThatNeverReadAHeldOutSlice) {
  const NeighbourPairs pairs = PlanNeighbourPairs(40, 16);
  EXPECT_EQ(pairs.heldOut, (std::vector<int64_t>{8, 24}));
  ASSERT_FALSE(pairs.training.empty());
  for (const int64_t k : pairs.training) {
    EXPECT_GE(k, 1);
    EXPECT_LE(k, 38);  // slice 39 has no neighbour above it
    for (const int64_t h : pairs.heldOut) {
      // The triples (k - 1, k, k + 1) and (h - 1, h, h + 1) share no slice.
      EXPECT_GT(std::abs(k - h), 2) << "training pair " << k << " reads held-out pair " << h;
    }
  }
  // Every other centre trains: 1..38 without 6..10 and 22..26.
  EXPECT_EQ(pairs.training.size(), 38u - 10u);
}

TEST(SelfSupervisedDenoiser, HoldsNothingOutOfAShortSeries) {
  const NeighbourPairs five = PlanNeighbourPairs(5, 16);
  EXPECT_TRUE(five.heldOut.empty());
  EXPECT_EQ(five.training, (std::vector<int64_t>{1, 2, 3}));
  // Holding slice 2 of 5 out would leave no training pair: nothing is held out.
  const NeighbourPairs held = PlanNeighbourPairs(5, 4);
  EXPECT_TRUE(held.heldOut.empty());
  EXPECT_EQ(held.training.size(), 3u);
  EXPECT_TRUE(PlanNeighbourPairs(2, 16).training.empty());
}

TEST(SelfSupervisedDenoiser, LearnsOnlyFromSlicesThatDoNotOverlap) {
  Geometry g;
  g.sliceSpacing = 2.5;
  g.sliceThickness = 2.5;
  EXPECT_EQ(WhyNeighboursShareNoise(g, 10), "");
  g.sliceThickness = 2.52;  // rounded values
  EXPECT_EQ(WhyNeighboursShareNoise(g, 10), "");
  g.sliceThickness = 1.0;  // gaps between slices
  EXPECT_EQ(WhyNeighboursShareNoise(g, 10), "");
  g.sliceThickness = 5.0;
  EXPECT_NE(WhyNeighboursShareNoise(g, 10).find("overlap (2.5 mm apart, 5 mm thick)"),
            std::string::npos);
  g.sliceThickness = 0.0;
  EXPECT_NE(WhyNeighboursShareNoise(g, 10).find("thickness is unknown"), std::string::npos);
  g.sliceThickness = 2.5;
  EXPECT_NE(WhyNeighboursShareNoise(g, 2).find("2 slices"), std::string::npos);
}

TEST(SelfSupervisedDenoiser, RemovesWhiteAndCorrelatedNoiseItLearnedFromTheSeriesItself) {
  const Volume clean = Clean();
  for (const bool correlated : {false, true}) {
    const Volume noisy = WithNoise(clean, 40.0, correlated, 5);
    LearningReport report;
    RunContext context = Recording(report);
    SelfSupervisedParameters p = Quick();
    p.steps = correlated ? 300 : 120;
    const Volume output = SelfSupervisedDenoiser(p).Run(noisy, context);
    const double before = Rmse(noisy, clean);
    const double after = Rmse(output, clean);
    EXPECT_NEAR(before, 40.0, 2.5);
    EXPECT_LT(after, 0.75 * before) << (correlated ? "correlated" : "white") << " noise";
    EXPECT_LT(report.anatomyToNoise, 0.1);  // the same anatomy in every slice
    EXPECT_TRUE(report.applied) << report.fallback;
    EXPECT_LT(report.heldOutLoss, report.heldOutInputLoss);
    EXPECT_EQ(report.steps, p.steps);
    EXPECT_EQ(report.heldOutSlices, 1);  // slice 8 of 16
    EXPECT_FALSE(report.curve.empty());
    EXPECT_EQ(report.curve.back().step, p.steps);
    EXPECT_EQ(report.device, "cpu");
  }
}

// Root-mean-square difference over slice k, where the reference b is above `above`.
double SliceRmse(const Volume& a, const Volume& b, int64_t k, float above = -1e30f) {
  double sum = 0;
  int64_t n = 0;
  for (int64_t q = 0; q < a.VoxelsPerSlice(); ++q) {
    if (b.Slice(k)[q] <= above) continue;
    sum += std::pow(a.Slice(k)[q] - b.Slice(k)[q], 2);
    ++n;
  }
  return std::sqrt(sum / static_cast<double>(n));
}

// The magnitude of the image plus complex Gaussian noise of deviation `sigma` in each
// channel, as an MR magnitude image has.
Volume WithRicianNoise(const Volume& clean, double sigma, uint64_t seed) {
  Volume v = clean;
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<double> gauss(0.0, sigma);
  for (float& x : v.voxels) x = static_cast<float>(std::hypot(x + gauss(rng), gauss(rng)));
  return v;
}

// For white noise, the network's result and the bilateral filter's are scored on the
// held-out slice without the clean image; the scores follow their true errors there, and
// the blend of the two of the lowest estimate gives the result. Correlated noise and a
// forced method are not compared.
// An estimated mean square at or below 0 (too little noise to score) is said, not printed
// as an error of 0.
TEST(SelfSupervisedDenoiser, AnEstimateAtOrBelowZeroIsSaidSo) {
  EXPECT_EQ(DescribeEstimatedError(0.0004), "0.02");
  EXPECT_EQ(DescribeEstimatedError(0.0), "at or below 0 (too little noise to score)");
  EXPECT_EQ(DescribeEstimatedError(-1e-5), "at or below 0 (too little noise to score)");
  EXPECT_EQ(DescribeEstimatedError(std::nan("")), "at or below 0 (too little noise to score)");
  LearningReport report;
  report.method = "neighbouring-slice Noise2Noise";
  report.applied = true;
  report.comparedWithBilateral = true;
  report.heldOutNetworkMeanSquare = -2e-6;
  report.heldOutBilateralMeanSquare = 0.0009;
  EXPECT_NE(DescribeLearning(report).find(
                "estimated error (SURE) at or below 0 (too little noise to score) against 0.03 "
                "for the bilateral filter"),
            std::string::npos)
      << DescribeLearning(report);
}

// The blend of the network's and the bilateral filter's results whose estimated error is
// the lowest gives the result: the bilateral filter alone on the phantom's flat regions and
// sharp edges, which it keeps well, and a blend on a smooth ramp, where the network does
// better than the filter and the blend better than either.
TEST(SelfSupervisedDenoiser, KeepsTheBlendOfTheLowestEstimatedError) {
  SelfSupervisedParameters alone = Quick();
  SelfSupervisedParameters compared = alone;
  compared.compareWithBilateral = true;
  const int64_t heldOut = 8;
  LearningReport report;
  RunContext context = Recording(report);
  for (const bool smooth : {false, true}) {
    const Volume clean = smooth ? Smooth() : Clean();
    const Volume noisy = WithNoise(clean, 40.0, false, 5);
    const Volume network = SelfSupervisedDenoiser(alone).Run(noisy, context);
    ASSERT_TRUE(report.applied) << report.fallback;
    EXPECT_FALSE(report.comparedWithBilateral);
    const Volume bilateral = BilateralDenoiser().Run(noisy, {});
    const Volume output = SelfSupervisedDenoiser(compared).Run(noisy, context);
    ASSERT_TRUE(report.comparedWithBilateral);
    EXPECT_FALSE(report.ricianBiasRemoved);  // values below 0: not a magnitude image
    const auto error = [&](const Volume& v) { return SliceRmse(v, clean, heldOut); };
    // The estimates rest on one held-out slice of 96x96 pixels and on the noise's deviation
    // measured there: 1% off in it moves an estimated mean square by 2% of the noise power,
    // as much as a third of the network's own on the ramp (an error of 8.6 against 40).
    const double tolerance = smooth ? 0.3 : 0.15;
    EXPECT_NEAR(report.heldOutNetworkError, error(network), tolerance * error(network));
    EXPECT_NEAR(report.heldOutBilateralError, error(bilateral), tolerance * error(bilateral));
    EXPECT_NEAR(report.heldOutNoiseSigma, 40.0, 0.1 * 40.0);  // the noise added
    const double w = report.networkWeight;
    EXPECT_EQ(report.applied, w > 0);
    EXPECT_LE(report.heldOutBlendMeanSquare, report.heldOutNetworkMeanSquare);
    EXPECT_LE(report.heldOutBlendMeanSquare, report.heldOutBilateralMeanSquare);
    if (!smooth) {
      EXPECT_EQ(w, 0.0) << DescribeLearning(report);
      EXPECT_EQ(output.voxels, bilateral.voxels);
      EXPECT_NE(report.fallback.find("Stein's unbiased risk estimate"), std::string::npos)
          << report.fallback;
      EXPECT_NE(report.fallback.find("no blend of the two was lower, so the bilateral filter "
                                     "ran instead"),
                std::string::npos);
      continue;
    }
    ASSERT_GT(w, 0.2) << DescribeLearning(report);
    ASSERT_LT(w, 0.95) << DescribeLearning(report);
    // Each slice's bilateral result in the blend is that of the slice alone, as scored.
    Volume expected = network;
    for (int64_t k = 0; k < noisy.slices; ++k) {
      Volume one;
      one.Resize(1, noisy.rows, noisy.columns);
      std::copy(noisy.Slice(k), noisy.Slice(k + 1), one.voxels.begin());
      const Volume b = BilateralDenoiser().Run(one, {});
      for (int64_t q = 0; q < noisy.VoxelsPerSlice(); ++q) {
        float& f = expected.Slice(k)[q];
        f = static_cast<float>(w) * f + (1 - static_cast<float>(w)) * b.voxels[q];
      }
    }
    double largest = 0;
    for (size_t i = 0; i < output.voxels.size(); ++i)
      largest = std::max<double>(largest, std::abs(output.voxels[i] - expected.voxels[i]));
    EXPECT_LT(largest, 1e-3);
    const double blendError = error(expected);
    EXPECT_NEAR(std::sqrt(report.heldOutBlendMeanSquare), blendError, tolerance * blendError);
    EXPECT_LT(blendError, std::min(error(network), error(bilateral)));
    EXPECT_NE(DescribeLearning(report).find("blended with the bilateral filter's result"),
              std::string::npos)
        << DescribeLearning(report);
  }

  // Magnitude images (MR, Rician noise): scored where the signal is well above the noise,
  // where the estimates follow the true errors too.
  const Volume clean = Clean();
  const Volume noisy = WithNoise(clean, 40.0, false, 5);
  Volume magnitude = clean;
  for (float& v : magnitude.voxels) v = std::max(0.0f, v + 1000.0f);  // air at 0
  const Volume rician = WithRicianNoise(magnitude, 40.0, 5);
  const Volume mrNetwork = SelfSupervisedDenoiser(alone).Run(rician, context);
  const Volume mrBilateral = BilateralDenoiser().Run(rician, {});
  const Volume unbiased = SelfSupervisedDenoiser(compared).Run(rician, context);
  ASSERT_TRUE(report.comparedWithBilateral);
  const auto inside = [&](const Volume& v) { return SliceRmse(v, magnitude, heldOut, 120.0f); };
  EXPECT_NEAR(report.heldOutNetworkError, inside(mrNetwork), 0.2 * inside(mrNetwork));
  EXPECT_NEAR(report.heldOutBilateralError, inside(mrBilateral), 0.2 * inside(mrBilateral));
  EXPECT_NEAR(report.heldOutNoiseSigma, 40.0, 0.1 * 40.0);  // Rician, well above the noise
  // Its air is Rician noise of the deviation measured: the result's bias is removed, and in
  // the air, where the bias is largest (1.25 times the noise), the result comes near 0.
  EXPECT_TRUE(report.ricianBiasRemoved) << DescribeLearning(report);
  EXPECT_NE(DescribeLearning(report).find("the magnitude's Rician bias removed (noise deviation"),
            std::string::npos)
      << DescribeLearning(report);
  SelfSupervisedParameters biased = compared;
  biased.removeRicianBias = false;
  const Volume kept = SelfSupervisedDenoiser(biased).Run(rician, context);
  EXPECT_FALSE(report.ricianBiasRemoved);
  const auto inAir = [&magnitude](const Volume& v) {
    double sum = 0;
    int64_t n = 0;
    for (size_t i = 0; i < v.voxels.size(); ++i) {
      if (magnitude.voxels[i] > 0) continue;
      sum += v.voxels[i];
      ++n;
    }
    return sum / static_cast<double>(std::max<int64_t>(1, n));
  };
  EXPECT_GT(inAir(kept), 30.0);
  EXPECT_LT(inAir(unbiased), 0.3 * inAir(kept));

  SelfSupervisedDenoiser(compared).Run(WithNoise(clean, 40.0, true, 5), context);
  EXPECT_FALSE(report.comparedWithBilateral);  // correlated noise
  compared.method = SelfSupervisedMethod::kNoise2Noise;
  SelfSupervisedDenoiser(compared).Run(noisy, context);
  EXPECT_FALSE(report.comparedWithBilateral);  // forced
}

TEST(SelfSupervisedDenoiser, IsDeterministicForASeedAndASeries) {
  const Volume noisy = WithNoise(Clean(), 40.0, false, 9);
  SelfSupervisedParameters p = Quick();
  p.steps = 20;
  RunContext context;
  context.randomKey = 77;
  const Volume a = SelfSupervisedDenoiser(p).Run(noisy, context);
  const Volume b = SelfSupervisedDenoiser(p).Run(noisy, context);
  EXPECT_EQ(a.voxels, b.voxels);
  context.randomKey = 78;  // another series: other patches
  const Volume c = SelfSupervisedDenoiser(p).Run(noisy, context);
  EXPECT_NE(a.voxels, c.voxels);
  p.seed = 2;  // another seed: other starting weights
  context.randomKey = 77;
  const Volume d = SelfSupervisedDenoiser(p).Run(noisy, context);
  EXPECT_NE(a.voxels, d.voxels);
}

TEST(SelfSupervisedDenoiser, StopsTrainingWhenTheTimeBudgetIsSpentAndSaysSo) {
  const Volume noisy = WithNoise(Clean(), 40.0, false, 3);
  SelfSupervisedParameters p = Quick();
  p.steps = 100000;
  p.timeBudgetSeconds = 0.5;
  LearningReport report;
  std::vector<std::string> order;
  RunContext context;
  context.learned = [&](const LearningReport& r) {
    report = r;
    order.push_back("learned");
  };
  context.outputReady = [&](int64_t) { order.push_back("ready"); };
  const auto start = std::chrono::steady_clock::now();
  Volume copy = noisy;
  const Volume output = SelfSupervisedDenoiser(p).RunReusing(copy, context);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(report.stoppedByTimeBudget);
  EXPECT_GE(report.steps, 1);
  EXPECT_LT(report.steps, 100000);
  EXPECT_EQ(report.plannedSteps, 100000);
  // Timed on its first steps, training is shortened to what fits in the budget (so that
  // its learning rate still decays): it ends close to the budget, not far past it.
  EXPECT_GT(report.trainingSeconds, 0.25);
  EXPECT_LT(seconds, 60.0);      // bounded by the budget, not by the steps
  ASSERT_EQ(order.size(), 17u);  // learned once, before any of the 16 slices is final
  EXPECT_EQ(order.front(), "learned");
  // Said whether or not the network, trained so briefly, was applied.
  EXPECT_NE(DescribeLearning(report).find("of 100000 steps (time budget reached)"),
            std::string::npos)
      << DescribeLearning(report);
  EXPECT_EQ(output.slices, 16);
}

TEST(SelfSupervisedDenoiser, CanBeCancelledWhileItTrains) {
  const Volume noisy = WithNoise(Clean(), 40.0, false, 3);
  SelfSupervisedParameters p = Quick();
  p.steps = 100000;
  p.timeBudgetSeconds = 600;
  int reports = 0;
  bool learned = false;
  RunContext context;
  context.progress = [&reports](double) { ++reports; };
  context.cancelled = [&reports] { return reports >= 5; };
  context.learned = [&learned](const LearningReport&) { learned = true; };
  try {
    SelfSupervisedDenoiser(p).Run(noisy, context);
    FAIL() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_EQ(reports, 5);  // stopped at the next step
  EXPECT_FALSE(learned);
}

TEST(SelfSupervisedDenoiser, RunsTheBilateralFilterWhereSlicesOverlap) {
  Volume noisy = WithNoise(Clean(), 40.0, false, 4);
  noisy.geometry.sliceThickness = 5.0;  // 2.5 mm apart: neighbours share signal and noise
  LearningReport report;
  report.applied = true;
  std::vector<std::string> warnings;
  RunContext context = Recording(report);
  context.warning = [&warnings](const std::string& w) { warnings.push_back(w); };
  const Volume output = SelfSupervisedDenoiser(Quick()).Run(noisy, context);
  EXPECT_FALSE(report.applied);
  EXPECT_EQ(report.steps, 0);
  EXPECT_EQ(output.voxels, BilateralDenoiser().Run(noisy, {}).voxels);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("overlap"), std::string::npos);
  EXPECT_NE(DescribeLearning(report).find("not learned from this series: the slices overlap"),
            std::string::npos);
}

TEST(SelfSupervisedDenoiser, TakesTheBlindSpotWhereTheAnatomyChangesMoreThanTheNoise) {
  const Volume fast = Clean(true, 192);
  EXPECT_GT(AnatomyToNoise(WithNoise(fast, 10.0, false, 6), PlanNeighbourPairs(16, 16).training),
            0.5);
  EXPECT_LT(AnatomyToNoise(WithNoise(Clean(), 40.0, false, 6), PlanNeighbourPairs(16, 16).training),
            0.5);
  const Volume noisy = WithNoise(fast, 10.0, false, 6);
  LearningReport report;
  RunContext context = Recording(report);
  SelfSupervisedParameters p = Quick();
  p.steps = 30;
  const Volume output = SelfSupervisedDenoiser(p).Run(noisy, context);
  EXPECT_GT(report.anatomyToNoise, 0.5);
  EXPECT_EQ(report.method, "neighbouring-slice blind spot");
  EXPECT_EQ(report.blindSpotSide, 1);  // white noise
  EXPECT_EQ(report.steps, 30);
  // Whatever it learned in 30 steps, it is applied only where it beats the input.
  if (!report.applied) {
    EXPECT_EQ(output.voxels, noisy.voxels);
  }

  // Beyond the blind spot's limit, the bilateral filter runs, and the report says why.
  SelfSupervisedParameters limited = p;
  limited.blindSpotMaxAnatomyToNoise = 0.99 * report.anatomyToNoise;
  const Volume beyond = SelfSupervisedDenoiser(limited).Run(noisy, context);
  EXPECT_FALSE(report.applied);
  EXPECT_EQ(report.steps, 0);
  EXPECT_NE(report.fallback.find("the neighbouring slices tell little"), std::string::npos)
      << report.fallback;
  EXPECT_EQ(beyond.voxels, BilateralDenoiser().Run(noisy, {}).voxels);
  // Forced, the blind spot learns whatever the anatomy does.
  limited.method = SelfSupervisedMethod::kBlindSpot;
  SelfSupervisedDenoiser(limited).Run(noisy, context);
  EXPECT_EQ(report.steps, 30);

  // Where the anatomy's structure, not the noise, decides the noise's estimate even on the
  // neighbours' difference, the blind spot cannot be sized, and the bilateral filter runs,
  // unless the blind spot is forced (5x5).
  const Volume dense = WithNoise(Enhancing(60.0), 10.0, false, 6);
  const Volume unsized = SelfSupervisedDenoiser(p).Run(dense, context);
  EXPECT_GT(report.anatomyToNoise, 0.5);
  EXPECT_FALSE(report.applied);
  EXPECT_NE(report.fallback.find("the blind spot cannot be sized"), std::string::npos)
      << report.fallback;
  EXPECT_EQ(unsized.voxels, BilateralDenoiser().Run(dense, {}).voxels);
  SelfSupervisedParameters forced = p;
  forced.method = SelfSupervisedMethod::kBlindSpot;
  SelfSupervisedDenoiser(forced).Run(dense, context);
  EXPECT_EQ(report.blindSpotSide, 5);

  // Noise2Noise alone does not learn from it: the bilateral filter runs.
  p.method = SelfSupervisedMethod::kNoise2Noise;
  const Volume filtered = SelfSupervisedDenoiser(p).Run(noisy, context);
  EXPECT_FALSE(report.applied);
  EXPECT_EQ(report.steps, 0);
  EXPECT_NE(report.fallback.find("the anatomy changes from slice to slice"), std::string::npos);
  EXPECT_EQ(filtered.voxels, BilateralDenoiser().Run(noisy, {}).voxels);
}

TEST(SelfSupervisedDenoiser, HidesAsManyPixelsAsTheNoiseIsCorrelatedOver) {
  const std::vector<int64_t> centres = PlanNeighbourPairs(16, 16).training;
  // Smooth anatomy: white noise hides the pixel alone; the 3-tap kernel twice correlates
  // the noise over 2 pixels either way, where its estimate levels off: with a pixel more
  // for a kernel's tails, a 7x7 square.
  const Volume smooth = Smooth();
  EXPECT_EQ(NoiseCorrelationRadius(WithNoise(smooth, 40.0, false, 8), centres), 0);
  EXPECT_EQ(NoiseCorrelationRadius(WithNoise(smooth, 40.0, true, 8), centres), 3);
  // The phantom's anatomy, dense on its 96x96 grid of 4 mm, grows the estimate on each
  // slice with the spacing, not the noise; it cancels in the neighbours' difference, on
  // which the noise is measured, also where the anatomy changes from slice to slice.
  EXPECT_EQ(NoiseCorrelationRadius(WithNoise(Clean(), 40.0, false, 8), centres), 0);
  EXPECT_EQ(NoiseCorrelationRadius(WithNoise(Clean(true), 10.0, false, 8), centres), 0);
  EXPECT_EQ(NoiseCorrelationRadius(WithNoise(Clean(true), 10.0, true, 8), centres), 3);
  EXPECT_EQ(NoiseCorrelationRadius(WithNoise(Clean(false, 192), 40.0, false, 8), centres), 0);
  // Where the contrast changes along the series, the dense anatomy stays in the difference
  // and decides the estimate: the correlation is unknown.
  EXPECT_EQ(NoiseCorrelationRadius(WithNoise(Enhancing(60.0), 10.0, false, 8), centres), -1);
}

TEST(SelfSupervisedDenoiser, RemovesCorrelatedNoiseWithTheBlindSpot) {
  const Volume clean = Smooth();
  const Volume noisy = WithNoise(clean, 40.0, true, 7);
  LearningReport report;
  RunContext context = Recording(report);
  SelfSupervisedParameters p = Quick();
  p.method = SelfSupervisedMethod::kBlindSpot;
  p.steps = 300;
  const Volume output = SelfSupervisedDenoiser(p).Run(noisy, context);
  EXPECT_EQ(report.method, "neighbouring-slice blind spot");
  EXPECT_EQ(report.blindSpotSide, 7);  // measured on the series
  EXPECT_NE(DescribeLearning(report).find("blind spot of 7x7 px"), std::string::npos);
  EXPECT_TRUE(report.applied) << DescribeLearning(report);
  // The untrained network, the mean of the neighbours, is at sqrt(0.5) = 0.71.
  EXPECT_LT(Rmse(output, clean), 0.68 * Rmse(noisy, clean));
  // Every slice is denoised from its input neighbours, however many slices go at once:
  // the results written for one batch are not the next batch's neighbours.
  for (int batch : {1, 3, 16}) {
    p.slicesPerBatch = batch;
    const Volume other = SelfSupervisedDenoiser(p).Run(noisy, context);
    double largest = 0;
    for (size_t i = 0; i < other.voxels.size(); ++i) {
      largest = std::max<double>(largest, std::abs(other.voxels[i] - output.voxels[i]));
    }
    EXPECT_LT(largest, 0.01) << batch << " slices at once";
  }
}

TEST(SelfSupervisedDenoiser, DescribesWhatItLearned) {
  LearningReport r;
  r.method = "neighbouring-slice Noise2Noise";
  r.device = "cpu";
  r.plannedSteps = 300;
  r.steps = 300;
  r.trainingSeconds = 41.2;
  r.finalLoss = 0.00123;
  r.heldOutLoss = 0.00125;
  r.heldOutInputLoss = 0.00201;
  r.heldOutSlices = 16;
  r.anatomyToNoise = 0.12;
  r.applied = true;
  EXPECT_EQ(DescribeLearning(r),
            "learned from this series: neighbouring-slice Noise2Noise, 300 steps in 41 s on cpu, "
            "training loss 0.00123, self-supervised loss 0.00125 against 0.00201 for the input "
            "on 16 held-out slices, anatomy change 0.12 of the noise power");
  r.heldOutSlices = 0;
  EXPECT_NE(DescribeLearning(r).find("on training slices: too few to hold any out"),
            std::string::npos);
  const SelfSupervisedDenoiser model;
  EXPECT_TRUE(model.LearnsFromSeries());
  EXPECT_EQ(model.Info().name, "self-supervised-denoise");
  EXPECT_EQ(model.Info().task, "denoise");
  SelfSupervisedParameters bad;
  bad.augmentations = 3;
  EXPECT_THROW(SelfSupervisedDenoiser{bad}, Error);
}

}  // namespace
}  // namespace enhance
