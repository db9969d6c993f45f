// SPDX-License-Identifier: GPL-3.0-or-later
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "FusedConvolution.h"
#include "SliceDenoiserNetwork.h"

namespace enhance {
namespace {

// Kaiming-normal weights of `shape` ([out, in, kh, kw]) for a ReLU network.
at::Tensor Kaiming(at::Generator& generator, c10::IntArrayRef shape, const c10::Device& device) {
  const double fanIn = static_cast<double>(shape[1] * shape[2] * shape[3]);
  return at::randn(shape, generator, at::kFloat)
      .mul_(std::sqrt(2.0 / fanIn))
      .to(device)
      .set_requires_grad(true);
}

at::Tensor Zeros(c10::IntArrayRef shape, const c10::Device& device) {
  return at::zeros(shape, at::kFloat).to(device).set_requires_grad(true);
}

// Parameters, in order (F features, D dilated layers):
enum Layer : size_t {
  kRing = 0,         // [F, 1, K, K] on slice k, the hole held at zero
  kNeighbours = 1,   // [F, 2, 3, 3] on slices k - 1 and k + 1
  kNeighbours2 = 2,  // [F, F, 3, 3]
  kMerge = 3,        // [F, 2F, 1, 1] on both branches
  kDilated = 4,      // D x [F, F, 3, 3], dilated
};

}  // namespace

BlindSpotNetwork::BlindSpotNetwork(int holeRadius, int dilatedLayers, int features, uint64_t seed,
                                   const c10::Device& device)
    : holeRadius_(holeRadius), ringRadius_(holeRadius + 2), dilation_(2 * holeRadius + 3) {
  const int64_t f = features;
  const int64_t k = 2 * ringRadius_ + 1;
  at::Generator generator = at::detail::createCPUGenerator(seed);
  ringMask_ = at::ones({1, 1, k, k}, at::kFloat);
  ringMask_.narrow(2, 2, k - 4).narrow(3, 2, k - 4).zero_();
  ringMask_ = ringMask_.to(device);
  const auto layer = [&](c10::IntArrayRef shape) {
    parameters_.push_back(Kaiming(generator, shape, device));
    parameters_.push_back(Zeros({shape[0]}, device));
  };
  layer({f, 1, k, k});
  parameters_[0] = (parameters_[0] * ringMask_).detach().set_requires_grad(true);
  layer({f, 2, 3, 3});
  layer({f, f, 3, 3});
  layer({f, 2 * f, 1, 1});
  for (int i = 0; i < dilatedLayers; ++i) layer({f, f, 3, 3});
  layer({f, f, 1, 1});
  // The last layer starts at zero: the untrained network is the mean of the neighbours.
  parameters_.push_back(Zeros({1, f, 1, 1}, device));
  parameters_.push_back(Zeros({1}, device));
}

at::Tensor BlindSpotNetwork::InputOf(const at::Tensor& triplets) const { return triplets; }

at::Tensor BlindSpotNetwork::TargetOf(const at::Tensor& triplets) const {
  return triplets.narrow(1, 1, 1);
}

double BlindSpotNetwork::BaselineLoss(const at::Tensor& triplets) const {
  return at::mse_loss(0.5 * (triplets.narrow(1, 0, 1) + triplets.narrow(1, 2, 1)),
                      TargetOf(triplets))
      .item<double>();
}

at::Tensor BlindSpotNetwork::Forward(const at::Tensor& x) const { return Run(x, false); }

at::Tensor BlindSpotNetwork::Infer(const at::Tensor& x) const {
  at::NoGradGuard noGrad;
  return Run(x, x.is_cpu());
}

at::Tensor BlindSpotNetwork::Run(const at::Tensor& x, bool fused) const {
  const std::vector<at::Tensor>& p = parameters_;
  // One convolution: through the fused CPU operator (channels-last) or LibTorch's.
  const auto conv = [fused](const at::Tensor& h, const at::Tensor& w, const at::Tensor& b,
                            int64_t padding, int64_t dilation, bool relu) {
    if (fused) {
      return FusedConv2d(h.contiguous(at::MemoryFormat::ChannelsLast), w.detach(), b.detach(),
                         {padding, padding}, relu, {dilation, dilation});
    }
    at::Tensor y = at::conv2d(h, w, b, 1, padding, dilation);
    return relu ? at::relu(y) : y;
  };
  const at::Tensor centre = x.narrow(1, 1, 1);
  const at::Tensor around = at::cat({x.narrow(1, 0, 1), x.narrow(1, 2, 1)}, 1);
  // The mask keeps the hole at zero whatever the optimiser does to those weights.
  const at::Tensor ring =
      conv(centre, p[2 * kRing] * ringMask_, p[2 * kRing + 1], ringRadius_, 1, true);
  at::Tensor n = conv(around, p[2 * kNeighbours], p[2 * kNeighbours + 1], 1, 1, true);
  n = conv(n, p[2 * kNeighbours2], p[2 * kNeighbours2 + 1], 1, 1, true);
  at::Tensor h = conv(at::cat({ring, n}, 1), p[2 * kMerge], p[2 * kMerge + 1], 0, 1, true);
  const size_t layers = p.size() / 2;
  for (size_t i = kDilated; i + 2 < layers; ++i) {
    h = conv(h, p[2 * i], p[2 * i + 1], dilation_, dilation_, true);
  }
  h = conv(h, p[2 * (layers - 2)], p[2 * (layers - 2) + 1], 0, 1, true);
  h = conv(h, p[2 * (layers - 1)], p[2 * (layers - 1) + 1], 0, 1, false);
  // One channel: channels-last and contiguous are the same layout.
  return h.contiguous() + 0.5 * (x.narrow(1, 0, 1) + x.narrow(1, 2, 1));
}

}  // namespace enhance
