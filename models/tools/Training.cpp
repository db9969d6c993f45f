// SPDX-License-Identifier: GPL-3.0-or-later
#include "Training.h"

#include <torch/optim/adam.h>

#include <chrono>
#include <cmath>
#include <random>
#include <stdexcept>

namespace enhance::models {
namespace {

constexpr double kPi = 3.14159265358979323846;

struct Batch {
  at::Tensor input;
  at::Tensor target;
};

class PatchSampler {
 public:
  PatchSampler(const at::Tensor& inputs, const at::Tensor& targets, const TrainOptions& options)
      : inputs_(inputs), targets_(targets), o_(options), rng_(options.seed) {}

  Batch Next() {
    std::vector<at::Tensor> in, out;
    for (int64_t i = 0; i < o_.batch; ++i) {
      at::Tensor x, y;
      Draw(x, y);
      // The eight flips and transposes of a square patch.
      if (coin_(rng_)) {
        x = x.flip({-1});
        y = y.flip({-1});
      }
      if (coin_(rng_)) {
        x = x.flip({-2});
        y = y.flip({-2});
      }
      if (coin_(rng_)) {
        x = x.transpose(-1, -2);
        y = y.transpose(-1, -2);
      }
      in.push_back(x);
      out.push_back(y);
    }
    return {at::stack(in).contiguous(), at::stack(out).contiguous()};
  }

 private:
  void Draw(at::Tensor& x, at::Tensor& y) {
    const int64_t p = o_.patch;
    const int64_t s = o_.scale;
    std::uniform_int_distribution<int64_t> slice(0, inputs_.size(0) - 1);
    std::uniform_int_distribution<int64_t> row(0, inputs_.size(2) - p);
    std::uniform_int_distribution<int64_t> column(0, inputs_.size(3) - p);
    for (int attempt = 0;; ++attempt) {
      const int64_t k = slice(rng_), r = row(rng_), c = column(rng_);
      y = targets_[k].narrow(1, r * s, p * s).narrow(2, c * s, p * s);
      const double foreground = y.gt(o_.backgroundLevel).to(at::kFloat).mean().item<double>();
      if (foreground >= o_.minForegroundFraction || attempt >= 8) {
        x = inputs_[k].narrow(1, r, p).narrow(2, c, p);
        return;
      }
    }
  }

  at::Tensor inputs_, targets_;
  TrainOptions o_;
  std::mt19937_64 rng_;
  std::bernoulli_distribution coin_{0.5};
};

}  // namespace

TrainResult Train(torch::jit::Module& module, const at::Tensor& inputs, const at::Tensor& targets,
                  const TrainOptions& options, std::ostream& log) {
  if (inputs.dim() != 4 || targets.dim() != 4 || targets.size(1) != 1 ||
      inputs.size(0) != targets.size(0) || targets.size(2) != inputs.size(2) * options.scale ||
      targets.size(3) != inputs.size(3) * options.scale) {
    throw std::invalid_argument("Train: inputs must be [S, C, H, W], targets [S, 1, H*s, W*s]");
  }
  std::vector<at::Tensor> parameters;
  for (const at::Tensor& p : module.parameters()) {
    p.requires_grad_(true);
    parameters.push_back(p);
  }
  torch::optim::Adam optimizer(parameters, torch::optim::AdamOptions(options.learningRate));
  PatchSampler sampler(inputs, targets, options);
  module.train();

  TrainResult result;
  const int64_t window = std::max<int64_t>(1, options.steps / 20);
  double first = 0, last = 0, report = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < options.steps; ++step) {
    const double progress = static_cast<double>(step) / static_cast<double>(options.steps);
    const double f = options.finalLearningRateFraction;
    const double rate = options.learningRate * (f + (1 - f) * 0.5 * (1 + std::cos(kPi * progress)));
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(rate);
    }
    const Batch batch = sampler.Next();
    optimizer.zero_grad();
    const at::Tensor prediction = module.forward({batch.input}).toTensor();
    const at::Tensor loss = options.absoluteError ? at::l1_loss(prediction, batch.target)
                                                  : at::mse_loss(prediction, batch.target);
    loss.backward();
    optimizer.step();

    const double value = loss.item<double>();
    if (step < window) first += value / static_cast<double>(window);
    if (step >= options.steps - window) last += value / static_cast<double>(window);
    report += value;
    if ((step + 1) % window == 0) {
      const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
      log << "  step " << step + 1 << "/" << options.steps << "  loss "
          << report / static_cast<double>(window) << "  lr " << rate << "  " << elapsed.count()
          << " s\n"
          << std::flush;
      report = 0;
    }
  }
  module.eval();
  for (const at::Tensor& p : parameters) p.requires_grad_(false);
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  result.steps = options.steps;
  result.seconds = elapsed.count();
  result.firstLoss = first;
  result.lastLoss = last;
  return result;
}

}  // namespace enhance::models
