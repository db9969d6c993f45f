// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/ClassicalModels.h"

#include <cmath>

#include "EngineModel.h"
#include "enhance/base/Uid.h"
#include "enhance/inference/BilateralDenoiser.h"
#include "enhance/inference/SelfSupervisedDenoiser.h"

namespace enhance {
namespace {

ModelSpec BaseSpec(const std::string& name, const std::string& task, const std::string& use) {
  ModelSpec spec;
  spec.name = name;
  spec.version = "1.0.0";
  spec.task = task;
  spec.modalities = {"CT", "MR"};
  spec.intendedUse = use;
  spec.tileSize = 0;  // whole slices: these operators need no tiling
  spec.maxBatch = 16;
  return spec;
}

std::shared_ptr<const Model> Make(ModelSpec spec, const std::string& parameters,
                                  SliceFunction function) {
  spec.uid = UidFromName(spec.name + "/" + spec.version + "/" + parameters);
  return std::make_shared<EngineModel>(std::move(spec), parameters, std::move(function),
                                       EngineOptions{});
}

}  // namespace

std::shared_ptr<const Model> MakeGaussianDenoiser(double sigma) {
  ModelSpec spec =
      BaseSpec("classical-gaussian", "denoise",
               "Gaussian smoothing; a classical baseline that needs no trained weights.");
  spec.derivationCode = {"113088", "DCM", "Gaussian blur"};
  const int64_t radius = static_cast<int64_t>(std::ceil(3 * sigma));
  std::vector<float> taps;
  double sum = 0;
  for (int64_t i = -radius; i <= radius; ++i) {
    taps.push_back(
        static_cast<float>(std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma))));
    sum += taps.back();
  }
  for (float& t : taps) t = static_cast<float>(t / sum);
  char text[64];
  std::snprintf(text, sizeof(text), "sigma %.2f px", sigma);
  return Make(std::move(spec), text, [taps, radius](const at::Tensor& x) {
    // Separable: rows then columns, mirrored borders, on whatever device x lives.
    const at::Tensor kernel = at::tensor(taps, x.options());
    const auto n = static_cast<int64_t>(taps.size());
    at::Tensor y = at::reflection_pad2d(x, {radius, radius, radius, radius});
    y = at::conv2d(y, kernel.view({1, 1, 1, n}));
    return at::conv2d(y, kernel.view({1, 1, n, 1}));
  });
}

std::shared_ptr<const Model> MakeBicubicUpsampler(int scale) {
  ModelSpec spec = BaseSpec("classical-bicubic-x" + std::to_string(scale), "superres",
                            "Bicubic interpolation; the baseline for in-plane super-resolution.");
  spec.inPlaneScale = scale;
  spec.derivationCode = {"113085", "DCM", "Spatial resampling"};
  return Make(std::move(spec), "bicubic, in-plane x" + std::to_string(scale),
              [scale](const at::Tensor& x) {
                // align_corners=false keeps the field of view: pixel centres of the
                // finer grid sit where DICOM's ImagePositionPatient shift puts them.
                return at::upsample_bicubic2d(x, {x.size(2) * scale, x.size(3) * scale}, false);
              });
}

std::shared_ptr<const Model> MakeLinearThroughPlane() {
  ModelSpec spec = BaseSpec("classical-linear-z2", "superres",
                            "Linear interpolation between slices; the baseline for through-plane "
                            "super-resolution.");
  spec.throughPlaneScale = 2;
  spec.derivationCode = {"113085", "DCM", "Spatial resampling"};
  return Make(std::move(spec), "linear, through-plane x2",
              [](const at::Tensor& x) { return x.slice(1, 0, 1).add(x.slice(1, 1, 2)).mul_(0.5); });
}

std::vector<std::shared_ptr<const Model>> BuiltinModels() {
  return {std::make_shared<BilateralDenoiser>(),
          MakeGaussianDenoiser(1.0),
          MakeBicubicUpsampler(2),
          MakeBicubicUpsampler(4),
          MakeLinearThroughPlane(),
          std::make_shared<SelfSupervisedDenoiser>()};
}

}  // namespace enhance
