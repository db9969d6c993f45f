// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/Model.h"

#include <cmath>
#include <cstdio>
#include <regex>

#include "enhance/base/Error.h"
#include "enhance/inference/TorchModel.h"

namespace enhance {

void RunContext::ThrowIfCancelled() const {
  if (cancelled && cancelled()) throw Error(ErrorKind::kCancelled, "cancelled on request");
}

namespace {

std::string DescribeRicianBias(const LearningReport& r) {
  if (!r.ricianBiasRemoved) return "";
  return "; the magnitude's Rician bias removed" + DescribeNoiseDeviation(r.heldOutNoiseSigma);
}

}  // namespace

std::string DescribeLearning(const LearningReport& r) {
  std::string steps = std::to_string(r.steps);
  if (r.steps != r.plannedSteps) steps += " of " + std::to_string(r.plannedSteps);
  steps += " steps";
  if (r.stoppedByTimeBudget) steps += " (time budget reached)";
  if (!r.applied) {
    // A network that trained and was not applied: how far it got is part of why.
    return "not learned from this series: " + r.fallback +
           (r.steps > 0 ? "; trained for " + steps : std::string()) + DescribeRicianBias(r);
  }
  // Too short a series to hold slices out: the check ran on training slices.
  const std::string checked = r.heldOutSlices > 0
                                  ? std::to_string(r.heldOutSlices) + " held-out slices"
                                  : std::string("training slices: too few to hold any out");
  char figures[320];
  std::snprintf(figures, sizeof(figures),
                " in %.0f s on %s, training loss %.3g, self-supervised loss %.3g against %.3g "
                "for %s on %s, anatomy change %.2f of the noise power",
                r.trainingSeconds, r.device.c_str(), r.finalLoss, r.heldOutLoss, r.heldOutInputLoss,
                r.heldOutBaseline.c_str(), checked.c_str(), r.anatomyToNoise);
  std::string compared;
  if (r.comparedWithBilateral) {
    compared = ", estimated error (SURE) " + DescribeEstimatedError(r.heldOutNetworkMeanSquare) +
               " against " + DescribeEstimatedError(r.heldOutBilateralMeanSquare) +
               " for the bilateral filter" + DescribeNoiseDeviation(r.heldOutNoiseSigma);
    if (r.networkWeight < 1) {
      char blend[160];
      std::snprintf(blend, sizeof(blend),
                    "; blended with the bilateral filter's result, %.2f of the network's, "
                    "estimated error ",
                    r.networkWeight);
      compared += blend + DescribeEstimatedError(r.heldOutBlendMeanSquare);
    }
  }
  const std::string side = std::to_string(r.blindSpotSide);
  const std::string method =
      r.blindSpotSide > 0 ? r.method + " of " + side + "x" + side + " px" : r.method;
  return "learned from this series: " + method + ", " + steps + figures + compared +
         DescribeRicianBias(r);
}

std::string DescribeEstimatedError(double meanSquare) {
  if (!(meanSquare > 0)) return "at or below 0 (too little noise to score)";
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g", std::sqrt(meanSquare));
  return text;
}

std::string DescribeNoiseDeviation(double sigma) {
  char text[64];
  std::snprintf(text, sizeof(text), " (noise deviation %.3g)", sigma);
  return text;
}

void CheckDeviceName(const std::string& requested) {
  static const std::regex kDevice("auto|cpu|cuda(:[0-9]+)?");
  if (!std::regex_match(requested, kDevice)) {
    throw Error(ErrorKind::kBadInput,
                "device '" + Printable(requested) + "' must be auto, cpu, cuda or cuda:N");
  }
}

}  // namespace enhance
