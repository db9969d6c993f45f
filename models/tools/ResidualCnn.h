// SPDX-License-Identifier: GPL-3.0-or-later
//
// The network of the shipped denoising and super-resolution models, built directly as a
// torch::jit::Module (registered parameters + TorchScript source), so the archive saved
// from it is a standard TorchScript file that any LibTorch or PyTorch opens.
//
// forward(x): x [B, C, h, w] in the manifest's normalised units; the middle channel is
// the slice being processed. A stack of 3x3 convolutions with ReLU predicts a residual
// that is added to the middle channel (upsampled bicubically when scale > 1, the residual
// then coming out of a pixel shuffle). Inside the network values are multiplied by
// `gain` so that noise of a few HU is of order 0.1 for the convolutions; zero padding
// then stands for the bottom of the window (air for CT, background for MR).
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

namespace enhance::models {

struct ResidualCnn {
  int64_t inChannels = 1;  // 2 * slice_context + 1
  int64_t features = 20;
  int64_t layers = 7;  // 3x3 convolutions, the last one producing the residual
  int64_t scale = 1;   // in-plane upsampling: 1 or 2
  double gain = 20.0;
  int64_t unshuffle = 1;  // 1, or the pixel-unshuffle factor (denoisers only, scale 1)
};

torch::jit::Module BuildResidualCnn(const ResidualCnn& net, uint64_t seed);

// Pixels of the input each side of an output pixel that can influence it.
int64_t ReceptiveRadius(const ResidualCnn& net);

// Multiply-accumulates for one 512x512 input slice, in units of 10^9.
double GmacPer512Slice(const ResidualCnn& net);

int64_t ParameterCount(const torch::jit::Module& module);

// Saves folder/model.pt and folder/manifest.json (creating the folder).
void SaveModelFolder(torch::jit::Module& module, const Json::Value& manifest,
                     const std::filesystem::path& folder);

}  // namespace enhance::models
