// SPDX-License-Identifier: GPL-3.0-or-later
//
// Supervised training of a TorchScript module on random patches of whole slices:
// mean squared error (or mean absolute error), Adam, cosine learning-rate decay, random flips and
// transposes. Patches that are mostly background (target below `backgroundLevel` in normalised
// units) are drawn less often, so the network learns from the patient.
// Deterministic for a seed and a thread count. Not synchronised: one training per module.
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <ostream>

namespace enhance::models {

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
};

struct TrainResult {
  int64_t steps = 0;
  double seconds = 0;
  double firstLoss = 0;  // mean over the first 5% of the steps
  double lastLoss = 0;   // mean over the last 5% of the steps
};

// inputs [S, C, H, W] and targets [S, 1, H * scale, W * scale], float32, normalised.
TrainResult Train(torch::jit::Module& module, const at::Tensor& inputs, const at::Tensor& targets,
                  const TrainOptions& options, std::ostream& log);

}  // namespace enhance::models
