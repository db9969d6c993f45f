// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/BilateralDenoiser.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"

namespace enhance {
namespace {

std::string Format(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

at::Tensor View(const float* data, int64_t slices, int64_t rows, int64_t columns) {
  // The tensor never writes through this view of the input.
  return at::from_blob(const_cast<float*>(data), {slices, 1, rows, columns}, at::kFloat);
}

}  // namespace

double EstimateNoiseSigmaAtSpacing(const float* slice, int64_t rows, int64_t columns,
                                   int64_t spacing) {
  const int64_t d = spacing;
  if (d < 1 || rows < 2 * d + 1 || columns < 2 * d + 1) return 0.0;
  // Response to the Laplacian-difference mask [1 -2 1; -2 4 -2; 1 -2 1] with its taps d
  // pixels apart, which cancels constant and linear structure; for noise of deviation
  // sigma that is uncorrelated at distance d its response has deviation 6 sigma. The
  // median of |response| is robust to edges; exact zeros come from constant regions
  // (padding, clipped air) that carry no noise and are skipped.
  std::vector<float> response;
  response.reserve(static_cast<size_t>((rows - 2 * d) * (columns - 2 * d)));
  for (int64_t r = d; r + d < rows; ++r) {
    const float* above = slice + (r - d) * columns;
    const float* row = slice + r * columns;
    const float* below = slice + (r + d) * columns;
    for (int64_t c = d; c + d < columns; ++c) {
      const float value = above[c - d] - 2 * above[c] + above[c + d] - 2 * row[c - d] + 4 * row[c] -
                          2 * row[c + d] + below[c - d] - 2 * below[c] + below[c + d];
      if (value != 0.0f) response.push_back(std::abs(value));
    }
  }
  if (response.size() < 16) return 0.0;
  const auto middle = response.begin() + static_cast<long>(response.size() / 2);
  std::nth_element(response.begin(), middle, response.end());
  constexpr double kMadToSigma = 1.0 / 0.6744897501960817;
  return *middle * kMadToSigma / 6.0;
}

NoiseEstimate EstimateNoise(const float* slice, int64_t rows, int64_t columns) {
  // Spatially correlated noise (CT reconstructed by filtered back-projection, resampled or
  // smoothed images) differs little between neighbouring pixels, so the mask with adjacent
  // taps sees only part of it. With its taps further apart the estimate grows until they
  // are past the noise's correlation length, then stays flat (or grows slowly with the
  // anatomy): the first spacing past which it grows by less than kGrowth is taken. When
  // it never levels off, what grows it is the image's structure (a small image, dense
  // edges), not the noise, and the adjacent-tap estimate stands.
  constexpr int64_t kMaxSpacing = 6;
  constexpr double kGrowth = 1.10;
  const double adjacent = EstimateNoiseSigmaAtSpacing(slice, rows, columns, 1);
  if (adjacent == 0) return {0, 1, true};  // no noise, or too small a slice to say
  double sigma = adjacent;
  for (int64_t d = 2; d <= kMaxSpacing; ++d) {
    const double wider = EstimateNoiseSigmaAtSpacing(slice, rows, columns, d);
    if (wider < sigma * kGrowth) return {sigma, d - 1, true};
    sigma = wider;
  }
  return {adjacent, 1, false};
}

double EstimateNoiseSigma(const float* slice, int64_t rows, int64_t columns) {
  return EstimateNoise(slice, rows, columns).sigma;
}

BilateralDenoiser::BilateralDenoiser(BilateralParameters parameters) : parameters_(parameters) {
  if (parameters_.radius < 1 || parameters_.sigmaSpatial <= 0 || parameters_.rangeFactor <= 0 ||
      parameters_.slicesPerBatch < 1) {
    throw Error(ErrorKind::kBadInput,
                "bilateral filter needs radius >= 1, positive sigmas and batch size >= 1");
  }
  info_.name = "classical-bilateral";
  info_.version = "1.1.0";  // 1.1: the noise estimate holds for correlated noise
  info_.task = "denoise";
  info_.modalities = {"CT", "MR"};
  info_.intendedUse =
      "Edge-preserving bilateral filter adapted to the measured noise level; a classical "
      "baseline that needs no trained weights.";
  info_.derivationCode = {"113087", "DCM", "Smoothing"};
  info_.uid = UidFromName(info_.name + "/" + info_.version + "/" + Parameters());
}

std::string BilateralDenoiser::Parameters() const {
  return "radius " + std::to_string(parameters_.radius) + " px, spatial sigma " +
         Format("%.2f", parameters_.sigmaSpatial) + " px, range sigma " +
         Format("%.2f", parameters_.rangeFactor) + " x measured noise";
}

Volume BilateralDenoiser::Run(const Volume& input, const RunContext& context) const {
  Volume output;
  output.geometry = input.geometry;
  output.units = input.units;
  output.Resize(input.slices, input.rows, input.columns);
  if (input.slices == 0) return output;

  std::vector<double> sigmas;
  for (int64_t s = 0; s < input.slices; ++s) {
    sigmas.push_back(EstimateNoiseSigma(input.Slice(s), input.rows, input.columns));
  }
  std::nth_element(sigmas.begin(), sigmas.begin() + static_cast<long>(sigmas.size() / 2),
                   sigmas.end());
  const double noiseSigma = sigmas[sigmas.size() / 2];
  const double sigmaRange =
      std::max(parameters_.rangeFactor * noiseSigma, parameters_.minSigmaRange);
  const double rangeScale = -1.0 / (2.0 * sigmaRange * sigmaRange);
  const double spatialScale = -1.0 / (2.0 * parameters_.sigmaSpatial * parameters_.sigmaSpatial);
  const int64_t radius = parameters_.radius;
  const int64_t rows = input.rows;
  const int64_t columns = input.columns;

  c10::InferenceMode inferenceMode;
  for (int64_t begin = 0; begin < input.slices; begin += parameters_.slicesPerBatch) {
    context.ThrowIfCancelled();
    const int64_t count = std::min<int64_t>(parameters_.slicesPerBatch, input.slices - begin);
    const at::Tensor x = View(input.Slice(begin), count, rows, columns);
    // Mirror the border so edge pixels have full neighbourhoods; tiny images replicate.
    const at::Tensor padded = (rows > radius && columns > radius)
                                  ? at::reflection_pad2d(x, {radius, radius, radius, radius})
                                  : at::replication_pad2d(x, {radius, radius, radius, radius});
    at::Tensor numerator = at::zeros_like(x);
    at::Tensor denominator = at::zeros_like(x);
    for (int64_t dy = -radius; dy <= radius; ++dy) {
      for (int64_t dx = -radius; dx <= radius; ++dx) {
        const double spatial = std::exp(static_cast<double>(dx * dx + dy * dy) * spatialScale);
        const at::Tensor neighbour = padded.slice(2, radius + dy, radius + dy + rows)
                                         .slice(3, radius + dx, radius + dx + columns);
        at::Tensor weight = neighbour - x;
        weight.square_().mul_(rangeScale).exp_().mul_(spatial);
        numerator.addcmul_(weight, neighbour);
        denominator.add_(weight);
      }
    }
    View(output.Slice(begin), count, rows, columns).copy_(numerator.div_(denominator));
    context.Report(static_cast<double>(begin + count) / static_cast<double>(input.slices));
  }
  return output;
}

}  // namespace enhance
