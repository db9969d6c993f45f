// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/quality/NoisePowerSpectrum.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

// Sum over slices of |DFT|^2 of the masked, mean-free slices [H, W], and the masked pixels.
std::pair<at::Tensor, int64_t> SummedPeriodograms(const at::Tensor& x, const at::Tensor& m) {
  at::Tensor sum = at::zeros({x.size(1), x.size(2)}, at::kDouble);
  int64_t pixels = 0;
  for (int64_t k = 0; k < x.size(0); ++k) {
    const at::Tensor w = m[k];
    const double n = w.sum().item<double>();
    if (n < 2) continue;
    const at::Tensor centred = (x[k] - (x[k] * w).sum() / n) * w;
    sum += at::fft_fft2(centred).abs().pow(2);
    pixels += static_cast<int64_t>(n);
  }
  return {sum, pixels};
}

// Radial frequency of each bin of an H x W DFT, cycles per pixel.
at::Tensor RadialFrequency(int64_t rows, int64_t columns) {
  const auto options = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor fy = at::fft_fftfreq(rows, 1.0, options).view({rows, 1});
  const at::Tensor fx = at::fft_fftfreq(columns, 1.0, options).view({1, columns});
  return (fy * fy + fx * fx).sqrt();
}

}  // namespace

NoisePowerSpectrum ComputeNoisePowerSpectrum(const Volume& noise, const std::vector<uint8_t>& mask,
                                             int64_t bins) {
  if (noise.voxels.empty()) throw Error(ErrorKind::kBadInput, "the volume is empty");
  if (!mask.empty() && mask.size() != noise.voxels.size()) {
    throw Error(ErrorKind::kBadInput, "the mask differs in size from the volume");
  }
  if (bins < 1) throw Error(ErrorKind::kBadInput, "the spectrum needs at least one ring");
  c10::InferenceMode guard;
  const int64_t S = noise.slices, H = noise.rows, W = noise.columns;
  const at::Tensor x =
      at::from_blob(const_cast<float*>(noise.voxels.data()), {S, H, W}).to(at::kDouble);
  const at::Tensor m = mask.empty()
                           ? at::ones({S, H, W}, at::kDouble)
                           : at::from_blob(const_cast<uint8_t*>(mask.data()), {S, H, W}, at::kByte)
                                 .ne(0)
                                 .to(at::kDouble);
  const auto [sum, pixels] = SummedPeriodograms(x, m);
  if (pixels == 0) throw Error(ErrorKind::kBadInput, "the mask is empty");
  // Pixel spacing 1: NPS = |DFT|^2 / pixels; each DFT bin covers 1 / (H W) cycles^2/pixel^2.
  const at::Tensor nps = sum / static_cast<double>(pixels);
  const at::Tensor radius = RadialFrequency(H, W);

  NoisePowerSpectrum result;
  result.pixels = pixels;
  result.area = nps.sum().item<double>() / static_cast<double>(H * W);
  const double total = nps.sum().item<double>();
  result.meanFrequency = total > 0 ? (nps * radius).sum().item<double>() / total : 0;
  const double width = 0.5 / static_cast<double>(bins);
  const at::Tensor ring = (radius / width).floor().to(at::kLong);
  const at::Tensor inside = radius.gt(0) & ring.lt(bins);
  const at::Tensor index = ring.masked_select(inside);
  const at::Tensor values = nps.masked_select(inside);
  const at::Tensor powerSum = at::zeros({bins}, at::kDouble).index_add_(0, index, values);
  const at::Tensor count =
      at::zeros({bins}, at::kDouble).index_add_(0, index, at::ones_like(values));
  const at::Tensor power = (powerSum / count.clamp_min(1)).contiguous();
  double best = -1;
  for (int64_t b = 0; b < bins; ++b) {
    result.frequency.push_back((static_cast<double>(b) + 0.5) * width);
    result.power.push_back(power[b].item<double>());
    if (result.power.back() > best) {
      best = result.power.back();
      result.peakFrequency = result.frequency.back();
    }
  }
  return result;
}

double PowerAt(const NoisePowerSpectrum& nps, double frequency) {
  const std::vector<double>& f = nps.frequency;
  if (f.empty()) return 0;
  if (frequency <= f.front()) return nps.power.front();
  if (frequency >= f.back()) return nps.power.back();
  const size_t i = static_cast<size_t>(std::upper_bound(f.begin(), f.end(), frequency) - f.begin());
  const double t = (frequency - f[i - 1]) / (f[i] - f[i - 1]);
  return (1 - t) * nps.power[i - 1] + t * nps.power[i];
}

Volume Difference(const Volume& test, const Volume& reference) {
  if (test.slices != reference.slices || test.rows != reference.rows ||
      test.columns != reference.columns) {
    throw Error(ErrorKind::kBadInput, "the volumes differ in size");
  }
  Volume d = test;
  for (size_t i = 0; i < d.voxels.size(); ++i) d.voxels[i] -= reference.voxels[i];
  return d;
}

}  // namespace enhance
