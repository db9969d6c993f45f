// SPDX-License-Identifier: GPL-3.0-or-later
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "SliceDenoiserNetwork.h"

namespace enhance {
namespace {

// The gradient of one output pixel with respect to the three input slices, through a
// network whose weights are all random (the last layer included).
at::Tensor GradientOfOnePixel(const BlindSpotNetwork& network, int64_t size, int64_t row,
                              int64_t column) {
  at::Tensor x = at::randn({1, 3, size, size}).set_requires_grad(true);
  network.Forward(x).index({0, 0, row, column}).backward();
  return x.grad()[0];
}

BlindSpotNetwork RandomNetwork(int holeRadius, int dilatedLayers) {
  BlindSpotNetwork network(holeRadius, dilatedLayers, 8, 3, c10::Device(c10::kCPU));
  at::NoGradGuard noGrad;
  for (at::Tensor& p : network.Parameters()) p.normal_(0.0, 0.3);
  return network;
}

TEST(BlindSpotNetwork, NeverSeesSliceKWithinItsHoleButSeesItsNeighbours) {
  // Seeded: with random weights, ReLUs that happen to be off at every path from a pixel give
  // it no gradient, which the checks of what the network sees below would take for
  // blindness (the global generator's state otherwise depends on the tests run before).
  at::manual_seed(11);
  for (const int radius : {0, 1, 2, 3}) {
    const BlindSpotNetwork network = RandomNetwork(radius, 2);
    const int64_t size = 64;
    const int64_t row = 30;
    const int64_t column = 33;
    const at::Tensor g = GradientOfOnePixel(network, size, row, column).abs();
    const at::Tensor hole =
        g[1].narrow(0, row - radius, 2 * radius + 1).narrow(1, column - radius, 2 * radius + 1);
    EXPECT_EQ(hole.max().item<float>(), 0.0f) << "radius " << radius;
    // Slice k just outside the hole, and the neighbours at the pixel itself, do count.
    EXPECT_GT(g[1].narrow(0, row - radius - 1, 2 * radius + 3)
                  .narrow(1, column - radius - 1, 2 * radius + 3)
                  .sum()
                  .item<float>(),
              0.0f)
        << "radius " << radius;
    EXPECT_GT(g[0][row][column].item<float>(), 0.0f);
    EXPECT_GT(g[2][row][column].item<float>(), 0.0f);
  }
}

TEST(BlindSpotNetwork, StaysBlindAfterTrainingSteps) {
  BlindSpotNetwork network(2, 2, 8, 5, c10::Device(c10::kCPU));
  at::Tensor x = at::randn({2, 3, 40, 40});
  for (int step = 0; step < 3; ++step) {
    at::Tensor loss = at::mse_loss(network.Forward(x), network.TargetOf(x));
    for (at::Tensor& p : network.Parameters()) p.mutable_grad() = at::Tensor();
    loss.backward();
    at::NoGradGuard noGrad;
    for (at::Tensor& p : network.Parameters()) p.sub_(0.1 * p.grad().sign());
  }
  const at::Tensor g = GradientOfOnePixel(network, 40, 20, 20).abs();
  EXPECT_EQ(g[1].narrow(0, 18, 5).narrow(1, 18, 5).max().item<float>(), 0.0f);
}

TEST(BlindSpotNetwork, StartsAsTheMeanOfTheNeighboursAndInfersAsItTrains) {
  const BlindSpotNetwork untrained(2, 2, 8, 5, c10::Device(c10::kCPU));
  const at::Tensor x = at::randn({2, 3, 48, 40});
  EXPECT_TRUE(at::allclose(untrained.Forward(x), 0.5 * (x.narrow(1, 0, 1) + x.narrow(1, 2, 1))));
  const BlindSpotNetwork network = RandomNetwork(2, 2);
  const at::Tensor reference = network.Forward(x).detach();
  const at::Tensor fused = network.Infer(x);
  EXPECT_LT((fused - reference).abs().max().item<float>(),
            1e-4f * (1.0f + reference.abs().max().item<float>()));
}

// Three slices of 64x64 of one anatomy (a square of 100 on 0) with independent noise of
// deviation 2 on the left half and 6 on the right.
Volume NoisyTriplet(uint64_t seed) {
  Volume v;
  v.slices = 3;
  v.rows = 64;
  v.columns = 64;
  v.geometry.sliceThickness = 1;
  v.geometry.sliceSpacing = 1;
  v.voxels.assign(3 * 64 * 64, 0.0f);
  at::Generator generator = at::detail::createCPUGenerator(seed);
  const at::Tensor noise = at::randn({3, 64, 64}, generator, at::kFloat);
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t r = 0; r < 64; ++r) {
      for (int64_t c = 0; c < 64; ++c) {
        const bool square = r >= 20 && r < 44 && c >= 20 && c < 44;
        v.Slice(s)[r * 64 + c] =
            (square ? 100.0f : 0.0f) + (c < 32 ? 2.0f : 6.0f) * noise[s][r][c].item<float>();
      }
    }
  }
  return v;
}

at::Tensor Triplet(const Volume& v) {
  return at::from_blob(const_cast<float*>(v.voxels.data()), {1, 3, v.rows, v.columns}, at::kFloat)
      .clone();
}

TEST(NoiseDeviationMap, FollowsTheNoiseAcrossTheSliceAndIgnoresPadding) {
  const at::Tensor triplet = Triplet(NoisyTriplet(1));
  const at::Tensor map = NoiseDeviationMap(triplet, 16);
  // Block centres: away from the change between the halves.
  EXPECT_NEAR(map[0][0][8][8].item<float>(), 2.0f, 0.5f);
  EXPECT_NEAR(map[0][0][56][56].item<float>(), 6.0f, 1.5f);
  at::Tensor padded = triplet.clone();
  padded.narrow(3, 0, 16).fill_(-1000.0f);  // equal in the three slices: no noise
  EXPECT_EQ(NoiseDeviationMap(padded, 16)[0][0][30][4].item<float>(), 0.0f);
}

TEST(CombineWithInput, KeepsTheEstimateWithinTheNoiseAndTheInputWhereTheEstimateMissed) {
  const Volume noisy = NoisyTriplet(2);
  // An estimate of slice 1: right everywhere but the square, which it missed.
  std::vector<float> estimate(64 * 64, 0.0f);
  std::vector<float> combined = estimate;
  CombineWithInput(noisy, 1, 1, combined.data(), 7, 1.5);
  const float* y = noisy.Slice(1);
  double flat = 0;
  double square = 0;
  for (int64_t r = 24; r < 40; ++r) {
    for (int64_t c = 50; c < 64; ++c) flat += std::abs(combined[r * 64 + c]);
    for (int64_t c = 24; c < 40; ++c) square += std::abs(combined[r * 64 + c] - y[r * 64 + c]);
  }
  EXPECT_LT(flat / (16 * 14), 1.0);    // the right estimate kept: noise of 6 mostly gone
  EXPECT_LT(square / (16 * 16), 1.0);  // the missed square: the input's 100 back
  // A series without noise comes back as it is.
  Volume clean = noisy;
  for (int64_t s : {0, 2}) std::copy(clean.Slice(1), clean.Slice(2), clean.Slice(s));
  std::vector<float> unchanged = estimate;
  CombineWithInput(clean, 1, 1, unchanged.data(), 7, 1.5);
  EXPECT_EQ(unchanged, std::vector<float>(clean.Slice(1), clean.Slice(2)));
}

TEST(CombineWithInput, ReturnsASeriesWithoutNoiseWhoseAnatomyChangesAsItIs) {
  // Smooth anatomy (a plane) that changes between the slices: slice 1 differs from the mean
  // of its neighbours by 10 everywhere, which the map alone takes for noise of deviation
  // 12. The slice's own noise level, 0, caps it.
  Volume v = NoisyTriplet(3);
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t r = 0; r < 64; ++r) {
      for (int64_t c = 0; c < 64; ++c) {
        v.Slice(s)[r * 64 + c] = static_cast<float>(r + 0.5 * c) + (s == 1 ? 0.0f : 10.0f);
      }
    }
  }
  EXPECT_NEAR(NoiseDeviationMap(Triplet(v), 16)[0][0][8][8].item<float>(), 12.1f, 0.2f);
  // An estimate that missed by 5 everywhere: within that supposed noise, so it would stand.
  std::vector<float> estimate(v.Slice(1), v.Slice(2));
  for (float& x : estimate) x -= 5.0f;
  CombineWithInput(v, 1, 1, estimate.data(), 7, 1.5);
  for (int64_t p = 0; p < 64 * 64; ++p) {
    ASSERT_NEAR(estimate[static_cast<size_t>(p)], v.Slice(1)[p], 0.05) << "pixel " << p;
  }
}

}  // namespace
}  // namespace enhance
