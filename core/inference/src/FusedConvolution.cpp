// SPDX-License-Identifier: GPL-3.0-or-later
#include "FusedConvolution.h"

#include <ATen/Parallel.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#if ENHANCE_WITH_ONEDNN
#include "OneDnnConvolution.h"
#endif

namespace enhance {
namespace {

// Fewer output channels than this: the direct loop (see the header).
constexpr int64_t kNarrowOutputs = 8;

inline float Activate(FusedActivation activation, float v) {
  switch (activation) {
    case FusedActivation::kRelu:
      return v < 0 ? 0.0f : v;
    case FusedActivation::kSilu:
      return v / (1.0f + std::exp(-v));
    default:
      return v;
  }
}

at::Tensor ActivateInPlace(FusedActivation activation, at::Tensor output) {
  if (activation == FusedActivation::kRelu) return output.relu_();
  if (activation == FusedActivation::kSilu) return at::silu_(output);
  return output;
}

at::Tensor EmptyOutput(c10::IntArrayRef sizes, at::ScalarType type = at::kFloat) {
  return FusedOutput(sizes, type);
}

// The direct loop is compiled for plain x86-64, AVX2 and AVX-512, chosen when the library
// loads by what the CPU has.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ENHANCE_VECTOR_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#define ENHANCE_ALWAYS_INLINE __attribute__((always_inline))
#else
#define ENHANCE_VECTOR_CLONES
#define ENHANCE_ALWAYS_INLINE
#endif

// The longest kernel row (kernel width x input channels) taken whole, for fewer than 8
// input channels.
constexpr int64_t kMaxSpan = 64;

struct NarrowShape {
  int64_t height, width, channels;    // input, NHWC
  int64_t outputs, kernelH, kernelW;  // weights packed by PackNarrowWeights()
  int64_t padTop, padLeft;
  int64_t outHeight, outWidth;  // output, NHWC
  // What one multiply-add of 8 lanes reads: with 8 input channels or more, the channels of
  // one tap (taps = kernelW, span = channels); with fewer, a whole kernel row, whose taps'
  // channels are next to each other in NHWC order (taps = 1, span = kernelW * channels).
  int64_t taps, span;
  int64_t chunks;  // groups of 8 of a span (the last may overlap)
};

// Eight floats, one vector register (or two halves of one) on every x86-64 target.
typedef float Vec8 __attribute__((vector_size(32)));

ENHANCE_ALWAYS_INLINE inline Vec8 Load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

ENHANCE_ALWAYS_INLINE inline float Sum8(Vec8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// First value of chunk j of a span: chunks of 8 from 0, the last one ending at the span's
// end (overlapping the one before when the span is not a multiple of 8; its weights are 0
// where it overlaps, so nothing is counted twice).
inline int64_t ChunkStart(int64_t chunk, const NarrowShape& s) {
  return std::min(chunk * 8, s.span - 8);
}

// Weights as [output][ky][tap][chunk][8], lanes aligned with ChunkStart().
std::vector<float> PackNarrowWeights(const at::Tensor& weight, const NarrowShape& s) {
  const at::Tensor w = weight.contiguous();  // [O][C][kH][kW]
  const float* source = w.data_ptr<float>();
  std::vector<float> packed(static_cast<size_t>(s.outputs * s.kernelH * s.kernelW * s.chunks * 8),
                            0.0f);
  for (int64_t o = 0; o < s.outputs; ++o) {
    for (int64_t ky = 0; ky < s.kernelH; ++ky) {
      for (int64_t t = 0; t < s.taps; ++t) {
        for (int64_t j = 0; j < s.chunks; ++j) {
          for (int64_t l = 0; l < 8; ++l) {
            const int64_t f = ChunkStart(j, s) + l;  // in the span
            if (f < j * 8) continue;                 // counted by the chunk before
            const int64_t kx = s.taps == 1 ? f / s.channels : t;
            const int64_t c = s.taps == 1 ? f % s.channels : f;
            packed[static_cast<size_t>((((o * s.kernelH + ky) * s.taps + t) * s.chunks + j) * 8 +
                                       l)] =
                source[((o * s.channels + c) * s.kernelH + ky) * s.kernelW + kx];
          }
        }
      }
    }
  }
  return packed;
}

// One output value at (y, x) for output channel o, checking every tap against the
// borders: for the columns next to them.
ENHANCE_ALWAYS_INLINE inline float NarrowPixel(const float* plane, const float* weights,
                                               const NarrowShape& s, int64_t y, int64_t x,
                                               int64_t o) {
  Vec8 acc = {};
  for (int64_t ky = 0; ky < s.kernelH; ++ky) {
    const int64_t iy = y + ky - s.padTop;
    if (iy < 0 || iy >= s.height) continue;
    if (s.taps == 1) {
      // The kernel row with 0 for its taps outside the image.
      float row[kMaxSpan] = {};
      for (int64_t kx = 0; kx < s.kernelW; ++kx) {
        const int64_t ix = x + kx - s.padLeft;
        if (ix < 0 || ix >= s.width) continue;
        std::memcpy(row + kx * s.channels, plane + (iy * s.width + ix) * s.channels,
                    static_cast<size_t>(s.channels) * sizeof(float));
      }
      const float* q = weights + (o * s.kernelH + ky) * s.chunks * 8;
      for (int64_t j = 0; j < s.chunks; ++j)
        acc += Load8(row + ChunkStart(j, s)) * Load8(q + 8 * j);
      continue;
    }
    for (int64_t kx = 0; kx < s.kernelW; ++kx) {
      const int64_t ix = x + kx - s.padLeft;
      if (ix < 0 || ix >= s.width) continue;
      const float* p = plane + (iy * s.width + ix) * s.channels;
      const float* q = weights + ((o * s.kernelH + ky) * s.kernelW + kx) * s.chunks * 8;
      for (int64_t j = 0; j < s.chunks; ++j) acc += Load8(p + ChunkStart(j, s)) * Load8(q + 8 * j);
    }
  }
  return Sum8(acc);
}

// Output rows [begin, end) (row = image * outHeight + y) of a convolution with few output
// channels. Each output value is a sum, over the kernel's taps, of products of the pixel's
// channels (next to each other in NHWC order) with the tap's weights, 8 channels at a time;
// with fewer than 8 channels, of a whole kernel row's values (its taps' channels, next to
// each other too), 8 at a time. The columns away from the borders go 8 pixels at a time, so
// that the 8 sums are independent and the multiply-adds overlap.
ENHANCE_VECTOR_CLONES
void NarrowConvolutionRows(const float* input, const float* weights, const float* bias,
                           const NarrowShape& s, FusedActivation activation, float* output,
                           int64_t begin, int64_t end) {
  constexpr int64_t kPixels = 8;
  // Columns whose taps all fall inside the image.
  const int64_t inner0 = std::min(s.padLeft, s.outWidth);
  const int64_t inner1 = std::max(inner0, s.width - s.kernelW + 1 + s.padLeft);
  for (int64_t row = begin; row < end; ++row) {
    const int64_t image = row / s.outHeight, y = row % s.outHeight;
    const float* plane = input + image * s.height * s.width * s.channels;
    float* out = output + row * s.outWidth * s.outputs;
    const int64_t ky0 = std::max<int64_t>(0, s.padTop - y);
    const int64_t ky1 = std::min(s.kernelH, s.height + s.padTop - y);
    for (int64_t o = 0; o < s.outputs; ++o) {
      const float b = bias ? bias[o] : 0.0f;
      auto store = [&](int64_t x, float v) {
        v += b;
        out[x * s.outputs + o] = Activate(activation, v);
      };
      for (int64_t x = 0; x < inner0; ++x) store(x, NarrowPixel(plane, weights, s, y, x, o));
      int64_t x = inner0;
      for (; x + kPixels <= inner1; x += kPixels) {
        Vec8 acc[kPixels] = {};
        for (int64_t ky = ky0; ky < ky1; ++ky) {
          const float* line = plane + ((y + ky - s.padTop) * s.width + x - s.padLeft) * s.channels;
          for (int64_t t = 0; t < s.taps; ++t) {
            const float* p = line + t * s.channels;
            const float* q = weights + ((o * s.kernelH + ky) * s.taps + t) * s.chunks * 8;
            for (int64_t j = 0; j < s.chunks; ++j) {
              const Vec8 w = Load8(q + 8 * j);
              const float* pj = p + ChunkStart(j, s);
              for (int64_t i = 0; i < kPixels; ++i) acc[i] += Load8(pj + i * s.channels) * w;
            }
          }
        }
        for (int64_t i = 0; i < kPixels; ++i) store(x + i, Sum8(acc[i]));
      }
      for (; x < s.outWidth; ++x) store(x, NarrowPixel(plane, weights, s, y, x, o));
    }
  }
}

at::Tensor NarrowConvolution(const at::Tensor& input, const at::Tensor& weight,
                             const c10::optional<at::Tensor>& bias, int64_t padH, int64_t padW,
                             FusedActivation activation) {
  NarrowShape s;
  s.height = input.size(2);
  s.width = input.size(3);
  s.channels = input.size(1);
  s.outputs = weight.size(0);
  s.kernelH = weight.size(2);
  s.kernelW = weight.size(3);
  s.padTop = padH;
  s.padLeft = padW;
  s.outHeight = s.height + 2 * padH - s.kernelH + 1;
  s.outWidth = s.width + 2 * padW - s.kernelW + 1;
  const bool wholeRows = s.channels < 8;  // IsNarrowConvolution: kernelW * channels >= 8
  s.taps = wholeRows ? 1 : s.kernelW;
  s.span = wholeRows ? s.kernelW * s.channels : s.channels;
  s.chunks = (s.span + 7) / 8;
  const std::vector<float> packed = PackNarrowWeights(weight, s);
  const at::Tensor bias1d = bias && bias->defined() ? bias->contiguous() : at::Tensor();
  at::Tensor output = EmptyOutput({input.size(0), s.outputs, s.outHeight, s.outWidth});
  const float* in = input.data_ptr<float>();
  const float* w = packed.data();
  const float* b = bias1d.defined() ? bias1d.data_ptr<float>() : nullptr;
  float* out = output.data_ptr<float>();
  at::parallel_for(0, input.size(0) * s.outHeight, 4, [&](int64_t begin, int64_t end) {
    NarrowConvolutionRows(in, w, b, s, activation, out, begin, end);
  });
  return output;
}

#if ENHANCE_WITH_ONEDNN

using onednn::dt;
using onednn::tag;

// The shape, the activation, the precision, and whether the bias comes with each call.
using PreparedKey = std::tuple<onednn::ShapeKey, int, int, bool>;

onednn::PreparedCache<PreparedKey>& Cache() {
  static onednn::PreparedCache<PreparedKey> cache;
  return cache;
}

// The convolution through oneDNN; `runBias`, when defined, is the bias of this call (the
// weights' own plus a per-channel shift), added in place of `bias`.
at::Tensor OneDnnConvolution(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& bias, int64_t padH, int64_t padW, int64_t dilationH,
                             int64_t dilationW, int64_t strideH, int64_t strideW,
                             FusedActivation activation, FusedPrecision precision,
                             const at::Tensor& runBias = at::Tensor()) {
  const onednn::Geometry g{input.size(0),  input.size(1),  input.size(2),  input.size(3),
                           weight.size(0), weight.size(2), weight.size(3), padH,
                           padW,           dilationH,      dilationW,      strideH,
                           strideW};
  const PreparedKey key{onednn::KeyOf(weight, bias, g), static_cast<int>(activation),
                        static_cast<int>(precision), runBias.defined()};
  const auto prepared = Cache().Get(key, [&] {
    auto result = std::make_shared<onednn::Prepared>();
    result->weight = weight;
    result->bias = result->runBias = bias;
    // bf16: inputs and weights in bfloat16, products summed in float, the output in either.
    const dt compute = precision != FusedPrecision::kFloat ? dt::bf16 : dt::f32;
    const dt written = precision == FusedPrecision::kBFloat16 ? dt::bf16 : dt::f32;
    dnnl::primitive_attr attributes;
    if (activation != FusedActivation::kNone) {
      dnnl::post_ops ops;
      // SiLU is oneDNN's swish with alpha 1: x * sigmoid(x).
      ops.append_eltwise(1.0f,
                         activation == FusedActivation::kRelu ? dnnl::algorithm::eltwise_relu
                                                              : dnnl::algorithm::eltwise_swish,
                         activation == FusedActivation::kRelu ? 0.0f : 1.0f, 0.0f);
      attributes.set_post_ops(ops);
    }
    onednn::Build(*result, g, compute, compute, written, bias.defined() || runBias.defined(),
                  attributes, {});
    return result;
  });
  at::Tensor output =
      EmptyOutput({g.n, g.o, g.OutHeight(), g.OutWidth()},
                  precision == FusedPrecision::kBFloat16 ? at::kBFloat16 : at::kFloat);
  onednn::Run(*prepared, input, output, runBias);
  return output;
}

#endif  // ENHANCE_WITH_ONEDNN

// What the operator computes, as LibTorch computes it: for inputs the operator was not made for.
at::Tensor LibTorchConvolution(const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding,
                               c10::IntArrayRef dilation, c10::IntArrayRef stride,
                               FusedActivation activation) {
  return ActivateInPlace(activation, at::conv2d(input, weight, bias, stride, padding, dilation));
}

at::Tensor FusedConv2dOperator(const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding,
                               int64_t activation, c10::IntArrayRef dilation, int64_t precision,
                               const c10::optional<at::Tensor>& shift, c10::IntArrayRef stride) {
  if (precision < 0 || precision > static_cast<int64_t>(FusedPrecision::kBFloat16)) {
    throw std::invalid_argument("enhance::conv2d_fused: precision " + std::to_string(precision) +
                                " must be 0 (float), 1 (bf16, float output) or 2 (bf16)");
  }
  if (activation < 0 || activation > static_cast<int64_t>(FusedActivation::kSilu)) {
    throw std::invalid_argument("enhance::conv2d_fused: activation " + std::to_string(activation) +
                                " must be 0 (none), 1 (ReLU) or 2 (SiLU)");
  }
  return FusedConv2d(input, weight, bias, padding, static_cast<FusedActivation>(activation),
                     dilation, static_cast<FusedPrecision>(precision), shift, stride);
}

TORCH_LIBRARY(enhance, library) {
  library.def(
      "conv2d_fused(Tensor input, Tensor weight, Tensor? bias, int[] padding, int activation, "
      "int[] dilation, int precision=0, Tensor? shift=None, int[2] stride=1) -> Tensor",
      &FusedConv2dOperator);
}

// Dilation and stride as two values each (empty: 1).
std::vector<int64_t> Pair(c10::IntArrayRef values) {
  return values.empty() ? std::vector<int64_t>{1, 1} : values.vec();
}

// True when the operator computes this convolution itself (float or bfloat16 input on the
// CPU, float weights and bias of matching shapes, a non-empty output); otherwise LibTorch
// does.
bool Handled(const at::Tensor& input, const at::Tensor& weight,
             const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding,
             const std::vector<int64_t>& dilation, const std::vector<int64_t>& stride) {
  return input.dim() == 4 && weight.dim() == 4 && input.is_cpu() && weight.is_cpu() &&
         (input.scalar_type() == at::kFloat || input.scalar_type() == at::kBFloat16) &&
         weight.scalar_type() == at::kFloat && input.size(1) == weight.size(1) &&
         padding.size() == 2 && dilation.size() == 2 && dilation[0] >= 1 && dilation[1] >= 1 &&
         stride.size() == 2 && stride[0] >= 1 && stride[1] >= 1 &&
         input.size(2) + 2 * padding[0] > (weight.size(2) - 1) * dilation[0] &&
         input.size(3) + 2 * padding[1] > (weight.size(3) - 1) * dilation[1] &&
         (!bias || !bias->defined() ||
          (bias->is_cpu() && bias->scalar_type() == at::kFloat && bias->numel() == weight.size(0)));
}

// The shift rows ([N or 1, O]) when `shift` is a float per-channel tensor ([N or 1, O, 1, 1])
// for a convolution of `input` by `weight`; otherwise undefined.
at::Tensor ShiftRows(const at::Tensor& shift, const at::Tensor& input, const at::Tensor& weight) {
  const bool perChannel = shift.dim() == 4 && shift.is_cpu() && shift.scalar_type() == at::kFloat &&
                          shift.size(1) == weight.size(0) && shift.size(2) == 1 &&
                          shift.size(3) == 1 &&
                          (shift.size(0) == 1 || shift.size(0) == input.size(0));
  return perChannel ? shift.reshape({shift.size(0), shift.size(1)}) : at::Tensor();
}

}  // namespace

#if ENHANCE_WITH_ONEDNN
namespace onednn {

dnnl::engine& CpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

void Build(Prepared& prepared, const Geometry& g, dt sourceType, dt weightType, dt destinationType,
           bool withBias, const dnnl::primitive_attr& attributes,
           const dnnl::primitive_attr& weightAttributes) {
  prepared.source = dnnl::memory::desc({g.n, g.c, g.h, g.w}, sourceType, tag::nhwc);
  prepared.destination =
      dnnl::memory::desc({g.n, g.o, g.OutHeight(), g.OutWidth()}, destinationType, tag::nhwc);
  const dnnl::memory::desc anyWeights({g.o, g.c, g.kh, g.kw}, weightType, tag::any);
  // oneDNN counts dilation from 0 (none), LibTorch from 1.
  const dnnl::memory::dims strides{g.strideH, g.strideW}, padding{g.padH, g.padW},
      dilates{g.dilationH - 1, g.dilationW - 1};
  dnnl::primitive_attr withScratch = attributes;
  withScratch.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto kind = dnnl::prop_kind::forward_inference;
  const auto direct = dnnl::algorithm::convolution_direct;
  const auto descriptor = withBias ? dnnl::convolution_forward::desc(
                                         kind, direct, prepared.source, anyWeights,
                                         dnnl::memory::desc({g.o}, dt::f32, tag::x),
                                         prepared.destination, strides, dilates, padding, padding)
                                   : dnnl::convolution_forward::desc(
                                         kind, direct, prepared.source, anyWeights,
                                         prepared.destination, strides, dilates, padding, padding);
  const dnnl::convolution_forward::primitive_desc primitiveDesc(descriptor, withScratch,
                                                                CpuEngine());
  prepared.primitive = dnnl::convolution_forward(primitiveDesc);
  prepared.scratch = primitiveDesc.scratchpad_desc();

  // The weights, once, in the layout the primitive wants.
  const dnnl::memory::desc wanted = primitiveDesc.weights_desc();
  prepared.reorderedWeights =
      at::empty({static_cast<int64_t>(wanted.get_size())}, at::TensorOptions(at::kByte));
  prepared.weights = dnnl::memory(wanted, CpuEngine(), prepared.reorderedWeights.data_ptr());
  const dnnl::memory::desc given({g.o, g.c, g.kh, g.kw}, dt::f32, tag::oihw);
  dnnl::memory source(given, CpuEngine(), prepared.weight.data_ptr());
  dnnl::stream stream(CpuEngine());
  dnnl::reorder(dnnl::reorder::primitive_desc(source, prepared.weights, weightAttributes))
      .execute(stream, source, prepared.weights);
  stream.wait();
}

void Run(const Prepared& prepared, const at::Tensor& input, at::Tensor& output,
         const at::Tensor& bias) {
  at::Tensor scratch =
      at::empty({static_cast<int64_t>(prepared.scratch.get_size())}, at::TensorOptions(at::kByte));
  dnnl::memory source(prepared.source, CpuEngine(), input.data_ptr());
  dnnl::memory destination(prepared.destination, CpuEngine(), output.data_ptr());
  dnnl::memory scratchpad(prepared.scratch, CpuEngine(), scratch.data_ptr());
  std::unordered_map<int, dnnl::memory> arguments{{DNNL_ARG_SRC, source},
                                                  {DNNL_ARG_WEIGHTS, prepared.weights},
                                                  {DNNL_ARG_DST, destination},
                                                  {DNNL_ARG_SCRATCHPAD, scratchpad}};
  const at::Tensor& added = bias.defined() ? bias : prepared.runBias;
  if (added.defined()) {
    const int64_t outputs = prepared.destination.dims()[1];
    arguments.emplace(DNNL_ARG_BIAS,
                      dnnl::memory({{outputs}, dt::f32, tag::x}, CpuEngine(), added.data_ptr()));
  }
  dnnl::stream stream(CpuEngine());
  prepared.primitive.execute(stream, arguments);
  stream.wait();
}

}  // namespace onednn
#endif  // ENHANCE_WITH_ONEDNN

bool FusedConvolutionUsesOneDnn() { return ENHANCE_WITH_ONEDNN != 0; }

bool IsNarrowConvolution(const at::Tensor& weight, c10::IntArrayRef dilation) {
  const bool dilated = dilation.size() == 2 && (dilation[0] != 1 || dilation[1] != 1);
  const int64_t row = weight.size(1) * weight.size(3);  // a kernel row's values
  return weight.size(0) < kNarrowOutputs && !dilated &&
         (weight.size(1) >= 8 || (row >= 8 && row <= kMaxSpan));
}

bool CpuHasBf16() {
#if ENHANCE_WITH_ONEDNN && defined(__GNUC__) && defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
#if defined(__clang__)
    return __builtin_cpu_supports("avx512bf16");
#else
    return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
#endif
  }();
  return has;
#else
  return false;
#endif
}

namespace {

// The convolution, plus `shift`, then the activation, as LibTorch adds a shift: for one that
// is not per channel (a residual), and what oneDNN does not compute.
at::Tensor ShiftAfterwards(const at::Tensor& input, const at::Tensor& weight,
                           const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding,
                           FusedActivation activation, c10::IntArrayRef dilation,
                           FusedPrecision precision, const at::Tensor& shift,
                           c10::IntArrayRef stride) {
  const FusedPrecision inner =
      precision == FusedPrecision::kBFloat16 ? FusedPrecision::kBFloat16FloatOutput : precision;
  at::Tensor output = FusedConv2d(input, weight, bias, padding, FusedActivation::kNone, dilation,
                                  inner, c10::nullopt, stride) +
                      shift;
  ActivateInPlace(activation, output);
  return precision == FusedPrecision::kBFloat16 ? output.to(at::kBFloat16) : output;
}

}  // namespace

at::Tensor FusedConv2d(const at::Tensor& input, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding,
                       FusedActivation activation, c10::IntArrayRef dilation,
                       FusedPrecision precision, const c10::optional<at::Tensor>& shift,
                       c10::IntArrayRef stride) {
  const std::vector<int64_t> dilations = Pair(dilation), strides = Pair(stride);
  const auto asWritten = [precision](at::Tensor output) {
    return precision == FusedPrecision::kBFloat16 ? output.to(at::kBFloat16) : output;
  };
  // A per-channel shift is added to the bias of the oneDNN convolution, so that it costs
  // nothing; any other shift, and any shift of a narrow layer, afterwards.
  const bool shifted = shift && shift->defined();
  const at::Tensor rows = shifted ? ShiftRows(*shift, input, weight) : at::Tensor();
  const auto afterwards = [&] {
    return ShiftAfterwards(input, weight, bias, padding, activation, dilation, precision, *shift,
                           stride);
  };
  if (shifted && (!rows.defined() || IsNarrowConvolution(weight, dilations))) return afterwards();
  if (!Handled(input, weight, bias, padding, dilations, strides)) {
    if (shifted) return afterwards();
    return asWritten(LibTorchConvolution(input.to(weight.scalar_type()), weight, bias, padding,
                                         dilations, strides, activation));
  }
  at::internal::lazy_init_num_threads();
  const at::Tensor w = weight.contiguous();
  const bool unitStride = strides[0] == 1 && strides[1] == 1;
  if (IsNarrowConvolution(weight, dilations) && unitStride) {
    // Float only: its readers (the output layer of a network) are never bf16.
    const at::Tensor nhwc = input.to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
    return asWritten(NarrowConvolution(nhwc, w, bias, padding[0], padding[1], activation));
  }
  const bool low = precision != FusedPrecision::kFloat && !IsNarrowConvolution(weight, dilations);
  const at::Tensor nhwc =
      input.to(low ? at::kBFloat16 : at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
#if ENHANCE_WITH_ONEDNN
  try {
    const at::Tensor base = bias && bias->defined() ? bias->contiguous() : at::Tensor();
    const auto run = [&](const at::Tensor& x, const at::Tensor& runBias) {
      const at::Tensor output = OneDnnConvolution(
          x, w, base, padding[0], padding[1], dilations[0], dilations[1], strides[0], strides[1],
          activation, low ? precision : FusedPrecision::kFloat, runBias);
      return low ? output : asWritten(output);
    };
    if (!shifted) return run(nhwc, at::Tensor());
    const auto withShift = [&](int64_t row) {
      return (base.defined() ? base + rows[row] : rows[row].clone()).contiguous();
    };
    // One shift for the whole batch (a sampler's step), or one convolution per image.
    if (rows.size(0) == 1 || at::equal(rows, rows[0].expand_as(rows))) {
      return run(nhwc, withShift(0));
    }
    std::vector<at::Tensor> images;
    for (int64_t b = 0; b < nhwc.size(0); ++b) {
      images.push_back(run(nhwc.narrow(0, b, 1), withShift(b)));
    }
    return at::cat(images, 0).contiguous(at::MemoryFormat::ChannelsLast);
  } catch (const dnnl::error&) {
    // A shape (or, in bf16, a processor) oneDNN has no implementation for: LibTorch
    // computes it, in float.
  }
#endif
  if (shifted) return afterwards();
  return asWritten(LibTorchConvolution(nhwc.to(at::kFloat),
                                       w.contiguous(at::MemoryFormat::ChannelsLast), bias, padding,
                                       dilations, strides, activation));
}

}  // namespace enhance
