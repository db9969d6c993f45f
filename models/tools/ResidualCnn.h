// SPDX-License-Identifier: GPL-3.0-or-later
//
// The network of the shipped denoising and super-resolution models, built directly as a
// torch::jit::Module (registered parameters + TorchScript source), so the archive saved
// from it is a standard TorchScript file that any LibTorch or PyTorch opens.
//
// forward(x): x [B, C, h, w] in the manifest's normalised units; the middle channel is
// the slice being processed. A stack of 3x3 convolutions with ReLU predicts a residual
// that is added to a base image:
//   kMiddle        the middle channel (upsampled bicubically when scale > 1, the residual
//                  then coming out of a pixel shuffle): denoising, in-plane super-resolution
//   kMiddlePair    the mean of the two middle channels, i.e. linear interpolation half-way
//                  between the slices on both sides of a gap: through-plane x2
//   kConstant      `baseValue` everywhere: image-to-image translation such as MR to CT
// Convolutions may be dilated (`dilations`, one per layer) to widen the receptive field
// at the same cost. Inside the network values are multiplied by `gain` so that noise of
// a few HU is of order 0.1 for the convolutions; zero padding then stands for the bottom
// of the window (air for CT, background for MR).
// Returns [B, 1, h * scale, w * scale]. Fully convolutional.
//
// With `unshuffle` u > 1 the convolutions run at 1/u of the resolution on u*u times the
// channels (a pixel unshuffle first, a pixel shuffle of the residual last): the same
// work per pixel is spread over fewer, wider layers, which CPU convolution kernels run
// near their matrix-multiply rate, and the receptive field grows u times. Such networks
// need h and w to be multiples of u (the manifest's size_multiple).
//
// Building is deterministic for a seed. The module is not synchronised: train it from
// one thread.
#pragma once

#include <json/value.h>
#include <torch/script.h>

#include <cstdint>
#include <filesystem>
#include <vector>

namespace enhance::models {

struct ResidualCnn {
  enum class Base { kMiddle, kMiddlePair, kConstant };
  int64_t inChannels = 1;  // 2 * slice_context + 1 (through-plane: 2 * max(1, slice_context))
  int64_t features = 20;
  int64_t layers = 7;  // 3x3 convolutions, the last one producing the residual
  int64_t scale = 1;   // in-plane upsampling: 1 or 2
  double gain = 20.0;
  Base base = Base::kMiddle;
  double baseValue = 0.0;          // kConstant only
  std::vector<int64_t> dilations;  // one per layer; empty: no dilation
  int64_t unshuffle = 1;           // 1, or the pixel-unshuffle factor (denoisers only, scale 1)
};

torch::jit::Module BuildResidualCnn(const ResidualCnn& net, uint64_t seed);

// Input pixels each side of an output pixel that can influence it (the convolutions, or
// the bicubic base when that reaches further).
int64_t ReceptiveRadius(const ResidualCnn& net);

// Multiply-accumulates for one 512x512 input slice, in units of 10^9.
double GmacPer512Slice(const ResidualCnn& net);
// The same for one 512x512 output slice (the input is 512 / scale pixels wide).
double GmacPer512OutputSlice(const ResidualCnn& net);

int64_t ParameterCount(const torch::jit::Module& module);

// Saves folder/model.pt and folder/manifest.json (creating the folder).
void SaveModelFolder(torch::jit::Module& module, const Json::Value& manifest,
                     const std::filesystem::path& folder);

}  // namespace enhance::models
