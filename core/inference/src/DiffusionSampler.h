// SPDX-License-Identifier: GPL-3.0-or-later
//
// Sampling of a conditional diffusion model in the node: the noise schedule, the inference
// timesteps, the DDIM update (epsilon, v or sample prediction, eta >= 0), and noise that is
// a function of (seed, series key, slice position, sample, step, pixel) alone, so that the
// same request gives the same pixels however the slices are tiled or batched.
//
// The network is only the denoiser: forward(x_t [B,1,h,w], t [B], condition [B,C,h,w]) ->
// [B,1,h,w], in normalised units. Everything here is a value type or a pure function;
// SampleBatch() is reentrant (it keeps no state between calls). Internal to core/inference.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "SliceEngine.h"
#include "enhance/inference/ModelSpec.h"

namespace enhance {

// ā_t for t = 0 .. trainingTimesteps - 1 (the cumulative product of 1 - β_t), from the
// sampler's schedule: linear or scaled-linear β, the cosine schedule of Nichol and
// Dhariwal (2021) with s = 0.008 and β capped at 0.999, or the manifest's own table.
std::vector<double> AlphasCumprod(const SamplerSpec& sampler);

// The inference timesteps, descending, each in [0, trainingTimesteps): the manifest's list,
// or `count` steps spaced as "linspace" (rounded linspace from T - 1 down to 0), "leading"
// (k * floor(T / count)) or "trailing" (round(T - k * T / count) - 1).
std::vector<int> InferenceTimesteps(const SamplerSpec& sampler);

// One DDIM update from x_t at timestep t to the previous timestep (ā_prev = 1 after the
// last step: the result is the prediction of x_0). `output` is the network's prediction
// (ε, v or x_0, per sampler.prediction). With clipping, the predicted x_0 is clamped to
// the sampler's range and ε recomputed from it. `noise` (standard normal, same shape) is
// used when eta > 0; it may be undefined when eta == 0.
at::Tensor DdimStep(const SamplerSpec& sampler, const at::Tensor& xt, const at::Tensor& output,
                    double alphaCumprod, double alphaCumprodPrevious, const at::Tensor& noise);

// Standard normal noise for one tile of one slice, a pure function of its arguments:
// (seed, key) name the request (the manifest's seed and the source series), `position`
// the slice (mm along the normal, to the micrometre), `sample` and `step` the draw
// (step -1: the starting x_T), and each pixel is drawn from its own coordinates on the
// whole slice, so a tile's noise is the same crop of the slice's noise at any tiling.
at::Tensor SliceNoise(uint64_t seed, uint64_t key, double position, int sample, int step,
                      int64_t row, int64_t column, int64_t rows, int64_t columns);

// The network's forward(x_t, t, condition).
using DenoiserFunction = std::function<at::Tensor(const at::Tensor& xt, const at::Tensor& t,
                                                  const at::Tensor& condition)>;

// Called between network evaluations with (evaluations done, evaluations in all); returns
// false to stop (SampleBatch then throws Error(kCancelled)). May be empty.
using SamplerProgress = std::function<bool(int64_t done, int64_t total)>;

// The mean and the standard deviation (population, across samples; zero for one sample)
// of the samples drawn for one batch, in normalised units, each [B,1,h,w].
struct SampledBatch {
  at::Tensor mean;
  at::Tensor deviation;
};

// Draws sampler.samples samples for every item of `condition` ([B,C,h,w]) by DDIM over the
// inference timesteps, and returns their mean and standard deviation.
SampledBatch SampleBatch(const SamplerSpec& sampler, const DenoiserFunction& network,
                         const at::Tensor& condition, const BatchPlacement& placement, uint64_t key,
                         const SamplerProgress& progress = {});

}  // namespace enhance
