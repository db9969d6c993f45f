// SPDX-License-Identifier: GPL-3.0-or-later
#include "RiskEstimate.h"

#include <random>
#include <stdexcept>

namespace enhance {

RiskEstimate MonteCarloSure(
    const std::function<std::vector<float>(const std::vector<float>&)>& denoise,
    const std::vector<float>& noisy, const std::vector<uint8_t>& counted, double sigma,
    uint64_t seed) {
  if (counted.size() != noisy.size()) {
    throw std::invalid_argument("MonteCarloSure: the mask and the image differ in size");
  }
  RiskEstimate estimate;
  if (!(sigma > 0)) return estimate;
  // Small enough that the denoiser is near linear over it, large enough that float32's
  // rounding of the difference stays far below it.
  const double epsilon = 0.05 * sigma;
  // Random signs (zero mean, unit covariance, like a Gaussian direction but with less
  // scatter: the estimate is exact for the identity).
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution sign(0.5);
  std::vector<double> direction(noisy.size(), 0.0);
  std::vector<float> perturbed = noisy;
  for (size_t i = 0; i < noisy.size(); ++i) {
    if (!counted[i]) continue;
    direction[i] = sign(rng) ? 1.0 : -1.0;
    perturbed[i] = static_cast<float>(noisy[i] + epsilon * direction[i]);
  }
  const std::vector<float> base = denoise(noisy);
  const std::vector<float> moved = denoise(perturbed);
  if (base.size() != noisy.size() || moved.size() != noisy.size()) {
    throw std::invalid_argument("MonteCarloSure: the denoiser changed the image's size");
  }
  double fidelity = 0;
  double divergence = 0;
  for (size_t i = 0; i < noisy.size(); ++i) {
    if (!counted[i]) continue;
    const double residual = static_cast<double>(base[i]) - noisy[i];
    fidelity += residual * residual;
    divergence += direction[i] * (static_cast<double>(moved[i]) - base[i]) / epsilon;
    ++estimate.pixels;
  }
  if (estimate.pixels == 0) return estimate;
  const double n = static_cast<double>(estimate.pixels);
  estimate.meanSquaredError = fidelity / n - sigma * sigma + 2 * sigma * sigma * divergence / n;
  return estimate;
}

}  // namespace enhance
