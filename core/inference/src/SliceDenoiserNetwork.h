// SPDX-License-Identifier: GPL-3.0-or-later
//
// The networks the self-supervised denoiser trains on each series, and their training
// (SelfSupervisedDenoiser.h). Both learn from triplets of neighbouring slices
// (k - 1, k, k + 1), each with its own input and target:
// - SliceDenoiserNetwork (neighbouring-slice Noise2Noise): slice k in, the mean of its
//   neighbours as the target;
// - BlindSpotNetwork (neighbouring-slice blind spot): the three slices in, slice k as the
//   target, the network blind to slice k within a square around each output pixel.
// Internal to core/inference. Not thread-safe: one run owns one network.
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

// A network trained on triplets of slices ([B, 3, h, w] in network units: slices k - 1,
// k and k + 1) to denoise slice k.
class SeriesNetwork {
 public:
  virtual ~SeriesNetwork() = default;
  // The network's input and its self-supervised target, from triplets.
  virtual at::Tensor InputOf(const at::Tensor& triplets) const = 0;
  virtual at::Tensor TargetOf(const at::Tensor& triplets) const = 0;
  // The self-supervised loss of what the network must beat on held-out slices, and what
  // that is (LearningReport::heldOutBaseline).
  virtual double BaselineLoss(const at::Tensor& triplets) const = 0;
  virtual const char* Baseline() const = 0;
  virtual at::Tensor Forward(const at::Tensor& input) const = 0;  // -> [B, 1, h, w]
  // The same without gradients, on the CPU through the fused convolutions
  // (FusedConvolution.h: oneDNN with the ReLU fused, channels-last), equal to Forward's
  // up to floating-point rounding; elsewhere Forward.
  virtual at::Tensor Infer(const at::Tensor& input) const = 0;
  std::vector<at::Tensor>& Parameters() { return parameters_; }

 protected:
  std::vector<at::Tensor> parameters_;  // weight, bias of each layer in turn
};

// A residual CNN of 3x3 convolutions on slice k: x + f(x), f's last layer starting at
// zero so that the untrained network is the identity; the target is the mean of slices
// k - 1 and k + 1. Weights start from `seed` (Kaiming normal).
class SliceDenoiserNetwork final : public SeriesNetwork {
 public:
  SliceDenoiserNetwork(int layers, int features, uint64_t seed, const c10::Device& device);
  at::Tensor InputOf(const at::Tensor& triplets) const override;
  at::Tensor TargetOf(const at::Tensor& triplets) const override;
  // The input itself: the loss of slice k against the mean of its neighbours.
  double BaselineLoss(const at::Tensor& triplets) const override;
  const char* Baseline() const override { return "the input"; }
  at::Tensor Forward(const at::Tensor& x) const override;
  at::Tensor Infer(const at::Tensor& x) const override;
};

// Slice k from its two neighbours and from slice k itself outside the square of
// `holeRadius` pixels around each output pixel (a blind spot that spatially correlated
// noise, such as CT's, does not reach across); the target is slice k. Since its output
// at a pixel never sees that pixel's noise, nor the noise correlated with it, the
// network cannot learn to reproduce the noise, and the target is slice k itself: no
// change of anatomy between slices biases it.
//
// Slice k reaches the output only through a ring convolution (radius holeRadius + 1 to
// holeRadius + 2, the square inside held at zero) and 3x3 convolutions dilated by
// 2 * holeRadius + 3, which cannot step back into the square; the neighbours go through
// two 3x3 convolutions. Then 1x1 convolutions; the output is the mean of the neighbours
// plus what the network adds, starting at zero.
class BlindSpotNetwork final : public SeriesNetwork {
 public:
  BlindSpotNetwork(int holeRadius, int dilatedLayers, int features, uint64_t seed,
                   const c10::Device& device);
  at::Tensor InputOf(const at::Tensor& triplets) const override;   // the triplets
  at::Tensor TargetOf(const at::Tensor& triplets) const override;  // slice k
  // The untrained network: the loss of the mean of the neighbours against slice k. (The
  // input itself cannot be scored by a loss it is the target of; CombineWithInput then
  // keeps it wherever the network's estimate departs from it by more than the noise.)
  double BaselineLoss(const at::Tensor& triplets) const override;
  const char* Baseline() const override { return "the mean of the neighbouring slices"; }
  at::Tensor Forward(const at::Tensor& x) const override;
  at::Tensor Infer(const at::Tensor& x) const override;
  int HoleRadius() const { return holeRadius_; }

 private:
  at::Tensor Run(const at::Tensor& x, bool fused) const;
  int holeRadius_;
  int ringRadius_;
  int dilation_;
  at::Tensor ringMask_;  // [1, 1, K, K]: 0 inside the hole, 1 on the ring
};

// Trains `network` on random square patches of the training triplets, in random flips and
// transposes, and checks it on the held-out ones. Fills the report's steps, time, losses
// and curve; `applied` tells whether the network lowered the held-out loss below the
// baseline's (SeriesNetwork::BaselineLoss). Progress goes from 0 to `progressShare`;
// cancellation is honoured between steps.
void TrainOnNeighbours(SeriesNetwork& network, const Volume& volume, const NormalisationMap& map,
                       const SelfSupervisedParameters& parameters, const NeighbourPairs& pairs,
                       const RunContext& context, double progressShare, const c10::Device& device,
                       LearningReport& report);

// The network applied to slices [begin, begin + count) of `volume` (the first and last
// slices' missing neighbour taken as their other one), in network units mapped back,
// averaged over `augmentations` flips and transposes; written to `out` (count slices).
void DenoiseSlices(const SeriesNetwork& network, const Volume& volume, const NormalisationMap& map,
                   int64_t begin, int64_t count, int augmentations, const c10::Device& device,
                   float* out);

// The noise's standard deviation around each pixel of slice k ([B, 1, h, w] from triplets
// [B, 3, h, w], in their units), from d = slice k - the mean of its neighbours: the median
// of |d| over blocks of `block` x `block` pixels (most pixels of a block show no change of
// anatomy, so d is noise there, of variance 1.5 sigma^2), interpolated between the blocks'
// centres. CT's noise varies across a slice with the attenuation along the rays; one
// figure for the slice would be too low in the body and too high outside. Pixels equal in
// the three slices (padding) count for nothing.
at::Tensor NoiseDeviationMap(const at::Tensor& triplets, int64_t block = 32);

// The blind spot's estimate f of slices [begin, begin + count) of `volume` combined with
// the noisy slices y themselves, pixel by pixel, as the mean of x given y = x + noise of
// variance sigma^2 (NoiseDeviationMap, scaled down to the slice's own noise level where
// EstimateNoise measures one below it) and x ~ N(f, tau^2): f + tau^2 / (tau^2 + sigma^2)
// (y - f), tau^2 the mean square of y - f over the `window` x `window` pixels around less
// `margin` sigma^2 (at least 0). Where f matches y within the noise, f; where it departs
// from y by more than the noise (an edge it missed), toward y; where there is no noise, y.
// `estimate` ([count, rows, columns], in the volume's units) is overwritten.
void CombineWithInput(const Volume& volume, int64_t begin, int64_t count, float* estimate,
                      int window, double margin);

}  // namespace enhance
