// SPDX-License-Identifier: GPL-3.0-or-later
#include "Int8Convolution.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "FusedConvolution.h"

#if ENHANCE_WITH_ONEDNN
#include "OneDnnConvolution.h"
#endif

namespace enhance {
namespace {

struct Quantization {
  float inputScale = 0, outputScale = 0;
  bool inputSigned = false, outputSigned = false;
};

Quantization Read(const at::Tensor& q) {
  if (q.scalar_type() != at::kFloat || q.numel() != kQuantizationEntries || !q.is_contiguous()) {
    throw std::invalid_argument("enhance::conv2d_int8: quantization must be " +
                                std::to_string(kQuantizationEntries) + " contiguous floats");
  }
  const float* v = q.data_ptr<float>();
  return {v[kInputScale], v[kOutputScale], v[kInputSigned] != 0, v[kOutputSigned] != 0};
}

at::ScalarType EightBit(bool isSigned) { return isSigned ? at::kChar : at::kByte; }

// What an int8 layer computes, in float: for builds without oneDNN and inputs oneDNN cannot
// take. 8-bit inputs are scaled back; an 8-bit output is rounded as oneDNN would.
at::Tensor Reference(const at::Tensor& input, const at::Tensor& weight,
                     const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding, bool relu,
                     c10::IntArrayRef dilation, const Quantization& q) {
  const bool eightBit = input.scalar_type() == at::kByte || input.scalar_type() == at::kChar;
  at::Tensor x = eightBit ? input.to(at::kFloat) * q.inputScale : input.to(at::kFloat);
  at::Tensor output = FusedConv2d(x.contiguous(at::MemoryFormat::ChannelsLast), weight, bias,
                                  padding, relu, dilation, FusedPrecision::kFloat);
  if (q.outputScale == 0) return output;
  const double low = q.outputSigned ? -128 : 0, high = q.outputSigned ? 127 : 255;
  return (output / q.outputScale)
      .round_()
      .clamp_(low, high)
      .to(EightBit(q.outputSigned))
      .contiguous(at::MemoryFormat::ChannelsLast);
}

#if ENHANCE_WITH_ONEDNN

using onednn::CpuEngine;
using onednn::dt;
using onednn::tag;

// One int8 layer prepared for one input shape: its weights quantized per output channel
// and reordered into the layout the primitive chose, and the bias in its units.
std::shared_ptr<const onednn::Prepared> Prepare(const onednn::Geometry& g, const at::Tensor& weight,
                                                const at::Tensor& bias, bool relu,
                                                const Quantization& q) {
  auto result = std::make_shared<onednn::Prepared>();
  result->weight = weight;
  result->bias = bias;
  // Per output channel: the weight scale, and the output scale that turns the 32-bit sums
  // into the output's units (float, or the readers' 8-bit scale).
  const at::Tensor weightScale =
      (weight.abs().amax({1, 2, 3}) / 127.0).clamp_min(1e-12).to(at::kFloat).contiguous();
  const at::Tensor outputScale =
      (weightScale * q.inputScale / (q.outputScale > 0 ? q.outputScale : 1.0f)).contiguous();
  // oneDNN adds the bias to the 32-bit sums before the output scale.
  if (bias.defined()) result->runBias = (bias / (weightScale * q.inputScale)).contiguous();
  dnnl::primitive_attr attributes;
  const float* scales = outputScale.data_ptr<float>();
  attributes.set_output_scales(1 << 1, std::vector<float>(scales, scales + g.o));
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    attributes.set_post_ops(ops);
  }
  // The float weights are quantized (w / scale, rounded) as they are reordered; the reorder
  // also computes what a signed 8-bit input needs on processors that want it.
  const at::Tensor inverse = weightScale.reciprocal().contiguous();
  dnnl::primitive_attr quantize;
  quantize.set_output_scales(
      1 << 0, std::vector<float>(inverse.data_ptr<float>(), inverse.data_ptr<float>() + g.o));
  const dt written = q.outputScale > 0 ? (q.outputSigned ? dt::s8 : dt::u8) : dt::f32;
  onednn::Build(*result, g, q.inputSigned ? dt::s8 : dt::u8, dt::s8, written, bias.defined(),
                attributes, quantize);
  return result;
}

// The shape, the ReLU and the quantization (input and output scales and signedness).
using Key = std::tuple<onednn::ShapeKey, bool, float, bool, float, bool>;

onednn::PreparedCache<Key>& Cache() {
  static onednn::PreparedCache<Key> cache;
  return cache;
}

// A float input in 8 bits (rounded to the nearest step, saturated), channels-last.
at::Tensor Quantize(const at::Tensor& input, const Quantization& q) {
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor output = FusedOutput(x.sizes(), EightBit(q.inputSigned));
  const dnnl::memory::dims dims(x.sizes().begin(), x.sizes().end());
  const dnnl::memory::desc from(dims, dt::f32, tag::nhwc);
  const dnnl::memory::desc to(dims, q.inputSigned ? dt::s8 : dt::u8, tag::nhwc);
  dnnl::memory source(from, CpuEngine(), x.data_ptr());
  dnnl::memory destination(to, CpuEngine(), output.data_ptr());
  dnnl::primitive_attr attributes;
  attributes.set_output_scales(0, {1.0f / q.inputScale});
  dnnl::stream stream(CpuEngine());
  dnnl::reorder(dnnl::reorder::primitive_desc(source, destination, attributes))
      .execute(stream, source, destination);
  stream.wait();
  return output;
}

at::Tensor OneDnnInt8(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                      c10::IntArrayRef padding, bool relu, c10::IntArrayRef dilation,
                      const Quantization& q) {
  const at::Tensor x = input.scalar_type() == at::kFloat
                           ? Quantize(input, q)
                           : input.contiguous(at::MemoryFormat::ChannelsLast);
  const onednn::Geometry g{x.size(0),      x.size(1),      x.size(2),      x.size(3),
                           weight.size(0), weight.size(2), weight.size(3), padding[0],
                           padding[1],     dilation[0],    dilation[1]};
  const Key key{onednn::KeyOf(weight, bias, g),
                relu,
                q.inputScale,
                q.inputSigned,
                q.outputScale,
                q.outputSigned};
  const auto prepared = Cache().Get(key, [&] { return Prepare(g, weight, bias, relu, q); });
  at::Tensor output = FusedOutput({g.n, g.o, g.OutHeight(), g.OutWidth()},
                                  q.outputScale > 0 ? EightBit(q.outputSigned) : at::kFloat);
  onednn::Run(*prepared, x, output);
  return output;
}

#endif  // ENHANCE_WITH_ONEDNN

at::Tensor Int8Operator(const at::Tensor& input, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding, bool relu,
                        c10::IntArrayRef dilation, const at::Tensor& quantization) {
  return Int8Conv2d(input, weight, bias, padding, relu, dilation, quantization);
}

TORCH_LIBRARY_FRAGMENT(enhance, library) {
  library.def(
      "conv2d_int8(Tensor input, Tensor weight, Tensor? bias, int[] padding, bool relu, "
      "int[] dilation, Tensor quantization) -> Tensor",
      &Int8Operator);
}

}  // namespace

bool CpuHasInt8() {
#if ENHANCE_WITH_ONEDNN && defined(__GNUC__) && defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
#if defined(__clang__)
    return __builtin_cpu_supports("avx512vnni");
#else
    return __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni") ||
           __builtin_cpu_supports("amx-int8");
#endif
  }();
  return has;
#else
  return false;
#endif
}

at::Tensor Int8Conv2d(const at::Tensor& input, const at::Tensor& weight,
                      const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding, bool relu,
                      c10::IntArrayRef dilation, const at::Tensor& quantization) {
  const Quantization q = Read(quantization);
  if (q.inputScale == 0) {  // calibration: float, and the input's range recorded
    const at::Tensor x = input.to(at::kFloat);
    float* v = quantization.data_ptr<float>();
    v[kObservedMin] = std::min(v[kObservedMin], x.min().item<float>());
    v[kObservedMax] = std::max(v[kObservedMax], x.max().item<float>());
    return FusedConv2d(x, weight, bias, padding, relu, dilation, FusedPrecision::kFloat);
  }
  const std::vector<int64_t> dilations =
      dilation.empty() ? std::vector<int64_t>{1, 1} : dilation.vec();
  const bool eightBit = input.scalar_type() == EightBit(q.inputSigned);
  const bool handled =
      input.dim() == 4 && weight.dim() == 4 && input.is_cpu() && weight.is_cpu() &&
      (input.scalar_type() == at::kFloat || eightBit) && weight.scalar_type() == at::kFloat &&
      input.size(1) == weight.size(1) && padding.size() == 2 && dilations.size() == 2 &&
      dilations[0] >= 1 && dilations[1] >= 1 && q.inputScale > 0 && q.outputScale >= 0 &&
      input.size(2) + 2 * padding[0] > (weight.size(2) - 1) * dilations[0] &&
      input.size(3) + 2 * padding[1] > (weight.size(3) - 1) * dilations[1] &&
      (!bias || !bias->defined() ||
       (bias->is_cpu() && bias->scalar_type() == at::kFloat && bias->numel() == weight.size(0)));
#if ENHANCE_WITH_ONEDNN
  if (handled) {
    at::internal::lazy_init_num_threads();
    try {
      return OneDnnInt8(input, weight.contiguous(),
                        bias && bias->defined() ? bias->contiguous() : at::Tensor(), padding, relu,
                        dilations, q);
    } catch (const dnnl::error&) {
      // A shape or processor oneDNN has no int8 implementation for: computed in float.
    }
  }
#endif
  if (!handled && input.scalar_type() != at::kFloat && !eightBit) {
    throw std::invalid_argument("enhance::conv2d_int8: an input of type " +
                                std::string(c10::toString(input.scalar_type())) +
                                " does not match the layer's quantization");
  }
  return Reference(input, weight, bias, padding, relu, dilations, q);
}

}  // namespace enhance
