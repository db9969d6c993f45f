// SPDX-License-Identifier: GPL-3.0-or-later
#include "DiffusionSampler.h"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

constexpr double kPi = 3.14159265358979323846;

// SplitMix64's finaliser: a bijective mix of 64 bits.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// A uniform number in (0, 1) from 53 bits of `bits`.
double Uniform(uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }

std::vector<double> Betas(const SamplerSpec& s) {
  const int count = s.trainingTimesteps;
  std::vector<double> betas(static_cast<size_t>(count));
  for (int t = 0; t < count; ++t) {
    const double f = count > 1 ? static_cast<double>(t) / (count - 1) : 0.0;
    if (s.schedule == SamplerSpec::Schedule::kScaledLinear) {
      const double root =
          std::sqrt(s.betaStart) + f * (std::sqrt(s.betaEnd) - std::sqrt(s.betaStart));
      betas[static_cast<size_t>(t)] = root * root;
    } else {
      betas[static_cast<size_t>(t)] = s.betaStart + f * (s.betaEnd - s.betaStart);
    }
  }
  return betas;
}

}  // namespace

std::vector<double> AlphasCumprod(const SamplerSpec& s) {
  if (s.schedule == SamplerSpec::Schedule::kTable) return s.alphasCumprod;
  std::vector<double> cumulative(static_cast<size_t>(s.trainingTimesteps));
  double product = 1.0;
  if (s.schedule == SamplerSpec::Schedule::kCosine) {
    const double offset = 0.008;
    const auto f = [&](double t) {
      const double c = std::cos((t / s.trainingTimesteps + offset) / (1 + offset) * kPi / 2);
      return c * c;
    };
    for (int t = 0; t < s.trainingTimesteps; ++t) {
      const double beta = std::min(1.0 - f(t + 1.0) / f(t), 0.999);
      product *= 1.0 - beta;
      cumulative[static_cast<size_t>(t)] = product;
    }
    return cumulative;
  }
  const std::vector<double> betas = Betas(s);
  for (size_t t = 0; t < betas.size(); ++t) {
    product *= 1.0 - betas[t];
    cumulative[t] = product;
  }
  return cumulative;
}

std::vector<int> InferenceTimesteps(const SamplerSpec& s) {
  if (!s.timesteps.empty()) return s.timesteps;
  const int total = s.trainingTimesteps;
  const int count = std::clamp(s.stepCount, 1, total);
  std::vector<int> steps;
  for (int k = 0; k < count; ++k) {
    if (s.spacing == "leading") {
      steps.push_back((count - 1 - k) * (total / count));
    } else if (s.spacing == "linspace") {
      const double value =
          count > 1 ? (total - 1) * static_cast<double>(count - 1 - k) / (count - 1) : 0.0;
      steps.push_back(static_cast<int>(std::lround(value)));
    } else {  // trailing
      steps.push_back(
          static_cast<int>(std::lround(total - k * static_cast<double>(total) / count)) - 1);
    }
  }
  return steps;
}

at::Tensor DdimStep(const SamplerSpec& s, const at::Tensor& xt, const at::Tensor& output,
                    double alpha, double alphaPrevious, const at::Tensor& noise) {
  const double rootAlpha = std::sqrt(alpha);
  const double rootOneMinus = std::sqrt(std::max(1.0 - alpha, 1e-12));
  at::Tensor x0;
  at::Tensor epsilon;
  switch (s.prediction) {
    case SamplerSpec::Prediction::kEpsilon:
      epsilon = output;
      x0 = (xt - rootOneMinus * output) / rootAlpha;
      break;
    case SamplerSpec::Prediction::kV:
      x0 = rootAlpha * xt - rootOneMinus * output;
      epsilon = rootAlpha * output + rootOneMinus * xt;
      break;
    case SamplerSpec::Prediction::kSample:
      x0 = output;
      epsilon = (xt - rootAlpha * output) / rootOneMinus;
      break;
  }
  if (s.clip) {
    x0 = x0.clamp(s.clipMin, s.clipMax);
    epsilon = (xt - rootAlpha * x0) / rootOneMinus;
  }
  const double sigma =
      s.eta * std::sqrt(std::max((1.0 - alphaPrevious) / std::max(1.0 - alpha, 1e-12), 0.0)) *
      std::sqrt(std::max(1.0 - alpha / alphaPrevious, 0.0));
  const double direction = std::sqrt(std::max(1.0 - alphaPrevious - sigma * sigma, 0.0));
  at::Tensor previous = std::sqrt(alphaPrevious) * x0 + direction * epsilon;
  if (sigma > 0) {
    if (!noise.defined()) throw Error(ErrorKind::kInternal, "DDIM with eta > 0 needs noise");
    previous = previous + sigma * noise;
  }
  return previous;
}

at::Tensor SliceNoise(uint64_t seed, uint64_t key, double position, int sample, int step,
                      int64_t row, int64_t column, int64_t rows, int64_t columns) {
  const auto micrometres = static_cast<int64_t>(std::llround(position * 1000.0));
  uint64_t base = Mix(seed ^ 0x6a09e667f3bcc909ULL);
  base = Mix(base ^ key);
  base = Mix(base ^ static_cast<uint64_t>(micrometres));
  base = Mix(base ^ (static_cast<uint64_t>(static_cast<uint32_t>(sample)) << 32 |
                     static_cast<uint32_t>(step + 1)));
  at::Tensor noise = at::empty({rows, columns}, at::kFloat);
  float* out = noise.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const uint64_t line = Mix(base ^ (static_cast<uint64_t>(row + r) << 32));
    for (int64_t c = 0; c < columns; ++c) {
      const uint64_t a = Mix(line ^ static_cast<uint64_t>(column + c));
      const uint64_t b = Mix(a ^ 0xbb67ae8584caa73bULL);
      // Box-Muller: one standard normal from two uniforms.
      out[r * columns + c] = static_cast<float>(std::sqrt(-2.0 * std::log(Uniform(a))) *
                                                std::cos(2.0 * kPi * Uniform(b)));
    }
  }
  return noise;
}

namespace {

// The noise of every item of a batch, [B,1,h,w], on the condition's device.
at::Tensor BatchNoise(const SamplerSpec& s, uint64_t key, const BatchPlacement& placement,
                      int sample, int step, const at::Tensor& like) {
  const int64_t items = like.size(0), rows = like.size(2), columns = like.size(3);
  std::vector<at::Tensor> slices;
  for (int64_t i = 0; i < items; ++i) {
    slices.push_back(SliceNoise(s.seed, key, placement.positions.at(static_cast<size_t>(i)), sample,
                                step, placement.row, placement.column, rows, columns));
  }
  return at::stack(slices).unsqueeze(1).to(like.device());
}

}  // namespace

SampledBatch SampleBatch(const SamplerSpec& s, const DenoiserFunction& network,
                         const at::Tensor& condition, const BatchPlacement& placement, uint64_t key,
                         const SamplerProgress& progress) {
  if (static_cast<int64_t>(placement.positions.size()) != condition.size(0)) {
    throw Error(ErrorKind::kInternal,
                "a batch of " + std::to_string(condition.size(0)) + " items came with " +
                    std::to_string(placement.positions.size()) + " positions");
  }
  c10::InferenceMode guard;
  const std::vector<double> alphas = AlphasCumprod(s);
  const std::vector<int> steps = InferenceTimesteps(s);
  const int64_t total = static_cast<int64_t>(s.samples) * static_cast<int64_t>(steps.size());
  const int64_t items = condition.size(0);
  const at::Tensor like = at::empty({items, 1, condition.size(2), condition.size(3)},
                                    condition.options().dtype(at::kFloat));
  // Welford's running mean and sum of squared deviations across samples.
  at::Tensor mean = at::zeros_like(like);
  at::Tensor squares = at::zeros_like(like);
  int64_t done = 0;
  for (int k = 0; k < s.samples; ++k) {
    at::Tensor x = BatchNoise(s, key, placement, k, -1, like);
    for (size_t j = 0; j < steps.size(); ++j) {
      const int t = steps[j];
      const double time = s.timeInput == SamplerSpec::TimeInput::kFraction
                              ? static_cast<double>(t) / s.trainingTimesteps
                              : static_cast<double>(t);
      const at::Tensor timeTensor = at::full({items}, time, condition.options());
      const at::Tensor output =
          network(x.to(condition.scalar_type()), timeTensor, condition).to(at::kFloat);
      if (output.sizes() != x.sizes()) {
        throw Error(ErrorKind::kInternal, "the denoising network returned shape " +
                                              c10::str(output.sizes()) + " for x_t of shape " +
                                              c10::str(x.sizes()));
      }
      const double previous =
          j + 1 < steps.size() ? alphas.at(static_cast<size_t>(steps[j + 1])) : 1.0;
      const at::Tensor noise =
          s.eta > 0 ? BatchNoise(s, key, placement, k, static_cast<int>(j), like) : at::Tensor();
      x = DdimStep(s, x, output, alphas.at(static_cast<size_t>(t)), previous, noise);
      ++done;
      if (progress && !progress(done, total)) {
        throw Error(ErrorKind::kCancelled, "cancelled during diffusion sampling");
      }
    }
    const at::Tensor delta = x - mean;
    mean.add_(delta / (k + 1));
    squares.add_(delta * (x - mean));
  }
  return {mean, (squares / s.samples).sqrt_()};
}

}  // namespace enhance
