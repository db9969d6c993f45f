// SPDX-License-Identifier: GPL-3.0-or-later
//
// Int8 convolutions for the fused CPU layout (FusedConvolution.h), in the way of oneDNN's
// int8 inference: weights quantized per output channel (scale = max |w| / 127), activations
// per tensor with a scale calibrated on the model's calibration input, products of 8-bit
// integers summed in 32 bits and scaled back. On a processor with VNNI (AVX-512 VNNI,
// AVX-VNNI or AMX) oneDNN computes them at about four times the float rate.
//
// The operator enhance::conv2d_int8 takes, besides the convolution's own arguments, a small
// float tensor `quantization` (the QuantizationEntry entries below):
//   - input scale 0: calibration. The convolution runs in float (as enhance::conv2d_fused)
//     and records the smallest and largest input value it sees into the tensor;
//   - otherwise the input (float, quantized here; or already 8-bit, from an int8 layer
//     before) is read as unsigned 8-bit (activations after a ReLU: never negative) or signed,
//     and the output is float (output scale 0) or 8-bit for a layer whose every reader is an
//     int8 convolution, so that the activations between such layers stay 8-bit.
// FuseConvolutionsInt8() builds such a graph and calibrates it.
//
// Thread-safety: as enhance::conv2d_fused. Calibration writes into its tensors and runs on
// one thread, before the module is shared.
#pragma once
#include <torch/script.h>

#include <vector>

namespace enhance {

// True when the processor has 8-bit dot-product instructions (AVX-512 VNNI, AVX-VNNI or
// AMX-INT8) and this build calls oneDNN directly, so that int8 convolutions can be faster
// than float.
bool CpuHasInt8();

// The entries of the operator's `quantization` tensor.
enum QuantizationEntry : int64_t {
  kInputScale = 0,   // real value = scale x 8-bit value; 0 while calibrating
  kInputSigned = 1,  // 1: signed 8-bit input, 0: unsigned
  kOutputScale = 2,  // 0: float output
  kOutputSigned = 3,
  kObservedMin = 4,  // the input's range seen during calibration
  kObservedMax = 5,
  kLayer = 6,  // the layer's index in the graph (keeps the constants of layers distinct)
  kQuantizationEntries = 7,
};

// The operator: at::conv2d(input, weight, bias, 1, padding, dilation), then a ReLU when
// `relu`, computed as `quantization` says (see above); channels-last output.
at::Tensor Int8Conv2d(const at::Tensor& input, const at::Tensor& weight,
                      const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding, bool relu,
                      c10::IntArrayRef dilation, const at::Tensor& quantization);

// The activation scales of a network's wide convolutions (those bf16 would take,
// FusedGraph.cpp), in graph order, calibrated by running `calibration` (forward arguments,
// in turn) through it in float. Throws c10::Error when the module cannot be frozen,
// std::runtime_error when a calibration input fails or a layer sees no finite input.
struct Int8Calibration {
  std::vector<at::Tensor> quantization;  // one per wide convolution
  size_t Layers() const { return quantization.size(); }
};
Int8Calibration CalibrateInt8(const torch::jit::Module& module,
                              const std::vector<std::vector<c10::IValue>>& calibration);

// A frozen copy of `module` (in eval mode) whose wide convolutions run in int8 with those
// scales where `int8` (one flag per wide convolution) says so, and otherwise in bf16
// (`demoteToBf16`) or float; the other convolutions run as in the fused float layout.
// `replaced` receives how many convolutions run in int8.
torch::jit::Module FuseConvolutionsInt8(const torch::jit::Module& module,
                                        const Int8Calibration& calibration,
                                        const std::vector<bool>& int8, bool demoteToBf16,
                                        int* replaced);

// Both at once, every wide convolution in int8.
torch::jit::Module FuseConvolutionsInt8(const torch::jit::Module& module,
                                        const std::vector<std::vector<c10::IValue>>& calibration,
                                        int* replaced);

}  // namespace enhance
