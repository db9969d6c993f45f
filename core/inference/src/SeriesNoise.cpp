// SPDX-License-Identifier: GPL-3.0-or-later
#include "SeriesNoise.h"

#include <algorithm>
#include <cmath>

#include "enhance/inference/BilateralDenoiser.h"

namespace enhance {

bool IsMagnitude(const Volume& volume) {
  return std::all_of(volume.voxels.begin(), volume.voxels.end(), [](float v) { return v >= 0; });
}

std::vector<uint8_t> NoisyPixels(const Volume& volume, int64_t k) {
  const float* x = volume.Slice(k);
  const float* above = volume.Slice(k - 1);
  const float* below = volume.Slice(k + 1);
  std::vector<uint8_t> counted(static_cast<size_t>(volume.VoxelsPerSlice()));
  for (int64_t q = 0; q < volume.VoxelsPerSlice(); ++q) {
    counted[static_cast<size_t>(q)] = !(x[q] == above[q] && x[q] == below[q]);
  }
  return counted;
}

NeighbourDifference MeasureNeighbourDifference(const Volume& volume, int64_t k,
                                               const std::vector<uint8_t>& counted) {
  constexpr double kMadToSigma = 1.0 / 0.6744897501960817;
  const float* x = volume.Slice(k);
  const float* above = volume.Slice(k - 1);
  const float* below = volume.Slice(k + 1);
  std::vector<float> magnitudes;
  double squares = 0;
  for (int64_t q = 0; q < volume.VoxelsPerSlice(); ++q) {
    if (!counted[static_cast<size_t>(q)]) continue;
    const double d = x[q] - 0.5 * (static_cast<double>(above[q]) + below[q]);
    squares += d * d;
    magnitudes.push_back(static_cast<float>(std::abs(d)));
  }
  NeighbourDifference result;
  if (magnitudes.empty()) return result;
  const auto middle = magnitudes.begin() + static_cast<long>(magnitudes.size() / 2);
  std::nth_element(magnitudes.begin(), middle, magnitudes.end());
  result.sigma = *middle * kMadToSigma / std::sqrt(1.5);
  result.pixels = static_cast<int64_t>(magnitudes.size());
  result.meanSquare = squares / static_cast<double>(magnitudes.size());
  return result;
}

double MaskedInPlaneSigma(const float* x, int64_t rows, int64_t columns,
                          const std::vector<uint8_t>& counted) {
  std::vector<float> response;
  for (int64_t r = 1; r + 1 < rows; ++r) {
    for (int64_t c = 1; c + 1 < columns; ++c) {
      bool inside = true;
      double value = 0;
      for (int64_t dr = -1; dr <= 1 && inside; ++dr) {
        for (int64_t dc = -1; dc <= 1; ++dc) {
          const int64_t q = (r + dr) * columns + c + dc;
          inside = inside && counted[static_cast<size_t>(q)];
          value += (dr == 0 ? -2.0 : 1.0) * (dc == 0 ? -2.0 : 1.0) * x[q];
        }
      }
      if (inside) response.push_back(static_cast<float>(std::abs(value)));
    }
  }
  if (response.size() < 16) return -1.0;
  constexpr double kMadToSigma = 1.0 / 0.6744897501960817;
  const auto middle = response.begin() + static_cast<long>(response.size() / 2);
  std::nth_element(response.begin(), middle, response.end());
  return *middle * kMadToSigma / 6.0;
}

CountedPixels PixelsToScore(const Volume& volume, int64_t k, bool magnitude) {
  const int64_t rows = volume.rows, columns = volume.columns;
  const float* x = volume.Slice(k);
  const float* above = volume.Slice(k - 1);
  const float* below = volume.Slice(k + 1);
  CountedPixels result;
  result.counted = NoisyPixels(volume, k);
  result.sigma = std::min(EstimateNoiseSigma(x, rows, columns),
                          MeasureNeighbourDifference(volume, k, result.counted).sigma);
  if (!magnitude || !(result.sigma > 0)) return result;
  const float floor = static_cast<float>(3 * result.sigma);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < columns; ++c) {
      float sum = 0;
      int n = 0;
      for (int64_t dr = std::max<int64_t>(0, r - 1); dr <= std::min(rows - 1, r + 1); ++dr) {
        for (int64_t dc = std::max<int64_t>(0, c - 1); dc <= std::min(columns - 1, c + 1); ++dc) {
          const int64_t q = dr * columns + dc;
          sum += x[q] + above[q] + below[q];
          n += 3;
        }
      }
      if (sum / static_cast<float>(n) <= floor)
        result.counted[static_cast<size_t>(r * columns + c)] = 0;
    }
  }
  const double inPlane = MaskedInPlaneSigma(x, rows, columns, result.counted);
  const double neighbours = MeasureNeighbourDifference(volume, k, result.counted).sigma;
  result.sigma = inPlane >= 0 ? std::min(inPlane, neighbours) : neighbours;
  return result;
}

}  // namespace enhance
