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

}  // namespace enhance
