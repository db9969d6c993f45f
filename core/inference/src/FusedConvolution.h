// SPDX-License-Identifier: GPL-3.0-or-later
//
// Fused convolutions for networks that run on the CPU (TorchModel's "fused" layout).
//
// FuseConvolutions() freezes a TorchScript module (its weights become constants) and
// replaces each 2-D convolution with constant weights and one group (any stride or dilation),
// together with what it feeds alone (an addition, such as a per-channel timestep shift, then
// a ReLU or a SiLU), by the operator enhance::conv2d_fused. A transposed convolution whose kernel
// equals its stride becomes a 1x1 convolution and a pixel shuffle first, and a ReLU or SiLU
// that follows a pixel shuffle moves before it, onto the convolution (FusedGraph.cpp); pixel
// shuffles become enhance::pixel_shuffle, which writes where the convolutions do. The
// operator reads and writes channels-last (NHWC) tensors and computes:
//   - with 8 output channels or more: one oneDNN convolution with the activation as a
//     post-operation (when the build has oneDNN; otherwise LibTorch's convolution and an
//     in-place activation), so no layer makes a separate pass over memory for it;
//   - with fewer and no dilation (the last layer of an image-to-image network): a direct
//     loop over the NHWC input, vectorised over the input channels. oneDNN and LibTorch
//     pad the output channels to the vector width, so a 16-to-1 convolution would cost
//     as much as a 16-to-16 one.
// Every other operation stays as LibTorch runs it. Results equal at::conv2d's up to
// floating-point rounding (tests/unit/FusedConvolutionTest.cpp).
//
// In bf16 (FusedPrecision), the wide convolutions take bfloat16 inputs and weights and sum
// their products in float; a layer whose every reader is another such convolution writes
// bfloat16, every other layer float, so each operation outside the convolutions (the
// residual addition of a denoiser, a pixel shuffle) still sees float. The narrow output
// layers stay in float. On a processor with AVX-512 BF16 (or AMX) oneDNN computes these
// at twice the float rate or more; elsewhere it emulates them, more slowly, so the model
// loader tries bf16 only on such processors (CpuHasBf16).
//
// Thread-safety: the operator may run from several threads at once. oneDNN primitives and
// their reordered weights are cached per weight tensor and input shape under a mutex (the
// cache holds a reference to the weights, so an address is never reused while cached);
// each call has its own scratch memory.
#pragma once
#include <torch/script.h>

#include <memory>

#include "FusedOutput.h"

namespace enhance {

// True when this build calls oneDNN directly for the wide convolutions.
bool FusedConvolutionUsesOneDnn();

// True when the processor has bfloat16 dot-product instructions (AVX-512 BF16 or AMX-BF16)
// and this build calls oneDNN directly, so that bf16 convolutions can be faster than float.
bool CpuHasBf16();

// What a fused convolution applies to its output as it writes it (the operator's
// `activation` argument).
enum class FusedActivation : int64_t { kNone = 0, kRelu = 1, kSilu = 2 };

// What a fused convolution computes in (the operator's `precision` argument).
enum class FusedPrecision : int64_t {
  kFloat = 0,                // float in, float out
  kBFloat16FloatOutput = 1,  // bfloat16 inputs and weights, float sums, float output
  kBFloat16 = 2,             // the same, bfloat16 output
};

// True when the operator computes a convolution of these weights and dilation with the
// direct loop, in float: fewer than 8 outputs, no dilation, and at least 8 inputs or a
// kernel row of 8 to 64 values (kernel width x inputs: a network's last 3x3 convolution
// from 4 channels to 1, which oneDNN computes slowly).
bool IsNarrowConvolution(const at::Tensor& weight, c10::IntArrayRef dilation);

// A frozen copy of `module` (which must be in eval mode) with its convolutions replaced as
// above, in `precision` (kFloat, or kBFloat16 for bf16 where the operator supports it);
// `replaced` receives how many were. Throws c10::Error when the module cannot be frozen.
torch::jit::Module FuseConvolutions(const torch::jit::Module& module, int* replaced,
                                    FusedPrecision precision = FusedPrecision::kFloat);

// The operator itself: at::conv2d(input, weight, bias, stride, padding, dilation), plus `shift`
// when one is given, then the activation (a ReLU or a SiLU, or none); the result is channels-last,
// float or (kBFloat16) bfloat16. An empty `dilation` or `stride` means 1. The input may be float or
// bfloat16. A per-channel shift ([N or 1, C, 1, 1], float: a diffusion network's timestep
// embedding) is added with the bias, in the same pass; any other is added as at::add would. Inputs
// it was not made for (other dtypes or devices) are handed to at::conv2d.
at::Tensor FusedConv2d(const at::Tensor& input, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding,
                       FusedActivation activation, c10::IntArrayRef dilation = {},
                       FusedPrecision precision = FusedPrecision::kFloat,
                       const c10::optional<at::Tensor>& shift = c10::nullopt,
                       c10::IntArrayRef stride = {});

// The same with a ReLU or none.
inline at::Tensor FusedConv2d(const at::Tensor& input, const at::Tensor& weight,
                              const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding,
                              bool relu, c10::IntArrayRef dilation = {},
                              FusedPrecision precision = FusedPrecision::kFloat,
                              const c10::optional<at::Tensor>& shift = c10::nullopt,
                              c10::IntArrayRef stride = {}) {
  return FusedConv2d(input, weight, bias, padding,
                     relu ? FusedActivation::kRelu : FusedActivation::kNone, dilation, precision,
                     shift, stride);
}

}  // namespace enhance
