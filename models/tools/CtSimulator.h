// SPDX-License-Identifier: GPL-3.0-or-later
//
// Parallel-beam CT acquisition and reconstruction of axial slices, for simulating
// low-dose CT from images in HU. Geometry, in pixel units: detector bins of one pixel,
// as many bins as image columns, centred on the image; views evenly spaced over 180
// degrees; rays sampled every pixel. The patient must lie inside the circle inscribed in
// the image (the corners are not seen by the detector).
//
//   Project()     line integrals of the linear attenuation coefficient (Radon transform,
//                 rotate-and-sum with bilinear interpolation)
//   AddDoseNoise() Poisson photon noise for I0 incident photons per ray, plus Gaussian
//                 electronic noise, then the log transform back to line integrals
//   Reconstruct() filtered back-projection (band-limited ramp filter in the Fourier
//                 domain, linear interpolation on the detector) back to HU
//
// Tensors are float32 on the CPU; slices travel as [S, N, N], sinograms as [S, views, N].
// Stateless functions; thread-safe (the noise uses the caller's seed only).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace enhance::models {

struct CtScanner {
  int64_t views = 720;            // over 180 degrees
  double muWaterPerMm = 0.0192;   // linear attenuation of water at about 70 keV
  double electronicNoise = 10.0;  // standard deviation, in detected photons per ray
};

// HU slices [S, N, N] with pixels of pixelSpacingMm -> line integrals [S, views, N].
at::Tensor Project(const at::Tensor& hu, double pixelSpacingMm, const CtScanner& scanner);

// Noisy line integrals for `incidentPhotons` per ray; deterministic for a seed.
at::Tensor AddDoseNoise(const at::Tensor& lineIntegrals, double incidentPhotons,
                        const CtScanner& scanner, uint64_t seed);

// Line integrals [S, views, N] -> HU slices [S, N, N].
at::Tensor Reconstruct(const at::Tensor& lineIntegrals, double pixelSpacingMm,
                       const CtScanner& scanner);

}  // namespace enhance::models
