// SPDX-License-Identifier: GPL-3.0-or-later
#include "CtSimulator.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace enhance::models {
namespace {

constexpr double kPi = 3.14159265358979323846;
// Views handled at once: bounds the sampling grids to a few tens of megabytes.
constexpr int64_t kViewsPerChunk = 2;

double ViewAngle(int64_t view, int64_t views) {
  return kPi * static_cast<double>(view) / static_cast<double>(views);
}

// Pixel-centre coordinates relative to the image centre: -(N-1)/2 ... (N-1)/2.
at::Tensor Centred(int64_t n) {
  return at::arange(n, at::kFloat).sub_(static_cast<double>(n - 1) / 2.0);
}

void CheckSlices(const at::Tensor& t, const char* what) {
  if (t.dim() != 3 || t.scalar_type() != at::kFloat) {
    throw std::invalid_argument(std::string(what) + " must be a float tensor [S, rows, columns]");
  }
}

}  // namespace

at::Tensor Project(const at::Tensor& hu, double pixelSpacingMm, const CtScanner& scanner) {
  CheckSlices(hu, "Project: slices");
  const int64_t n = hu.size(2);
  if (hu.size(1) != n) throw std::invalid_argument("Project: slices must be square");
  // Attenuation per pixel length, so that a sum over pixels is the line integral.
  const at::Tensor mu = hu.div(1000.0)
                            .add_(1.0)
                            .mul_(scanner.muWaterPerMm * pixelSpacingMm)
                            .clamp_min_(0.0)
                            .unsqueeze(0);
  const at::Tensor t = Centred(n).view({1, n, 1});  // detector position
  const at::Tensor s = Centred(n).view({1, 1, n});  // position along the ray
  std::vector<at::Tensor> chunks;
  for (int64_t v0 = 0; v0 < scanner.views; v0 += kViewsPerChunk) {
    const int64_t count = std::min(kViewsPerChunk, scanner.views - v0);
    std::vector<double> cosines, sines;
    for (int64_t v = v0; v < v0 + count; ++v) {
      cosines.push_back(std::cos(ViewAngle(v, scanner.views)));
      sines.push_back(std::sin(ViewAngle(v, scanner.views)));
    }
    const at::Tensor c = at::tensor(cosines, at::kFloat).view({count, 1, 1});
    const at::Tensor sn = at::tensor(sines, at::kFloat).view({count, 1, 1});
    // Ray (view, bin) samples the image at t (cos, sin) + s (-sin, cos).
    const at::Tensor x = t * c - s * sn;
    const at::Tensor y = t * sn + s * c;
    // grid_sample with align_corners=false maps pixel-centred coordinate x to 2x/N.
    const at::Tensor grid =
        at::stack({x, y}, -1).mul_(2.0 / static_cast<double>(n)).view({1, count * n, n, 2});
    const at::Tensor samples =
        at::grid_sampler(mu, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners=*/false);
    chunks.push_back(samples.sum(-1).view({hu.size(0), count, n}));
  }
  return at::cat(chunks, 1);
}

at::Tensor AddDoseNoise(const at::Tensor& lineIntegrals, double incidentPhotons,
                        const CtScanner& scanner, uint64_t seed) {
  CheckSlices(lineIntegrals, "AddDoseNoise: sinogram");
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor expected = lineIntegrals.neg().exp_().mul_(incidentPhotons);
  at::Tensor counts = at::poisson(expected, generator);
  counts.add_(at::randn(counts.sizes(), generator, at::kFloat).mul_(scanner.electronicNoise));
  // Photon starvation: a scanner never reports fewer than a fraction of a photon.
  return counts.clamp_min_(0.5).div_(incidentPhotons).log_().neg_();
}

at::Tensor Reconstruct(const at::Tensor& lineIntegrals, double pixelSpacingMm,
                       const CtScanner& scanner) {
  CheckSlices(lineIntegrals, "Reconstruct: sinogram");
  const int64_t slices = lineIntegrals.size(0);
  const int64_t views = lineIntegrals.size(1);
  const int64_t n = lineIntegrals.size(2);
  // Zero-padding to twice the detector avoids wrap-around in the circular convolution.
  int64_t padded = 1;
  while (padded < 2 * n) padded *= 2;
  // Band-limited ramp filter in the spatial domain (Kak and Slaney, eq. 61), whose
  // Fourier transform has the right DC term, unlike a sampled |f|.
  std::vector<float> kernel(static_cast<size_t>(padded), 0.0f);
  kernel[0] = 0.25f;
  for (int64_t k = 1; k < padded / 2; k += 2) {
    const float value = static_cast<float>(-1.0 / (kPi * kPi * static_cast<double>(k * k)));
    kernel[static_cast<size_t>(k)] = value;
    kernel[static_cast<size_t>(padded - k)] = value;
  }
  const at::Tensor response = at::real(at::fft_rfft(at::tensor(kernel, at::kFloat)));
  const at::Tensor filtered =
      at::fft_irfft(at::fft_rfft(lineIntegrals, padded, -1) * response, padded, -1)
          .narrow(-1, 0, n)
          .contiguous()
          .unsqueeze(0);  // [1, S, views, N]

  const at::Tensor xs = Centred(n).view({1, 1, n});  // columns
  const at::Tensor ys = Centred(n).view({1, n, 1});  // rows
  at::Tensor image = at::zeros({slices, n * n}, at::kFloat);
  for (int64_t v0 = 0; v0 < views; v0 += kViewsPerChunk) {
    const int64_t count = std::min(kViewsPerChunk, views - v0);
    std::vector<double> cosines, sines, rows;
    for (int64_t v = v0; v < v0 + count; ++v) {
      cosines.push_back(std::cos(ViewAngle(v, views)));
      sines.push_back(std::sin(ViewAngle(v, views)));
      // The centre of sinogram row v, so the interpolation between views is exact.
      rows.push_back((2.0 * static_cast<double>(v) + 1.0) / static_cast<double>(views) - 1.0);
    }
    const at::Tensor c = at::tensor(cosines, at::kFloat).view({count, 1, 1});
    const at::Tensor sn = at::tensor(sines, at::kFloat).view({count, 1, 1});
    const at::Tensor detector = (xs * c + ys * sn).mul_(2.0 / static_cast<double>(n));
    const at::Tensor row = at::tensor(rows, at::kFloat).view({count, 1, 1}).expand({count, n, n});
    const at::Tensor grid = at::stack({detector, row}, -1).view({1, count, n * n, 2});
    image.add_(at::grid_sampler(filtered, grid, 0, 0, false).sum(2).view({slices, n * n}));
  }
  const double muScale = kPi / static_cast<double>(views) / pixelSpacingMm / scanner.muWaterPerMm;
  return image.mul_(muScale).sub_(1.0).mul_(1000.0).view({slices, n, n});
}

}  // namespace enhance::models
