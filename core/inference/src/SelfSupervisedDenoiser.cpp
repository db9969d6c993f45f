// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/SelfSupervisedDenoiser.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <set>

#include "SliceDenoiserNetwork.h"
#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"
#include "enhance/inference/BilateralDenoiser.h"
#include "enhance/inference/TorchModel.h"

namespace enhance {
namespace {

constexpr const char* kNoise2Noise = "neighbouring-slice Noise2Noise";
constexpr const char* kBlindSpot = "neighbouring-slice blind spot";
// Shares of the progress: training, then the slices.
constexpr double kTrainingShare = 0.4;
// The blind spot's estimate is combined with the input (CombineWithInput) over windows of
// 7x7 pixels, the noise's variance counted 1.5 times: the local mean square of 49 pixels
// of correlated noise scatters about its expectation, and a margin keeps that scatter
// from passing noise back. Both were chosen on a tuning phantom (evaluation phantom seed
// 1), not on the phantoms the figures are measured on.
constexpr int kCombineWindow = 7;
constexpr double kNoiseMargin = 1.5;

std::string Millimetres(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g mm", value);
  return text;
}

void Check(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorKind::kBadInput, "self-supervised-denoise: " + what);
}

// Measures the anatomy's change and sets report.method from it, and for the blind spot
// report.blindSpotSide; why the bilateral filter runs instead, or "" when a network learns.
std::string ChooseMethod(const Volume& volume, const NeighbourPairs& pairs,
                         const SelfSupervisedParameters& p, LearningReport& report) {
  report.anatomyToNoise = AnatomyToNoise(volume, pairs.training);
  const double anatomy = report.anatomyToNoise;
  const auto tooFast = [anatomy](double limit, const char* because) {
    char text[320];
    std::snprintf(text, sizeof(text),
                  "the anatomy changes from slice to slice by %.3g times the noise power (at "
                  "most %.3g is learned from), so %s",
                  anatomy, limit, because);
    return std::string(text);
  };
  if (p.method == SelfSupervisedMethod::kAuto && anatomy > p.blindSpotMaxAnatomyToNoise) {
    return tooFast(p.blindSpotMaxAnatomyToNoise,
                   "the neighbouring slices tell little about the slice between them");
  }
  if (p.method == SelfSupervisedMethod::kAuto && anatomy > p.maxAnatomyToNoise) {
    report.method = kBlindSpot;
  } else if (p.method == SelfSupervisedMethod::kNoise2Noise && anatomy > p.maxAnatomyToNoise) {
    return tooFast(p.maxAnatomyToNoise, "the network would learn to blur across slices");
  }
  if (report.method != kBlindSpot) return "";
  int radius = p.blindSpotRadius;
  if (radius < 0) radius = NoiseCorrelationRadius(volume, pairs.training);
  if (radius < 0) {
    // The blind spot must hide the noise correlated with each pixel: where the series does
    // not show how far that reaches, a guess could let the network learn the noise back or
    // hide more than it must.
    if (p.method == SelfSupervisedMethod::kAuto) {
      return tooFast(p.maxAnatomyToNoise,
                     "Noise2Noise would learn to blur across slices, and the blind spot "
                     "cannot be sized: how far the noise is correlated across pixels could "
                     "not be measured (the slices' structure hides it)");
    }
    // Forced: 2, which covers CT's filtered back-projection on its usual grid.
    radius = 2;
  }
  report.blindSpotSide = 2 * radius + 1;
  return "";
}

}  // namespace

std::string WhyNeighboursShareNoise(const Geometry& geometry, int64_t slices) {
  if (slices < 3) {
    return "the series has " + std::to_string(slices) + " slice" + (slices == 1 ? "" : "s") +
           ", fewer than the three a pair of neighbours needs";
  }
  if (!(geometry.sliceThickness > 0)) {
    return "the slice thickness is unknown, so the slices may overlap";
  }
  if (geometry.sliceSpacing < 0.99 * geometry.sliceThickness) {
    return "the slices overlap (" + Millimetres(geometry.sliceSpacing) + " apart, " +
           Millimetres(geometry.sliceThickness) + " thick)";
  }
  return "";
}

NeighbourPairs PlanNeighbourPairs(int64_t slices, int heldOutEvery) {
  NeighbourPairs pairs;
  std::set<int64_t> held;
  if (heldOutEvery >= 1) {
    for (int64_t k = heldOutEvery / 2; k + 1 < slices; k += heldOutEvery) {
      if (k >= 1) held.insert(k);
    }
  }
  // A training pair (k - 1, k, k + 1) must not read a slice of a held-out pair.
  const auto touchesHeldOut = [&held](int64_t k) {
    for (int64_t d = -2; d <= 2; ++d) {
      if (held.count(k + d) != 0) return true;
    }
    return false;
  };
  for (int64_t k = 1; k + 1 < slices; ++k) {
    if (!touchesHeldOut(k)) pairs.training.push_back(k);
  }
  if (pairs.training.empty()) {  // too few slices to hold any out
    for (int64_t k = 1; k + 1 < slices; ++k) pairs.training.push_back(k);
    return pairs;
  }
  pairs.heldOut.assign(held.begin(), held.end());
  return pairs;
}

double AnatomyToNoise(const Volume& volume, const std::vector<int64_t>& centres) {
  // d = slice k - (slice k-1 + slice k+1) / 2. Where the anatomy does not change (most
  // pixels), d is noise alone, of variance 1.5 sigma^2 (the slices' noise is independent,
  // white or not): the median of |d| gives sigma. Where it changes, d grows: the mean of
  // d^2 beyond 1.5 sigma^2 is the anatomy's change. Pixels equal in all three slices
  // (padding, clipped air) carry no noise and are skipped.
  // The median over the slices checked: a few slices where an organ ends abruptly do not
  // decide for the series.
  constexpr size_t kChecked = 8;
  constexpr double kMadToSigma = 1.0 / 0.6744897501960817;
  const size_t count = std::min(kChecked, centres.size());
  std::vector<double> ratios;
  std::vector<float> magnitudes;
  for (size_t i = 0; i < count; ++i) {
    const int64_t k = centres[i * centres.size() / count];
    const float* x = volume.Slice(k);
    const float* above = volume.Slice(k - 1);
    const float* below = volume.Slice(k + 1);
    magnitudes.clear();
    double squares = 0;
    for (int64_t p = 0; p < volume.VoxelsPerSlice(); ++p) {
      if (x[p] == above[p] && x[p] == below[p]) continue;
      const double d = x[p] - 0.5 * (static_cast<double>(above[p]) + below[p]);
      squares += d * d;
      magnitudes.push_back(static_cast<float>(std::abs(d)));
    }
    if (magnitudes.empty()) continue;
    const auto middle = magnitudes.begin() + static_cast<long>(magnitudes.size() / 2);
    std::nth_element(magnitudes.begin(), middle, magnitudes.end());
    const double sigma = *middle * kMadToSigma / std::sqrt(1.5);
    const double anatomy =
        std::max(0.0, squares / static_cast<double>(magnitudes.size()) - 1.5 * sigma * sigma);
    ratios.push_back(sigma > 0 ? anatomy / (sigma * sigma) : (anatomy > 0 ? 1e9 : 0.0));
  }
  if (ratios.empty()) return 0.0;
  const auto middle = ratios.begin() + static_cast<long>(ratios.size() / 2);
  std::nth_element(ratios.begin(), middle, ratios.end());
  return *middle;
}

int NoiseCorrelationRadius(const Volume& volume, const std::vector<int64_t>& centres) {
  // The median over up to 8 slices of the spacing at which the noise's estimate levels off:
  // noise correlated over s pixels is hidden by a square reaching s - 1 pixels around.
  // Where it does not level off on most slices, the correlation is unknown: -1.
  constexpr size_t kChecked = 8;
  constexpr int64_t kMaxRadius = 3;
  constexpr int kUnknown = -1;
  const size_t count = std::min(kChecked, centres.size());
  std::vector<int64_t> spacings;
  for (size_t i = 0; i < count; ++i) {
    const int64_t k = centres[i * centres.size() / count];
    const NoiseEstimate noise = EstimateNoise(volume.Slice(k), volume.rows, volume.columns);
    if (noise.levelled) spacings.push_back(noise.spacing);
  }
  if (spacings.empty() || 2 * spacings.size() < count) return kUnknown;
  const auto middle = spacings.begin() + static_cast<long>(spacings.size() / 2);
  std::nth_element(spacings.begin(), middle, spacings.end());
  return static_cast<int>(std::clamp<int64_t>(*middle - 1, 0, kMaxRadius));
}

SelfSupervisedDenoiser::SelfSupervisedDenoiser(SelfSupervisedParameters parameters)
    : parameters_(std::move(parameters)) {
  const SelfSupervisedParameters& p = parameters_;
  Check(p.steps >= 1, "steps must be at least 1");
  Check(p.timeBudgetSeconds > 0, "the time budget must be positive");
  Check(p.batch >= 1 && p.patch >= 8, "batch must be at least 1 and patch at least 8 pixels");
  Check(p.features >= 1 && p.layers >= 2, "the network needs at least 2 layers and 1 feature");
  Check(p.learningRate > 0, "the learning rate must be positive");
  Check(
      p.augmentations == 1 || p.augmentations == 2 || p.augmentations == 4 || p.augmentations == 8,
      "augmentations must be 1, 2, 4 or 8");
  Check(p.slicesPerBatch >= 1, "slices per batch must be at least 1");
  Check(p.maxAnatomyToNoise > 0 && p.blindSpotMaxAnatomyToNoise >= p.maxAnatomyToNoise,
        "the anatomy-to-noise limits must be positive, the blind spot's at least "
        "Noise2Noise's");
  Check(p.blindSpotRadius >= -1 && p.blindSpotDilatedLayers >= 0,
        "the blind spot's radius must be -1 (measured) or more, its dilated layers not "
        "negative");
  CheckDeviceName(p.device);
  info_.name = "self-supervised-denoise";
  info_.version = "1.2.0";
  info_.task = "denoise";
  info_.modalities = {"CT", "MR"};
  info_.intendedUse =
      "Learns the noise of each series from the series itself (neighbouring slices as "
      "independent noisy views: Noise2Noise, or a blind spot where the anatomy changes "
      "faster) and removes it; needs no training data. For series whose slices do not "
      "overlap.";
  info_.derivationCode = DefaultDerivationCode("denoise");
  info_.tileSize = 0;
  info_.uid = UidFromName(info_.name + "/" + info_.version + "/" + Parameters());
}

std::string SelfSupervisedDenoiser::Parameters() const {
  const SelfSupervisedParameters& p = parameters_;
  const std::string side = std::to_string(2 * p.blindSpotRadius + 1);
  const std::string blindSpot =
      std::string(kBlindSpot) + (p.blindSpotRadius < 0 ? " as wide as the noise's correlation"
                                                       : " of " + side + "x" + side + " px");
  // The anatomy's limits decide which method runs: part of the model's identity.
  char automatic[320];
  std::snprintf(automatic, sizeof(automatic),
                "%s up to an anatomy change of %.3g of the noise power, %s up to %.3g, the "
                "bilateral filter beyond",
                kNoise2Noise, p.maxAnatomyToNoise, blindSpot.c_str(), p.blindSpotMaxAnatomyToNoise);
  const std::string method = p.method == SelfSupervisedMethod::kNoise2Noise
                                 ? std::string(kNoise2Noise)
                             : p.method == SelfSupervisedMethod::kBlindSpot ? blindSpot
                                                                            : automatic;
  char text[512];
  std::snprintf(text, sizeof(text),
                "%s; %d-layer CNN of %d features, %d steps of %d patches of %d px, seed %llu, "
                "%d orientations averaged",
                method.c_str(), p.layers, p.features, p.steps, p.batch, p.patch,
                static_cast<unsigned long long>(p.seed), p.augmentations);
  return text;
}

Volume SelfSupervisedDenoiser::Run(const Volume& input, const RunContext& context) const {
  Volume copy = input;
  return RunReusing(copy, context);
}

Volume SelfSupervisedDenoiser::RunReusing(Volume& volume, const RunContext& context) const {
  const SelfSupervisedParameters& p = parameters_;
  LearningReport report;
  report.method = p.method == SelfSupervisedMethod::kBlindSpot ? kBlindSpot : kNoise2Noise;
  report.plannedSteps = p.steps;
  std::string why = WhyNeighboursShareNoise(volume.geometry, volume.slices);
  if (!why.empty()) {
    why += "; neighbouring slices are then no independent views of the noise";
  }
  const NeighbourPairs pairs = PlanNeighbourPairs(volume.slices, p.heldOutEvery);
  if (why.empty()) why = ChooseMethod(volume, pairs, p, report);
  if (!why.empty()) {
    report.fallback = why + "; the bilateral filter ran instead";
    context.Warn(info_.name + ": " + report.fallback);
    if (context.learned) context.learned(report);
    return BilateralDenoiser().Run(volume, context);
  }
  const c10::Device device(EffectiveDevice(p.device));
  report.device = device.str();
  const NormalisationMap map =
      MapFor(Normalization{Normalization::Method::kPercentile, 1.0, 99.0}, volume);
  std::unique_ptr<SeriesNetwork> network;
  if (report.method == kBlindSpot) {
    network = std::make_unique<BlindSpotNetwork>(
        (report.blindSpotSide - 1) / 2, p.blindSpotDilatedLayers, p.features, p.seed, device);
  } else {
    network = std::make_unique<SliceDenoiserNetwork>(p.layers, p.features, p.seed, device);
  }
  TrainOnNeighbours(*network, volume, map, p, pairs, context, kTrainingShare, device, report);
  if (!report.applied) {
    char text[256];
    std::snprintf(text, sizeof(text),
                  "the network did not lower the self-supervised loss on held-out slices "
                  "(%.3g against %.3g for %s), so the input is returned unchanged",
                  report.heldOutLoss, report.heldOutInputLoss, report.heldOutBaseline.c_str());
    report.fallback = text;
    context.Warn(info_.name + ": " + report.fallback);
  }
  if (context.learned) context.learned(report);
  std::vector<float> out;
  for (int64_t begin = 0; begin < volume.slices; begin += parameters_.slicesPerBatch) {
    context.ThrowIfCancelled();
    const int64_t count = std::min<int64_t>(parameters_.slicesPerBatch, volume.slices - begin);
    if (report.applied) {
      out.resize(static_cast<size_t>(count * volume.VoxelsPerSlice()));
      DenoiseSlices(*network, volume, map, begin, count, parameters_.augmentations, device,
                    out.data());
      if (report.method == kBlindSpot) {
        CombineWithInput(volume, begin, count, out.data(), kCombineWindow, kNoiseMargin);
      }
      std::copy(out.begin(), out.end(), volume.Slice(begin));
    }
    for (int64_t k = begin; k < begin + count; ++k) {
      if (context.outputReady) context.outputReady(k);
    }
    context.Report(kTrainingShare + (1 - kTrainingShare) * static_cast<double>(begin + count) /
                                        static_cast<double>(volume.slices));
  }
  return std::move(volume);
}

}  // namespace enhance
