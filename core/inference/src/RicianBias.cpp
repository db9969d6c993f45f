// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/RicianBias.h"

#include <algorithm>
#include <cmath>

namespace enhance {
namespace {

constexpr double kStep = 0.01;  // of the table's signal-to-noise ratios
constexpr int kEntries = 1001;  // 0 to 10; beyond, sqrt(snr^2 + 1) within 1e-3

// The mean over sigma at snr = i kStep.
const std::vector<double>& MeanTable() {
  static const std::vector<double> table = [] {
    std::vector<double> t(kEntries);
    for (int i = 0; i < kEntries; ++i) t[static_cast<size_t>(i)] = RicianMeanOverSigma(i * kStep);
    return t;
  }();
  return table;
}

}  // namespace

double RicianMeanOverSigma(double snr) {
  const double t = snr * snr / 4;
  if (t > 40) return std::sqrt(snr * snr + 1);  // the series' first terms, past 1e-6
  // L_1/2(z) = exp(z / 2) ((1 - z) I0(-z / 2) - z I1(-z / 2)), z = -snr^2 / 2 = -2 t;
  // exp(-t) I(t) stays finite where I(t) alone would overflow.
  const double z = -2 * t;
  const double laguerre =
      std::exp(-t) * ((1 - z) * std::cyl_bessel_i(0.0, t) - z * std::cyl_bessel_i(1.0, t));
  return std::sqrt(M_PI / 2) * laguerre;
}

float UnbiasedRicianSignal(float mean, double sigma) {
  if (!(sigma > 0)) return mean;
  const std::vector<double>& table = MeanTable();
  const double m = mean / sigma;
  if (m <= table.front()) return 0.0f;
  if (m >= table.back()) return static_cast<float>(sigma * std::sqrt(m * m - 1));
  const auto above = std::upper_bound(table.begin(), table.end(), m);
  const auto i = static_cast<double>(above - table.begin() - 1);
  const double low = *(above - 1);
  const double snr = (i + (m - low) / (*above - low)) * kStep;
  return static_cast<float>(sigma * snr);
}

bool HasRicianBackground(const Volume& volume, double sigma) {
  constexpr int64_t kSlices = 8;
  if (!(sigma > 0) || volume.slices == 0 || volume.rows < 3 || volume.columns < 3) return false;
  const int64_t rows = volume.rows, columns = volume.columns;
  const int64_t count = std::min(kSlices, volume.slices);
  std::vector<float> background;
  int64_t seen = 0;
  for (int64_t i = 0; i < count; ++i) {
    const float* x = volume.Slice(i * volume.slices / count + volume.slices / (2 * count));
    for (int64_t r = 1; r + 1 < rows; ++r) {
      for (int64_t c = 1; c + 1 < columns; ++c) {
        double sum = 0;
        for (int64_t dr = -1; dr <= 1; ++dr) {
          for (int64_t dc = -1; dc <= 1; ++dc) sum += x[(r + dr) * columns + c + dc];
        }
        ++seen;
        if (sum / 9 < 2 * sigma) background.push_back(x[r * columns + c]);
      }
    }
  }
  if (background.empty() || 50 * static_cast<int64_t>(background.size()) < seen) return false;
  const auto middle = background.begin() + static_cast<long>(background.size() / 2);
  std::nth_element(background.begin(), middle, background.end());
  const double ratio = *middle / sigma;
  return ratio >= 0.85 && ratio <= 1.5;
}

}  // namespace enhance
