// SPDX-License-Identifier: GPL-3.0-or-later
//
// The network the self-supervised denoiser trains on each series, and its training on
// neighbouring-slice pairs (SelfSupervisedDenoiser.h). Internal to core/inference.
// Not thread-safe: one run owns one network.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "SliceEngine.h"
#include "enhance/base/Volume.h"
#include "enhance/inference/Model.h"
#include "enhance/inference/SelfSupervisedDenoiser.h"

namespace enhance {

// A residual CNN of 3x3 convolutions: x + f(x), f's last layer starting at zero so that
// the untrained network is the identity. Weights start from `seed` (Kaiming normal).
class SliceDenoiserNetwork {
 public:
  SliceDenoiserNetwork(int layers, int features, uint64_t seed, const c10::Device& device);
  at::Tensor Forward(const at::Tensor& x) const;  // [B, 1, h, w] -> [B, 1, h, w]
  // The same without gradients, on the CPU through the fused convolutions
  // (FusedConvolution.h: oneDNN with the ReLU fused, channels-last, the last layer's
  // direct loop), equal to Forward's up to floating-point rounding; elsewhere Forward.
  at::Tensor Infer(const at::Tensor& x) const;
  std::vector<at::Tensor>& Parameters() { return parameters_; }

 private:
  std::vector<at::Tensor> parameters_;  // weight, bias of each layer in turn
};

// Trains `network` on pairs (slice k, mean of slices k - 1 and k + 1) of `volume`, on
// random square patches with random flips and transposes, and checks it on the held-out
// pairs. Fills the report's steps, time, losses and curve; `applied` tells whether the
// network lowered the held-out loss below the input's. Progress goes from 0 to
// `progressShare`; cancellation is honoured between steps.
void TrainOnNeighbours(SliceDenoiserNetwork& network, const Volume& volume,
                       const NormalisationMap& map, const SelfSupervisedParameters& parameters,
                       const NeighbourPairs& pairs, const RunContext& context, double progressShare,
                       const c10::Device& device, LearningReport& report);

// The network applied to slices [begin, begin + count) of `volume`, in network units
// mapped back, averaged over `augmentations` flips and transposes; written to `out`
// (count slices).
void DenoiseSlices(const SliceDenoiserNetwork& network, const Volume& volume,
                   const NormalisationMap& map, int64_t begin, int64_t count, int augmentations,
                   const c10::Device& device, float* out);

}  // namespace enhance
