// SPDX-License-Identifier: GPL-3.0-or-later
#include "SliceDenoiserNetwork.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "FusedConvolution.h"
#include "enhance/inference/BilateralDenoiser.h"

namespace enhance {
namespace {

constexpr int kCurvePoints = 30;        // points of the training curve
constexpr size_t kNoHeldOutChecks = 4;  // training slices checked when none is held out

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One of the eight flips and transposes of [B, 1, h, w] (bits: 1 columns reversed,
// 2 rows reversed, 4 transposed), and its inverse.
at::Tensor Transform(const at::Tensor& x, int d) {
  at::Tensor y = x;
  if (d & 4) y = y.transpose(2, 3);
  if (d & 1) y = y.flip({3});
  if (d & 2) y = y.flip({2});
  return y.contiguous();
}

at::Tensor Untransform(const at::Tensor& y, int d) {
  at::Tensor x = y;
  if (d & 2) x = x.flip({2});
  if (d & 1) x = x.flip({3});
  if (d & 4) x = x.transpose(2, 3);
  return x;
}

// A window of slices k - 1, k and k + 1 in network values, as three channels (a missing
// neighbour of the first or last slice is taken as the other one).
void CopyTriplet(const Volume& v, const NormalisationMap& map, int64_t k, int64_t row,
                 int64_t column, int64_t height, int64_t width, float* out) {
  const auto scale = static_cast<float>(map.scale);
  const auto offset = static_cast<float>(map.offset);
  const int64_t above = k > 0 ? k - 1 : k + 1;
  const int64_t below = k + 1 < v.slices ? k + 1 : k - 1;
  const int64_t slices[3] = {above, k, below};
  for (int channel = 0; channel < 3; ++channel) {
    float* to = out + channel * height * width;
    for (int64_t r = 0; r < height; ++r) {
      const float* from = v.Slice(slices[channel]) + (row + r) * v.columns + column;
      for (int64_t c = 0; c < width; ++c) to[r * width + c] = from[c] * scale + offset;
    }
  }
}

// Random patches of the training triplets, each in one of its eight orientations; the
// sequence is a function of the seed alone.
class PatchSampler {
 public:
  PatchSampler(const Volume& volume, const NormalisationMap& map,
               const std::vector<int64_t>& centres, int64_t patch, uint64_t seed)
      : volume_(volume), map_(map), centres_(centres), patch_(patch), rng_(seed) {}

  at::Tensor Next(int batch) {
    at::Tensor triplets = at::empty({batch, 3, patch_, patch_}, at::kFloat);
    std::uniform_int_distribution<size_t> centre(0, centres_.size() - 1);
    std::uniform_int_distribution<int64_t> row(0, volume_.rows - patch_);
    std::uniform_int_distribution<int64_t> column(0, volume_.columns - patch_);
    std::uniform_int_distribution<int> orientation(0, 7);
    for (int i = 0; i < batch; ++i) {
      const int64_t k = centres_[centre(rng_)];
      const int64_t r = row(rng_);
      const int64_t c = column(rng_);
      CopyTriplet(volume_, map_, k, r, c, patch_, patch_, triplets[i].data_ptr<float>());
      const int d = orientation(rng_);
      triplets[i].copy_(Transform(triplets[i].unsqueeze(0), d)[0]);
    }
    return triplets;
  }

 private:
  const Volume& volume_;
  NormalisationMap map_;
  const std::vector<int64_t>& centres_;
  int64_t patch_;
  std::mt19937_64 rng_;
};

// The learning rate: constant, then down linearly to 10% over the last third.
double RateAt(int step, int steps, const SelfSupervisedParameters& p) {
  const double decayStart = 2.0 * steps / 3.0;
  if (step < decayStart) return p.learningRate;
  const double t = (step - decayStart) / std::max(1.0, steps - decayStart);
  return p.learningRate * (1.0 - 0.9 * std::min(1.0, t));
}

// Steps timed before the time budget is checked against the steps planned.
constexpr int kTimedSteps = 20;

// The self-supervised loss of the network and of the input itself on whole slices.
void CheckHeldOut(const SeriesNetwork& network, const Volume& volume, const NormalisationMap& map,
                  const NeighbourPairs& pairs, const c10::Device& device, LearningReport& report) {
  std::vector<int64_t> slices = pairs.heldOut;
  if (slices.empty()) {
    slices.assign(pairs.training.begin(),
                  pairs.training.begin() +
                      static_cast<long>(std::min(kNoHeldOutChecks, pairs.training.size())));
  }
  at::NoGradGuard noGrad;
  double networkLoss = 0;
  double inputLoss = 0;
  for (const int64_t k : slices) {
    at::Tensor triplet = at::empty({1, 3, volume.rows, volume.columns}, at::kFloat);
    CopyTriplet(volume, map, k, 0, 0, volume.rows, volume.columns, triplet.data_ptr<float>());
    const at::Tensor output = network.Infer(network.InputOf(triplet).to(device)).cpu();
    networkLoss += at::mse_loss(output, network.TargetOf(triplet)).item<double>();
    inputLoss += network.BaselineLoss(triplet);
  }
  const auto count = static_cast<double>(std::max<size_t>(1, slices.size()));
  report.heldOutSlices = static_cast<int>(pairs.heldOut.size());
  report.heldOutLoss = networkLoss / count;
  report.heldOutInputLoss = inputLoss / count;
  report.heldOutBaseline = network.Baseline();
  report.applied = report.heldOutLoss < report.heldOutInputLoss;
}

}  // namespace

SliceDenoiserNetwork::SliceDenoiserNetwork(int layers, int features, uint64_t seed,
                                           const c10::Device& device) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  for (int i = 0; i < layers; ++i) {
    const int64_t in = i == 0 ? 1 : features;
    const int64_t out = i + 1 == layers ? 1 : features;
    at::Tensor weight = i + 1 == layers ? at::zeros({out, in, 3, 3}, at::kFloat)
                                        : at::randn({out, in, 3, 3}, generator, at::kFloat)
                                              .mul_(std::sqrt(2.0 / static_cast<double>(in * 9)));
    parameters_.push_back(weight.to(device).set_requires_grad(true));
    parameters_.push_back(at::zeros({out}, at::kFloat).to(device).set_requires_grad(true));
  }
}

at::Tensor SliceDenoiserNetwork::InputOf(const at::Tensor& triplets) const {
  return triplets.narrow(1, 1, 1);
}

at::Tensor SliceDenoiserNetwork::TargetOf(const at::Tensor& triplets) const {
  return 0.5 * (triplets.narrow(1, 0, 1) + triplets.narrow(1, 2, 1));
}

double SliceDenoiserNetwork::BaselineLoss(const at::Tensor& triplets) const {
  return at::mse_loss(InputOf(triplets), TargetOf(triplets)).item<double>();
}

at::Tensor SliceDenoiserNetwork::Forward(const at::Tensor& x) const {
  at::Tensor h = x;
  const size_t layers = parameters_.size() / 2;
  for (size_t i = 0; i < layers; ++i) {
    h = at::conv2d(h, parameters_[2 * i], parameters_[2 * i + 1], 1, 1);
    if (i + 1 < layers) h = at::relu(h);
  }
  return x + h;
}

at::Tensor SliceDenoiserNetwork::Infer(const at::Tensor& x) const {
  at::NoGradGuard noGrad;
  if (!x.is_cpu()) return Forward(x);
  at::Tensor h = x.contiguous(at::MemoryFormat::ChannelsLast);
  const size_t layers = parameters_.size() / 2;
  for (size_t i = 0; i < layers; ++i) {
    h = FusedConv2d(h, parameters_[2 * i].detach(), parameters_[2 * i + 1].detach(), {1, 1},
                    i + 1 < layers);
  }
  // One channel: channels-last and contiguous are the same layout.
  return x + h.contiguous();
}

namespace {

// Denormal floats (a series without noise drives the residuals, and with them gradients and
// Adam's moments, toward 1e-38) are many times slower on x86 processors. Training flushes
// them to zero on the calling thread and every thread of LibTorch's pool, and turns that
// off after (LibTorch's default). Another training running at the same time may turn it
// off early: it is then slower, not different.
class FlushDenormals {
 public:
  FlushDenormals() { Set(true); }
  ~FlushDenormals() { Set(false); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  static void Set(bool on) {
    at::globalContext().setFlushDenormal(on);
    at::parallel_for(0, at::get_num_threads(), 1,
                     [on](int64_t, int64_t) { at::globalContext().setFlushDenormal(on); });
  }
};

}  // namespace

void TrainOnNeighbours(SeriesNetwork& network, const Volume& volume, const NormalisationMap& map,
                       const SelfSupervisedParameters& parameters, const NeighbourPairs& pairs,
                       const RunContext& context, double progressShare, const c10::Device& device,
                       LearningReport& report) {
  // The caller may be inside an inference-mode or no-grad scope.
  c10::InferenceMode notInference(false);
  at::AutoGradMode gradients(true);
  const FlushDenormals flush;
  const auto start = std::chrono::steady_clock::now();
  const int64_t patch = std::min<int64_t>({parameters.patch, volume.rows, volume.columns});
  // Patch positions depend on the seed and the series.
  std::seed_seq seeds{
      static_cast<uint32_t>(parameters.seed), static_cast<uint32_t>(parameters.seed >> 32),
      static_cast<uint32_t>(context.randomKey), static_cast<uint32_t>(context.randomKey >> 32)};
  std::mt19937_64 seeder(seeds);
  PatchSampler sampler(volume, map, pairs.training, patch, seeder());
  torch::optim::Adam optimizer(network.Parameters(),
                               torch::optim::AdamOptions(parameters.learningRate));
  const int stretch = std::max(1, parameters.steps / kCurvePoints);
  double stretchSum = 0;
  int stretchCount = 0;
  // When the steps planned would not fit in the time budget, as timed on the first
  // steps, training is shortened at once to what fits, so that its learning rate still
  // decays over the last third of the steps actually taken.
  int steps = parameters.steps;
  for (int step = 0; step < steps; ++step) {
    context.ThrowIfCancelled();
    if (step == kTimedSteps && steps > kTimedSteps) {
      const double perStep = SecondsSince(start) / kTimedSteps;
      const double fit = 0.95 * parameters.timeBudgetSeconds / std::max(perStep, 1e-9);
      if (fit < steps) {
        steps = std::max(kTimedSteps + 1, static_cast<int>(fit));
        report.stoppedByTimeBudget = true;
      }
    }
    if (step > 0 && SecondsSince(start) >= parameters.timeBudgetSeconds) {
      report.stoppedByTimeBudget = true;
      break;
    }
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(RateAt(step, steps, parameters));
    }
    const at::Tensor triplets = sampler.Next(parameters.batch).to(device);
    optimizer.zero_grad();
    at::Tensor loss =
        at::mse_loss(network.Forward(network.InputOf(triplets)), network.TargetOf(triplets));
    loss.backward();
    optimizer.step();
    stretchSum += loss.item<double>();
    report.steps = step + 1;
    if (++stretchCount == stretch) {
      report.curve.push_back({step + 1, stretchSum / stretchCount});
      stretchSum = 0;
      stretchCount = 0;
    }
    context.Report(progressShare * (step + 1) / steps);
  }
  if (stretchCount > 0) report.curve.push_back({report.steps, stretchSum / stretchCount});
  report.trainingSeconds = SecondsSince(start);
  report.finalLoss = report.curve.empty() ? 0.0 : report.curve.back().loss;
  CheckHeldOut(network, volume, map, pairs, device, report);
}

void DenoiseSlices(const SeriesNetwork& network, const Volume& volume, const NormalisationMap& map,
                   int64_t begin, int64_t count, int augmentations, const c10::Device& device,
                   float* out) {
  at::NoGradGuard noGrad;
  FusedOutputScope reuse;  // the layers' outputs reuse each other's memory
  at::Tensor triplets = at::empty({count, 3, volume.rows, volume.columns}, at::kFloat);
  for (int64_t i = 0; i < count; ++i) {
    CopyTriplet(volume, map, begin + i, 0, 0, volume.rows, volume.columns,
                triplets[i].data_ptr<float>());
  }
  const at::Tensor x = network.InputOf(triplets).to(device);
  at::Tensor sum = at::zeros({count, 1, volume.rows, volume.columns}, x.options());
  for (int d = 0; d < augmentations; ++d) {
    sum.add_(Untransform(network.Infer(Transform(x, d)), d));
  }
  const at::Tensor y =
      sum.div_(augmentations).sub_(map.offset).div_(map.scale).to(c10::kCPU).contiguous();
  std::memcpy(out, y.data_ptr<float>(), sizeof(float) * static_cast<size_t>(y.numel()));
}

at::Tensor NoiseDeviationMap(const at::Tensor& triplets, int64_t block) {
  at::NoGradGuard noGrad;
  const int64_t h = triplets.size(2);
  const int64_t w = triplets.size(3);
  const at::Tensor centre = triplets.narrow(1, 1, 1);
  const at::Tensor above = triplets.narrow(1, 0, 1);
  const at::Tensor below = triplets.narrow(1, 2, 1);
  at::Tensor d = (centre - 0.5 * (above + below)).abs();
  // Padding, and the rows and columns that fill the last blocks, count for nothing.
  d.masked_fill_(centre.eq(above).logical_and_(centre.eq(below)), NAN);
  const int64_t rows = (h + block - 1) / block;
  const int64_t columns = (w + block - 1) / block;
  d = at::constant_pad_nd(d, {0, columns * block - w, 0, rows * block - h}, NAN);
  constexpr double kMadToSigma = 1.0 / 0.6744897501960817;
  at::Tensor sigma = std::get<0>(d.unfold(2, block, block)
                                     .unfold(3, block, block)
                                     .reshape({d.size(0), 1, rows, columns, block * block})
                                     .nanmedian(-1))
                         .mul_(kMadToSigma / std::sqrt(1.5))
                         .nan_to_num_(0.0);
  sigma = at::upsample_bilinear2d(sigma, {rows * block, columns * block}, false);
  return sigma.narrow(2, 0, h).narrow(3, 0, w).contiguous();
}

void CombineWithInput(const Volume& volume, int64_t begin, int64_t count, float* estimate,
                      int window, double margin) {
  at::NoGradGuard noGrad;
  at::Tensor triplets = at::empty({count, 3, volume.rows, volume.columns}, at::kFloat);
  for (int64_t i = 0; i < count; ++i) {
    CopyTriplet(volume, NormalisationMap{}, begin + i, 0, 0, volume.rows, volume.columns,
                triplets[i].data_ptr<float>());
  }
  // The map measures the noise through the neighbouring slices; where the anatomy changes
  // from slice to slice it counts the change as noise too, and the combination would then
  // take the estimate where the input was right (a series without noise would be
  // smoothed). A slice's own noise level (EstimateNoiseSigma, which sees no other slice)
  // caps the map: scaled down where its median over the slice is above it. Where that
  // estimate cannot tell the noise's correlation (dense structure), it is the adjacent
  // pixels' figure, low for correlated noise: the cap then errs toward the input.
  at::Tensor deviation = NoiseDeviationMap(triplets);
  for (int64_t i = 0; i < count; ++i) {
    const at::Tensor slice = deviation[i];
    const at::Tensor carried = slice.masked_select(slice > 0);
    if (carried.numel() == 0) continue;
    const double median = carried.median().item<double>();
    const double own = EstimateNoiseSigma(volume.Slice(begin + i), volume.rows, volume.columns);
    if (median > own) slice.mul_(own / median);
  }
  const at::Tensor variance = deviation.square_();
  const at::Tensor y = triplets.narrow(1, 1, 1);
  at::Tensor f = at::from_blob(estimate, {count, 1, volume.rows, volume.columns}, at::kFloat);
  const at::Tensor r = y - f;
  const at::Tensor tau2 =
      at::avg_pool2d(r * r, {window, window}, {1, 1}, {window / 2, window / 2}, false, false)
          .sub_(margin * variance)
          .clamp_min_(0.0);
  // Where there is no noise, the input: tau^2 / (tau^2 + 0) is 1, and 0 / 0 is taken as 1.
  const at::Tensor weight = at::where(variance > 0, tau2 / (tau2 + variance), at::ones_like(tau2));
  f.add_(weight * r);
}

}  // namespace enhance
