// SPDX-License-Identifier: GPL-3.0-or-later
//
// An estimate of a denoiser's error without the clean image: Stein's unbiased risk
// estimate (C. Stein, Annals of Statistics 1981) of the mean squared error for additive
// white Gaussian noise of known deviation, its divergence term estimated by Monte Carlo
// (S. Ramani, T. Blu and M. Unser, IEEE Transactions on Image Processing 2008): one more
// run of the denoiser on the image plus a small random perturbation. It holds for any
// denoiser that is a (weakly) differentiable function of the noisy image, learned or not,
// so two denoisers of the same image can be compared by it.
// Internal to core/inference. Stateless; thread-safe as far as `denoise` is.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace enhance {

// The estimate of one denoiser on one image: the mean over the counted pixels of
// |f(y) - y|^2 - sigma^2 + 2 sigma^2 df_i/dy_i. Unbiased, so it can come out below 0
// when the error is small against its scatter.
struct RiskEstimate {
  double meanSquaredError = 0;
  int64_t pixels = 0;  // pixels counted
};

// `denoise` maps an image (as many values as `noisy`) to its estimate. Pixels where
// `counted` is 0 (padding, which carries no noise) are neither perturbed nor counted.
// The perturbation is 0.05 sigma with random signs drawn from `seed`.
RiskEstimate MonteCarloSure(
    const std::function<std::vector<float>(const std::vector<float>&)>& denoise,
    const std::vector<float>& noisy, const std::vector<uint8_t>& counted, double sigma,
    uint64_t seed);

// The estimate of every blend w f(y) + (1 - w) g(y) of two denoisers of one image at
// once: it is quadratic in the weight w (SURE-LET, T. Blu and F. Luisier, IEEE
// Transactions on Image Processing 2007, with the two denoisers as its basis). Its terms
// are means over the counted pixels, so estimates of several images pool by their pixels.
struct BlendRiskEstimate {
  double quadratic = 0;  // |f - g|^2
  double linear = 0;     // (f - g)(g - y) + sigma^2 (df_i/dy_i - dg_i/dy_i)
  double constant = 0;   // g's own estimate, |g - y|^2 - sigma^2 + 2 sigma^2 dg_i/dy_i
  int64_t pixels = 0;

  // The estimate of the blend of weight w: w = 1 is f's, w = 0 is g's.
  double At(double w) const { return w * w * quadratic + 2 * w * linear + constant; }
  // The weight in [0, 1] of the lowest estimate (0 where f and g agree everywhere).
  double BestWeight() const;
  // Pools another image's estimate into this one, each weighted by its pixels.
  void Add(const BlendRiskEstimate& other);
};

// Both denoisers see the same perturbation (0.05 sigma, random signs drawn from `seed`);
// `counted` as for MonteCarloSure.
BlendRiskEstimate MonteCarloSureOfBlend(
    const std::function<std::vector<float>(const std::vector<float>&)>& f,
    const std::function<std::vector<float>(const std::vector<float>&)>& g,
    const std::vector<float>& noisy, const std::vector<uint8_t>& counted, double sigma,
    uint64_t seed);

}  // namespace enhance
