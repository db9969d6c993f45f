// SPDX-License-Identifier: GPL-3.0-or-later
#include "Training.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

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

// The patch discriminator of AdversarialOptions and its optimiser.
class Adversary {
 public:
  explicit Adversary(const AdversarialOptions& o)
      : o_(o),
        net_(Build(o)),
        optimizer_(net_->parameters(),
                   torch::optim::AdamOptions(o.learningRate).betas(std::make_tuple(0.5, 0.999))) {}

  // 0.5 E[(D(output) - 1)^2]; its gradient reaches the network through `output`.
  at::Tensor NetworkLoss(const at::Tensor& output) {
    return 0.5 * (Score(output) - 1).pow(2).mean();
  }

  // One step of D on targets and (detached) outputs; returns D's loss.
  double Step(const at::Tensor& target, const at::Tensor& output, double rateFraction) {
    for (auto& group : optimizer_.param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(o_.learningRate * rateFraction);
    }
    optimizer_.zero_grad();
    const at::Tensor loss =
        0.5 * (Score(target) - 1).pow(2).mean() + 0.5 * Score(output.detach()).pow(2).mean();
    loss.backward();
    optimizer_.step();
    return loss.item<double>();
  }

 private:
  static torch::nn::Sequential Build(const AdversarialOptions& o) {
    namespace nn = torch::nn;
    torch::manual_seed(o.seed);  // the default initialisation draws from the global generator
    const int64_t f = o.features;
    const auto leaky = [] { return nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)); };
    const auto down = [](int64_t in, int64_t out) {
      return nn::Conv2d(nn::Conv2dOptions(in, out, 4).stride(2).padding(1));
    };
    return nn::Sequential(down(1, f), leaky(), down(f, 2 * f), leaky(), down(2 * f, 4 * f), leaky(),
                          nn::Conv2d(nn::Conv2dOptions(4 * f, 1, 3).padding(1)));
  }

  at::Tensor Score(const at::Tensor& x) {
    return net_->forward(o_.gain * (x - x.mean({1, 2, 3}, true)));
  }

  AdversarialOptions o_;
  torch::nn::Sequential net_;
  torch::optim::Adam optimizer_;
};

struct StepLosses {
  double pixel = 0;
  double adversarial = 0;
  double discriminator = 0;
};

// Means of the losses over the first and last windows of steps, and a log line per window.
class LossLog {
 public:
  LossLog(int64_t steps, bool adversarial, std::ostream& log)
      : steps_(steps),
        window_(std::max<int64_t>(1, steps / 20)),
        adversarial_(adversarial),
        log_(log),
        start_(std::chrono::steady_clock::now()) {}

  void Add(int64_t step, const StepLosses& l, double rate) {
    const double w = static_cast<double>(window_);
    if (step < window_) first_.pixel += l.pixel / w;
    if (step >= steps_ - window_) {
      last_.pixel += l.pixel / w;
      last_.adversarial += l.adversarial / w;
      last_.discriminator += l.discriminator / w;
    }
    report_.pixel += l.pixel;
    report_.adversarial += l.adversarial;
    report_.discriminator += l.discriminator;
    if ((step + 1) % window_ != 0) return;
    log_ << "  step " << step + 1 << "/" << steps_ << "  loss " << report_.pixel / w;
    if (adversarial_) {
      log_ << "  adversarial " << report_.adversarial / w << "  discriminator "
           << report_.discriminator / w;
    }
    log_ << "  lr " << rate << "  " << Seconds() << " s\n" << std::flush;
    report_ = {};
  }

  TrainResult Result() const {
    TrainResult r;
    r.steps = steps_;
    r.seconds = Seconds();
    r.firstLoss = first_.pixel;
    r.lastLoss = last_.pixel;
    r.lastAdversarialLoss = last_.adversarial;
    r.lastDiscriminatorLoss = last_.discriminator;
    return r;
  }

 private:
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  int64_t steps_, window_;
  bool adversarial_;
  std::ostream& log_;
  std::chrono::steady_clock::time_point start_;
  StepLosses first_, last_, report_;
};

void CheckShapes(const at::Tensor& inputs, const at::Tensor& targets, const TrainOptions& options) {
  if (inputs.dim() != 4 || targets.dim() != 4 || targets.size(1) != 1 ||
      inputs.size(0) != targets.size(0) || targets.size(2) != inputs.size(2) * options.scale ||
      targets.size(3) != inputs.size(3) * options.scale) {
    throw std::invalid_argument("Train: inputs must be [S, C, H, W], targets [S, 1, H*s, W*s]");
  }
}

}  // namespace

TrainResult Train(torch::jit::Module& module, const at::Tensor& inputs, const at::Tensor& targets,
                  const TrainOptions& options, std::ostream& log) {
  CheckShapes(inputs, targets, options);
  std::vector<at::Tensor> parameters;
  for (const at::Tensor& p : module.parameters()) {
    p.requires_grad_(true);
    parameters.push_back(p);
  }
  torch::optim::Adam optimizer(parameters, torch::optim::AdamOptions(options.learningRate));
  PatchSampler sampler(inputs, targets, options);
  const AdversarialOptions& a = options.adversarial;
  std::unique_ptr<Adversary> adversary;
  if (a.weight > 0) adversary = std::make_unique<Adversary>(a);
  module.train();

  LossLog losses(options.steps, adversary != nullptr, log);
  for (int64_t step = 0; step < options.steps; ++step) {
    const double progress = static_cast<double>(step) / static_cast<double>(options.steps);
    const double f = options.finalLearningRateFraction;
    const double decay = f + (1 - f) * 0.5 * (1 + std::cos(kPi * progress));
    const double rate = options.learningRate * decay;
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(rate);
    }
    const Batch batch = sampler.Next();
    optimizer.zero_grad();
    const at::Tensor prediction = module.forward({batch.input}).toTensor();
    const at::Tensor pixelLoss = options.absoluteError ? at::l1_loss(prediction, batch.target)
                                                       : at::mse_loss(prediction, batch.target);
    StepLosses l;
    l.pixel = pixelLoss.item<double>();
    if (adversary && step >= a.warmupSteps) {
      const at::Tensor adversarialLoss = adversary->NetworkLoss(prediction);
      (pixelLoss + a.weight * adversarialLoss).backward();
      optimizer.step();
      l.adversarial = adversarialLoss.item<double>();
      l.discriminator = adversary->Step(batch.target, prediction, decay);
    } else {
      pixelLoss.backward();
      optimizer.step();
    }
    losses.Add(step, l, rate);
  }
  module.eval();
  for (const at::Tensor& p : parameters) p.requires_grad_(false);
  return losses.Result();
}

}  // namespace enhance::models
