// SPDX-License-Identifier: GPL-3.0-or-later
#include "RiskEstimate.h"

#include <algorithm>
#include <random>
#include <stdexcept>

namespace enhance {

namespace {

// The perturbation of the counted pixels: small enough that a denoiser is near linear over
// it, large enough that float32's rounding of the difference stays far below it. Random
// signs have zero mean and unit covariance, like a Gaussian direction but with less
// scatter: the estimate is exact for the identity.
struct Perturbation {
  double epsilon = 0;
  std::vector<double> direction;  // 0 where not counted
  std::vector<float> perturbed;
};

Perturbation Perturb(const std::vector<float>& noisy, const std::vector<uint8_t>& counted,
                     double sigma, uint64_t seed) {
  if (counted.size() != noisy.size()) {
    throw std::invalid_argument("MonteCarloSure: the mask and the image differ in size");
  }
  Perturbation p;
  p.epsilon = 0.05 * sigma;
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution sign(0.5);
  p.direction.assign(noisy.size(), 0.0);
  p.perturbed = noisy;
  for (size_t i = 0; i < noisy.size(); ++i) {
    if (!counted[i]) continue;
    p.direction[i] = sign(rng) ? 1.0 : -1.0;
    p.perturbed[i] = static_cast<float>(noisy[i] + p.epsilon * p.direction[i]);
  }
  return p;
}

// A denoiser's result on the image and on its perturbation.
struct Responses {
  std::vector<float> base;
  std::vector<float> moved;
};

Responses Respond(const std::function<std::vector<float>(const std::vector<float>&)>& denoise,
                  const std::vector<float>& noisy, const Perturbation& p) {
  Responses r{denoise(noisy), denoise(p.perturbed)};
  if (r.base.size() != noisy.size() || r.moved.size() != noisy.size()) {
    throw std::invalid_argument("MonteCarloSure: the denoiser changed the image's size");
  }
  return r;
}

double Divergence(const Responses& r, const Perturbation& p, size_t i) {
  return p.direction[i] * (static_cast<double>(r.moved[i]) - r.base[i]) / p.epsilon;
}

// The terms of the blend's estimate from the two denoisers' responses to the same
// perturbation (the same responses twice: one denoiser's estimate, its `constant`).
BlendRiskEstimate EstimateBlend(const Responses& a, const Responses& b,
                                const std::vector<float>& noisy,
                                const std::vector<uint8_t>& counted, const Perturbation& p,
                                double sigma) {
  const double variance = sigma * sigma;
  BlendRiskEstimate estimate;
  double quadratic = 0, linear = 0, constant = 0;
  for (size_t i = 0; i < noisy.size(); ++i) {
    if (!counted[i]) continue;
    const double apart = static_cast<double>(a.base[i]) - b.base[i];
    const double residual = static_cast<double>(b.base[i]) - noisy[i];
    const double divergenceB = Divergence(b, p, i);
    quadratic += apart * apart;
    linear += apart * residual + variance * (Divergence(a, p, i) - divergenceB);
    constant += residual * residual - variance + 2 * variance * divergenceB;
    ++estimate.pixels;
  }
  if (estimate.pixels == 0) return estimate;
  const double n = static_cast<double>(estimate.pixels);
  estimate.quadratic = quadratic / n;
  estimate.linear = linear / n;
  estimate.constant = constant / n;
  return estimate;
}

}  // namespace

RiskEstimate MonteCarloSure(
    const std::function<std::vector<float>(const std::vector<float>&)>& denoise,
    const std::vector<float>& noisy, const std::vector<uint8_t>& counted, double sigma,
    uint64_t seed) {
  const Perturbation p = Perturb(noisy, counted, sigma, seed);
  RiskEstimate estimate;
  if (!(sigma > 0)) return estimate;
  const Responses f = Respond(denoise, noisy, p);
  const BlendRiskEstimate own = EstimateBlend(f, f, noisy, counted, p, sigma);
  estimate.meanSquaredError = own.constant;
  estimate.pixels = own.pixels;
  return estimate;
}

double BlendRiskEstimate::BestWeight() const {
  if (!(quadratic > 0)) return 0;
  return std::clamp(-linear / quadratic, 0.0, 1.0);
}

void BlendRiskEstimate::Add(const BlendRiskEstimate& other) {
  const auto total = static_cast<double>(pixels + other.pixels);
  if (total == 0) return;
  const double a = static_cast<double>(pixels) / total;
  const double b = static_cast<double>(other.pixels) / total;
  quadratic = a * quadratic + b * other.quadratic;
  linear = a * linear + b * other.linear;
  constant = a * constant + b * other.constant;
  pixels += other.pixels;
}

BlendRiskEstimate MonteCarloSureOfBlend(
    const std::function<std::vector<float>(const std::vector<float>&)>& f,
    const std::function<std::vector<float>(const std::vector<float>&)>& g,
    const std::vector<float>& noisy, const std::vector<uint8_t>& counted, double sigma,
    uint64_t seed) {
  const Perturbation p = Perturb(noisy, counted, sigma, seed);
  if (!(sigma > 0)) return {};
  const Responses a = Respond(f, noisy, p);
  const Responses b = Respond(g, noisy, p);
  return EstimateBlend(a, b, noisy, counted, p, sigma);
}

}  // namespace enhance
