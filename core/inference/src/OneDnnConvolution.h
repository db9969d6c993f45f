// SPDX-License-Identifier: GPL-3.0-or-later
//
// What the float/bf16 (FusedConvolution.cpp) and int8 (Int8Convolution.cpp) fused
// convolutions share when they call oneDNN: a convolution prepared once per weight tensor
// and input shape (the primitive, and the weights reordered into the layout it chose), a
// bounded cache of them (the least recently used forgotten), and running one. Included only where
// ENHANCE_WITH_ONEDNN is 1.
//
// Thread-safety: PreparedCache is safe to use from several threads (a mutex guards it);
// a Prepared is immutable once built and may run from several threads at once, each run
// with its own scratch memory.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>

#include "enhance/base/LruCache.h"

namespace enhance::onednn {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& CpuEngine();

// One convolution prepared for one input shape.
struct Prepared {
  at::Tensor weight, bias;  // held so that their addresses, the cache keys, stay theirs
  at::Tensor runBias;       // the bias the primitive reads (the int8 one is rescaled)
  dnnl::convolution_forward primitive;
  dnnl::memory::desc source, destination, scratch;
  dnnl::memory weights;
  at::Tensor reorderedWeights;  // owns weights' data
};

// The geometry of a convolution of an NHWC input [n, c, h, w] by OIHW `weight`.
struct Geometry {
  int64_t n, c, h, w, o, kh, kw, padH, padW, dilationH, dilationW;
  int64_t strideH = 1, strideW = 1;
  int64_t OutHeight() const { return (h + 2 * padH - (kh - 1) * dilationH - 1) / strideH + 1; }
  int64_t OutWidth() const { return (w + 2 * padW - (kw - 1) * dilationW - 1) / strideW + 1; }
};

// What identifies a prepared convolution whatever it computes in: its weights and bias, by
// address (the cache holds them, so an address is never reused while cached; the weights'
// sizes come with them), and the input's shape, padding, dilation and stride. Each
// operator's cache key adds what its primitive computes.
using ShapeKey = std::tuple<const void*, const void*, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t, int64_t, int64_t, int64_t, int64_t>;
inline ShapeKey KeyOf(const at::Tensor& weight, const at::Tensor& bias, const Geometry& g) {
  return {weight.data_ptr(),
          bias.defined() ? bias.data_ptr() : nullptr,
          g.n,
          g.c,
          g.h,
          g.w,
          g.padH,
          g.padW,
          g.dilationH,
          g.dilationW,
          g.strideH,
          g.strideW};
}

// Builds `prepared`'s primitive for source and destination in NHWC of the given types,
// weights of `weightType` in the layout oneDNN prefers, the bias (when `withBias`) in
// float, and `attributes` (scratchpad: user); then reorders the float OIHW `weight` into
// it, through `weightAttributes` (for int8: the per-channel quantization scales).
void Build(Prepared& prepared, const Geometry& g, dt sourceType, dt weightType, dt destinationType,
           bool withBias, const dnnl::primitive_attr& attributes,
           const dnnl::primitive_attr& weightAttributes);

// Runs a prepared convolution on `input` (NHWC, of the prepared source type) into `output`
// (NHWC, of the prepared destination type), adding `bias` (float, one per output channel)
// instead of the prepared one when it is defined (the primitive must have been built with a
// bias).
void Run(const Prepared& prepared, const at::Tensor& input, at::Tensor& output,
         const at::Tensor& bias = at::Tensor());

// Prepared convolutions by key, built on first use. Bounded: past kPreparedCapacity entries
// the least recently used goes, so that a node that loads and unloads models for long, or sees
// many slice sizes, never grows it further, and the convolutions of the models and shapes in
// use are not prepared again (preparing a small network's dozen costs a few milliseconds, as
// much as running it several times on a slice). 1024 holds the oneDNN convolutions of every
// shipped model and domain check (about 150) for six input shapes each: their reordered
// weights come to about 3 MB a shape.
constexpr size_t kPreparedCapacity = 1024;

template <typename Key>
class PreparedCache : public LruCache<Key, const Prepared> {
 public:
  PreparedCache() : LruCache<Key, const Prepared>(kPreparedCapacity) {}
};

}  // namespace enhance::onednn
