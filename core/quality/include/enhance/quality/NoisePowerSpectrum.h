// SPDX-License-Identifier: GPL-3.0-or-later
//
// The noise power spectrum (NPS) of an image of noise, e.g. a denoiser's output minus a
// reference: how the noise's variance is spread over spatial frequency, i.e. its texture
// (fine grain at high frequencies, blotches at low ones), which PSNR and SSIM do not see.
//
// Slice by slice, over the pixels of a mask: the mean inside the mask is subtracted, the
// rest of the slice set to zero, and |DFT|^2 of the slice summed over the slices, divided by
// the number of masked pixels. In pixel units (frequencies in cycles per pixel, up to 0.5 at
// the Nyquist frequency; power in units^2 pixel^2), so that the integral of the 2-D spectrum
// over [-0.5, 0.5)^2 is the variance of the masked pixels (Parseval): the `area`. A mask
// smooths the spectrum (it is convolved with the mask's own spectrum) but keeps the area.
// Radial profile: the mean of the 2-D spectrum over rings of width 0.5 / bins cycles per
// pixel, the zero frequency left out; the corners beyond 0.5 enter the area only.
// Computed with LibTorch in double precision. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance {

struct NoisePowerSpectrum {
  std::vector<double> frequency;  // ring centres, cycles per pixel
  std::vector<double> power;      // mean 2-D NPS on each ring, units^2 pixel^2
  double peakFrequency = 0;       // centre of the ring of highest power
  double meanFrequency = 0;       // power-weighted mean radial frequency (whole 2-D spectrum)
  double area = 0;                // integral of the 2-D NPS = variance, units^2
  int64_t pixels = 0;             // masked pixels that entered it
};

// `mask`: one byte per voxel of `noise` (non-zero: use it), or empty for every voxel.
// Slices with fewer than 2 masked pixels are left out. Throws Error(kBadInput) for an
// empty volume or mask, a mask of another size or bins < 1.
NoisePowerSpectrum ComputeNoisePowerSpectrum(const Volume& noise, const std::vector<uint8_t>& mask,
                                             int64_t bins = 32);

// The power of a spectrum at `frequency` (cycles per pixel), interpolated linearly between
// ring centres (the first or last ring's power outside them).
double PowerAt(const NoisePowerSpectrum& nps, double frequency);

// test - reference voxel by voxel (same size, else Error(kBadInput)), e.g. the residual of
// a denoiser against a full-dose reference.
Volume Difference(const Volume& test, const Volume& reference);

}  // namespace enhance
