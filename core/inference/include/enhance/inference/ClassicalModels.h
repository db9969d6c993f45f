// SPDX-License-Identifier: GPL-3.0-or-later
//
// Built-in models that need no trained weights: baselines to compare learned models
// against, and fallbacks. Each is a Model like any TorchScript model. Thread-safe.
//
//   classical-bilateral   denoise   CT, MR   noise-adaptive bilateral filter
//   classical-gaussian    denoise   CT, MR   Gaussian filter, sigma 1 pixel
//   classical-bicubic-x2  superres  CT, MR   bicubic interpolation, in-plane x2
//   classical-bicubic-x4  superres  CT, MR   bicubic interpolation, in-plane x4
//   classical-linear-z2   superres  CT, MR   linear interpolation, through-plane x2
#pragma once

#include <memory>
#include <vector>

#include "enhance/inference/Model.h"

namespace enhance {

std::vector<std::shared_ptr<const Model>> BuiltinModels();

std::shared_ptr<const Model> MakeGaussianDenoiser(double sigmaPixels);
std::shared_ptr<const Model> MakeBicubicUpsampler(int scale);
std::shared_ptr<const Model> MakeLinearThroughPlane();

}  // namespace enhance
