// SPDX-License-Identifier: GPL-3.0-or-later
//
// Supervised training of a TorchScript module on random patches of whole slices:
// mean squared error (or mean absolute error), Adam, cosine learning-rate decay, random flips and
// transposes. Optionally an adversarial term is added to that pixel loss (AdversarialOptions).
// Patches that are mostly background (target below `backgroundLevel` in normalised units) are drawn
// less often, so the network learns from the patient. Deterministic for a seed and a thread count.
// Not synchronised: one training per module.
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <ostream>

namespace enhance::models {

// A least-squares GAN term (Mao et al. 2017) added to the pixel loss when weight > 0: a small
// patch discriminator D (three 4x4 convolutions of stride 2 with `features`, 2x and 4x
// features and leaky ReLU, then a 3x3 convolution to one score per 8x8 input pixels; it
// sees each patch less its mean, times `gain`) is trained to score target patches 1 and
// the network's outputs 0, by 0.5 E[(D(target) - 1)^2] + 0.5 E[D(output)^2], with Adam
// (betas 0.5, 0.999) at `learningRate`, decayed like the network's. The network minimises
// pixel loss + weight * 0.5 E[(D(output) - 1)^2], i.e. it is pushed towards outputs whose
// texture D cannot tell from the targets'. The first `warmupSteps` steps use the pixel
// loss alone. D exists only during training; it is not part of the saved module.
struct AdversarialOptions {
  double weight = 0;  // 0: off, the pixel loss alone
  int64_t features = 16;
  double learningRate = 2e-4;
  double gain = 20.0;  // as the network's (ResidualCnn::gain): noise of tens of HU ~ 0.1
  int64_t warmupSteps = 0;
  uint64_t seed = 7;  // D's initialisation
};

struct TrainOptions {
  int64_t steps = 3000;
  int64_t batch = 16;
  int64_t patch = 64;  // input pixels; the target patch is patch * scale
  int64_t scale = 1;   // target size / input size
  double learningRate = 1e-3;
  double finalLearningRateFraction = 0.05;
  double backgroundLevel = 0.03;  // normalised; -900 HU in the CT window
  double minForegroundFraction = 0.3;
  uint64_t seed = 1;
  bool absoluteError = false;  // L1 instead of the squared error
  AdversarialOptions adversarial;
};

struct TrainResult {
  int64_t steps = 0;
  double seconds = 0;
  double firstLoss = 0;  // mean over the first 5% of the steps
  double lastLoss = 0;   // mean over the last 5% of the steps
  // With the adversarial term, over the last 5% of the steps: the network's adversarial loss
  // 0.5 E[(D(output) - 1)^2] (unweighted) and D's loss.
  double lastAdversarialLoss = 0;
  double lastDiscriminatorLoss = 0;
};

// inputs [S, C, H, W] and targets [S, 1, H * scale, W * scale], float32, normalised.
TrainResult Train(torch::jit::Module& module, const at::Tensor& inputs, const at::Tensor& targets,
                  const TrainOptions& options, std::ostream& log);

}  // namespace enhance::models
