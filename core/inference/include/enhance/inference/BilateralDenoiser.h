// SPDX-License-Identifier: GPL-3.0-or-later
//
// Edge-preserving bilateral filter (Tomasi and Manduchi, 1998), applied slice by slice
// in physical units, written with LibTorch tensor operations so it runs on the CPU or
// a GPU. Each output voxel is a weighted mean of its neighbours within `radius`; the
// weight is a Gaussian of the spatial distance (sigmaSpatial, in pixels) times a
// Gaussian of the intensity difference (sigmaRange). sigmaRange is derived per series
// from the measured noise level (rangeFactor x the noise standard deviation estimated
// with Immerkaer's Laplacian method, extended to correlated noise: EstimateNoiseSigma,
// median over slices) so the same model suits CT in HU and MR in arbitrary units.
// Output units and range are those of the input.
//
// Thread-safe: Run() is const and keeps no state.
#pragma once

#include <memory>

#include "enhance/inference/Model.h"

namespace enhance {

struct BilateralParameters {
  double sigmaSpatial = 1.5;    // pixels
  int radius = 3;               // pixels; the window is (2 radius + 1)^2
  double rangeFactor = 2.5;     // sigmaRange = rangeFactor x estimated noise sigma
  double minSigmaRange = 1e-3;  // floor for noise-free input, in input units
  int slicesPerBatch = 8;       // bounds peak memory: about 8 buffers of this many slices
};

class BilateralDenoiser final : public Model {
 public:
  explicit BilateralDenoiser(BilateralParameters parameters = {});
  const ModelInfo& Info() const override { return info_; }
  std::string Parameters() const override;
  Volume Run(const Volume& input, const RunContext& context) const override;

  const BilateralParameters& parameters() const { return parameters_; }

 private:
  BilateralParameters parameters_;
  ModelInfo info_;
};

// Robust estimate of the standard deviation of the noise in one slice, in the slice's
// units, for white noise (MR) and for spatially correlated noise (CT's filtered
// back-projection) alike: Immerkaer's estimate (below) with its taps 1, 2, ... 6 pixels
// apart, taken at the first spacing past which it grows by less than 10%, i.e. once the
// taps are further apart than the noise is correlated (the adjacent-tap estimate when it
// never levels off: then the image's structure, not its noise, makes it grow).
double EstimateNoiseSigma(const float* slice, int64_t rows, int64_t columns);

// The same estimate with the spacing of the taps it was taken at: 1 for white noise, more
// for noise correlated over more pixels (the spacing past which the estimate levels off).
// levelled false: the estimate grew with the spacing up to 6 pixels (dense structure, not
// the noise, grows it), so the noise's correlation is unknown and the adjacent taps' figure
// stands.
struct NoiseEstimate {
  double sigma = 0;
  int64_t spacing = 1;
  bool levelled = true;
};
NoiseEstimate EstimateNoise(const float* slice, int64_t rows, int64_t columns);

// J. Immerkaer, "Fast noise variance estimation", CVIU 1996, with the 3 x 3 mask's taps
// `spacing` pixels apart: the standard deviation of noise that is uncorrelated at that
// distance (spacing 1: white noise), robust to edges. 0 for a slice too small or constant.
double EstimateNoiseSigmaAtSpacing(const float* slice, int64_t rows, int64_t columns,
                                   int64_t spacing);

}  // namespace enhance
