// SPDX-License-Identifier: GPL-3.0-or-later
//
// The bias of MR magnitude images. A magnitude image is |x + n| for a signal x and complex
// Gaussian noise n of deviation sigma in each channel: Rician (Gudbjartsson and Patz,
// Magnetic Resonance in Medicine 1995). Its mean is above x, by about sigma^2 / (2 x) where
// the signal is well above the noise and by up to sigma sqrt(pi / 2) where there is none,
// so a denoiser that estimates the mean of the magnitude (every filter, and a network
// trained on noisy targets) keeps that bias, which brightens dark tissue and fluid.
// Inverting the mean (the first-moment method; Koay and Basser 2006 give the second-moment
// one) takes it out. Used by the self-supervised denoiser and its evaluation. Stateless
// functions; the lookup table is built once, thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance {

// The mean of a Rician magnitude over sigma, for a signal of `snr` times sigma:
// sqrt(pi / 2) L_1/2(-snr^2 / 2), L_1/2 the Laguerre function; sqrt(pi / 2) at 0, then
// toward sqrt(snr^2 + 1).
double RicianMeanOverSigma(double snr);

// The signal x >= 0 whose magnitude's mean is `mean`: 0 at or below the mean of pure noise
// (sigma sqrt(pi / 2)). Within 1e-3 sigma of the exact inverse.
float UnbiasedRicianSignal(float mean, double sigma);

// Whether the series has a background of pure Rician noise of deviation `sigma`, which is
// where the model holds: on up to 8 slices spread over the series, the pixels whose 3x3
// mean is below 2 sigma are at least 2% of them, and their median is within [0.85, 1.5]
// sigma (a Rayleigh distribution's is 1.18 sigma). A background set to 0, or filled by a
// reconstruction that left no noise there, fails; so does a series with no background.
bool HasRicianBackground(const Volume& volume, double sigma);

}  // namespace enhance
