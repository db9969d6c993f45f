// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/SelfSupervisedDenoiser.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <set>

#include "RiskEstimate.h"
#include "SeriesNoise.h"
#include "SliceDenoiserNetwork.h"
#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"
#include "enhance/inference/BilateralDenoiser.h"
#include "enhance/inference/RicianBias.h"
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
  const size_t count = std::min(kChecked, centres.size());
  std::vector<double> ratios;
  for (size_t i = 0; i < count; ++i) {
    const int64_t k = centres[i * centres.size() / count];
    const NeighbourDifference d = MeasureNeighbourDifference(volume, k, NoisyPixels(volume, k));
    if (d.pixels == 0) continue;
    const double sigma = d.sigma;
    const double anatomy = std::max(0.0, d.meanSquare - 1.5 * sigma * sigma);
    ratios.push_back(sigma > 0 ? anatomy / (sigma * sigma) : (anatomy > 0 ? 1e9 : 0.0));
  }
  if (ratios.empty()) return 0.0;
  const auto middle = ratios.begin() + static_cast<long>(ratios.size() / 2);
  std::nth_element(ratios.begin(), middle, ratios.end());
  return *middle;
}

namespace {

// How far the noise of one image is correlated, from the noise's estimate with the
// Laplacian-difference mask's taps d = 1, 2, ... pixels apart: it jumps from d to d + 1
// while the taps are within the noise's correlation, and after that grows no faster than
// the image's structure makes it grow. A step is a jump when it grows the estimate by
// more than 10% and by more than twice the next step does. The first step that is not a
// jump gives the reach; it is unknown where the next step itself grows the estimate by
// more than 10% (structure, not noise, decides the estimate there).
struct CorrelationReach {
  int64_t spacing = 1;
  bool known = false;
};

CorrelationReach MeasureCorrelationReach(const float* image, int64_t rows, int64_t columns) {
  constexpr int64_t kMaxSpacing = 6;
  constexpr double kJump = 0.10;
  constexpr double kStructure = 0.10;
  std::vector<double> e(kMaxSpacing + 1, 0.0);
  for (int64_t d = 1; d <= kMaxSpacing; ++d) {
    e[static_cast<size_t>(d)] = EstimateNoiseSigmaAtSpacing(image, rows, columns, d);
    if (e[static_cast<size_t>(d)] <= 0) return {};
  }
  for (size_t d = 1; d + 2 <= kMaxSpacing; ++d) {
    const double step = e[d + 1] / e[d] - 1;
    const double next = e[d + 2] / e[d + 1] - 1;
    if (step > std::max(kJump, 2 * next)) continue;  // still within the correlation
    return {static_cast<int64_t>(d), next <= kStructure};
  }
  return {};
}

// The bilateral filter on one slice alone (its range set by that slice's noise), as the
// comparison scores it and as a blend takes it.
std::vector<float> BilateralOfSlice(const Volume& like, const float* slice) {
  Volume one;
  one.Resize(1, like.rows, like.columns);
  one.units = like.units;
  std::copy(slice, slice + like.VoxelsPerSlice(), one.voxels.begin());
  return BilateralDenoiser().Run(one, {}).voxels;
}

// The network's result (with CombineWithInput for the blind spot) f and the bilateral
// filter's b on up to 8 held-out slices k of a series with white noise, and every blend
// w f + (1 - w) b, scored by Stein's unbiased risk estimate over the pixels and with the
// noise's deviation of PixelsToScore; sets the report's comparison and the weight w of
// the lowest estimate: where it is 0, `applied` to false and the fallback. Each slice is
// denoised as the triplet k - 1, k, k + 1 whose middle slice is perturbed.
void CompareWithBilateral(const SeriesNetwork& network, const Volume& volume,
                          const NormalisationMap& map, const std::vector<int64_t>& heldOut,
                          const SelfSupervisedParameters& p, bool blindSpot,
                          const c10::Device& device, LearningReport& report) {
  constexpr size_t kCompared = 8;
  const bool magnitude = IsMagnitude(volume);
  const size_t count = std::min(kCompared, heldOut.size());
  Volume triplet;
  triplet.Resize(3, volume.rows, volume.columns);
  triplet.units = volume.units;
  BlendRiskEstimate pooled;
  double varianceSum = 0;
  for (size_t i = 0; i < count; ++i) {
    const int64_t k = heldOut[i * heldOut.size() / count];
    if (k < 1 || k + 1 >= volume.slices) continue;
    std::copy(volume.Slice(k - 1), volume.Slice(k + 2), triplet.voxels.begin());
    const std::vector<float> noisy(volume.Slice(k), volume.Slice(k + 1));
    const auto [counted, sigma] = PixelsToScore(volume, k, magnitude);
    const auto byNetwork = [&](const std::vector<float>& image) {
      std::copy(image.begin(), image.end(), triplet.Slice(1));
      std::vector<float> out(image.size());
      DenoiseSlices(network, triplet, map, 1, 1, p.augmentations, device, out.data());
      if (blindSpot) CombineWithInput(triplet, 1, 1, out.data(), kCombineWindow, kNoiseMargin);
      return out;
    };
    const auto byBilateral = [&](const std::vector<float>& image) {
      return BilateralOfSlice(volume, image.data());
    };
    const uint64_t seed = p.seed + static_cast<uint64_t>(k);
    const BlendRiskEstimate e =
        MonteCarloSureOfBlend(byNetwork, byBilateral, noisy, counted, sigma, seed);
    if (e.pixels == 0) continue;
    varianceSum += sigma * sigma * static_cast<double>(e.pixels);
    pooled.Add(e);
  }
  if (pooled.pixels == 0) return;
  report.comparedWithBilateral = true;
  report.heldOutNetworkMeanSquare = pooled.At(1);
  report.heldOutBilateralMeanSquare = pooled.At(0);
  report.heldOutNetworkError = std::sqrt(std::max(0.0, report.heldOutNetworkMeanSquare));
  report.heldOutBilateralError = std::sqrt(std::max(0.0, report.heldOutBilateralMeanSquare));
  report.heldOutNoiseSigma = std::sqrt(varianceSum / static_cast<double>(pooled.pixels));
  report.networkWeight = pooled.BestWeight();
  report.heldOutBlendMeanSquare = pooled.At(report.networkWeight);
  if (report.networkWeight == 0) {
    report.applied = false;
    report.fallback =
        "on the held-out slices the bilateral filter's estimated error (Stein's unbiased risk "
        "estimate for white noise) was " +
        DescribeEstimatedError(report.heldOutBilateralMeanSquare) + " against " +
        DescribeEstimatedError(report.heldOutNetworkMeanSquare) + " for the network" +
        DescribeNoiseDeviation(report.heldOutNoiseSigma) +
        " and no blend of the two was lower, so the bilateral filter ran instead";
  }
}

}  // namespace

int NoiseCorrelationRadius(const Volume& volume, const std::vector<int64_t>& centres) {
  // Measured on the difference of slice k's two neighbours, whose noise is that of the
  // slices (independent between slices, with the same in-plane correlation, sqrt(2) times
  // stronger) while most of the anatomy cancels; the median over up to 8 centres. White
  // noise (reach 1) is hidden by the pixel alone; correlated noise (reach s >= 2) by a
  // square reaching s pixels around, a pixel past what the estimate sees, for the tails
  // of its kernel. Where the reach is unknown on most centres: -1.
  constexpr size_t kChecked = 8;
  constexpr int64_t kMaxRadius = 3;
  constexpr int kUnknown = -1;
  const size_t count = std::min(kChecked, centres.size());
  const int64_t pixels = volume.VoxelsPerSlice();
  std::vector<float> difference(static_cast<size_t>(pixels));
  std::vector<int64_t> reaches;
  for (size_t i = 0; i < count; ++i) {
    const int64_t k = centres[i * centres.size() / count];
    if (k < 1 || k + 1 >= volume.slices) continue;
    const float* before = volume.Slice(k - 1);
    const float* after = volume.Slice(k + 1);
    for (int64_t p = 0; p < pixels; ++p) {
      difference[static_cast<size_t>(p)] = (after[p] - before[p]) * 0.70710678f;
    }
    CorrelationReach reach =
        MeasureCorrelationReach(difference.data(), volume.rows, volume.columns);
    if (!reach.known) {
      const NoiseEstimate noise = EstimateNoise(volume.Slice(k), volume.rows, volume.columns);
      reach = {noise.spacing, noise.levelled};
    }
    if (reach.known) reaches.push_back(reach.spacing);
  }
  if (reaches.empty() || 2 * reaches.size() < count) return kUnknown;
  const auto middle = reaches.begin() + static_cast<long>(reaches.size() / 2);
  std::nth_element(reaches.begin(), middle, reaches.end());
  return static_cast<int>(std::clamp<int64_t>(*middle == 1 ? 0 : *middle, 0, kMaxRadius));
}

namespace {

// After training: whether the bilateral filter's result alone is taken instead of the
// network's (white noise, and no blend of the two with a lower estimated error on the
// held-out slices), and where the network's result is not taken, the fallback saying why.
bool TakeTheBilateralFilter(const SeriesNetwork& network, const Volume& volume,
                            const NormalisationMap& map, const NeighbourPairs& pairs,
                            const SelfSupervisedParameters& p, const c10::Device& device,
                            LearningReport& report) {
  const auto white = [&] {
    return report.method == kBlindSpot ? report.blindSpotSide == 1
                                       : NoiseCorrelationRadius(volume, pairs.training) == 0;
  };
  if (report.applied && p.compareWithBilateral && p.method == SelfSupervisedMethod::kAuto &&
      white()) {
    CompareWithBilateral(network, volume, map, pairs.heldOut, p, report.method == kBlindSpot,
                         device, report);
  }
  if (report.comparedWithBilateral && !report.applied) return true;
  if (!report.applied) {
    char text[256];
    std::snprintf(text, sizeof(text),
                  "the network did not lower the self-supervised loss on held-out slices "
                  "(%.3g against %.3g for %s), so the input is returned unchanged",
                  report.heldOutLoss, report.heldOutInputLoss, report.heldOutBaseline.c_str());
    report.fallback = text;
  }
  return false;
}

// The network's results of slices [begin, begin + count) of the input, blended with the
// bilateral filter's: w f + (1 - w) b.
void Blend(const Volume& input, int64_t begin, int64_t count, double w, float* results) {
  const auto weight = static_cast<float>(w);
  const int64_t pixels = input.VoxelsPerSlice();
  for (int64_t i = 0; i < count; ++i) {
    const std::vector<float> b = BilateralOfSlice(input, input.Slice(begin + i));
    float* f = results + i * pixels;
    for (int64_t q = 0; q < pixels; ++q) {
      f[q] = weight * f[q] + (1 - weight) * b[static_cast<size_t>(q)];
    }
  }
}

// Where the report says so, each value becomes the signal whose Rician mean it is.
void RemoveRicianBias(const LearningReport& report, float* values, size_t n) {
  if (!report.ricianBiasRemoved) return;
  for (size_t i = 0; i < n; ++i) {
    values[i] = UnbiasedRicianSignal(values[i], report.heldOutNoiseSigma);
  }
}

// The network's results (blended and unbiased as the report says) over the input, slice
// by slice, where it is applied; otherwise the input stays. Progress goes on from the
// end of training.
void WriteResults(const SeriesNetwork& network, Volume& volume, const NormalisationMap& map,
                  const LearningReport& report, const SelfSupervisedParameters& p,
                  const c10::Device& device, const RunContext& context) {
  // A slice is denoised from the input's slices k - 1, k and k + 1, and its result
  // overwrites the input: the last slice of each batch keeps its input until the next
  // batch, which reads it as a neighbour, has been denoised.
  const auto pixels = static_cast<size_t>(volume.VoxelsPerSlice());
  std::vector<float> out;
  std::vector<float> held(report.applied ? pixels : 0);
  int64_t ready = 0;  // slices [0, ready) hold their results
  const auto release = [&](int64_t end) {
    for (; ready < end; ++ready) {
      if (context.outputReady) context.outputReady(ready);
    }
  };
  for (int64_t begin = 0; begin < volume.slices; begin += p.slicesPerBatch) {
    context.ThrowIfCancelled();
    const int64_t count = std::min<int64_t>(p.slicesPerBatch, volume.slices - begin);
    if (report.applied) {
      out.resize(static_cast<size_t>(count) * pixels);
      DenoiseSlices(network, volume, map, begin, count, p.augmentations, device, out.data());
      if (report.method == kBlindSpot) {
        CombineWithInput(volume, begin, count, out.data(), kCombineWindow, kNoiseMargin);
      }
      if (report.networkWeight < 1) Blend(volume, begin, count, report.networkWeight, out.data());
      RemoveRicianBias(report, out.data(), out.size());
      if (begin > 0) std::copy(held.begin(), held.end(), volume.Slice(begin - 1));
      std::copy(out.begin(), out.end() - static_cast<long>(pixels), volume.Slice(begin));
      std::copy(out.end() - static_cast<long>(pixels), out.end(), held.begin());
      release(begin + count - 1);
    } else {
      release(begin + count);
    }
    context.Report(kTrainingShare + (1 - kTrainingShare) * static_cast<double>(begin + count) /
                                        static_cast<double>(volume.slices));
  }
  if (report.applied && volume.slices > 0) {
    std::copy(held.begin(), held.end(), volume.Slice(volume.slices - 1));
    release(volume.slices);
  }
}

}  // namespace

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
  // 1.4.0: for white noise, the blend of the network's and the bilateral filter's results
  // of the lowest estimated error, and the Rician bias of magnitude images removed.
  info_.version = "1.4.0";
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
  char automatic[512];
  std::snprintf(automatic, sizeof(automatic),
                "%s up to an anatomy change of %.3g of the noise power, %s up to %.3g, the "
                "bilateral filter beyond%s",
                kNoise2Noise, p.maxAnatomyToNoise, blindSpot.c_str(), p.blindSpotMaxAnatomyToNoise,
                p.compareWithBilateral
                    ? " and, for white noise, blended with it by their estimated errors (SURE), "
                      "the Rician bias removed where the background is pure noise"
                    : "");
  const std::string method = p.method == SelfSupervisedMethod::kNoise2Noise
                                 ? std::string(kNoise2Noise)
                             : p.method == SelfSupervisedMethod::kBlindSpot ? blindSpot
                                                                            : automatic;
  char text[768];
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
  const bool bilateral = TakeTheBilateralFilter(*network, volume, map, pairs, p, device, report);
  // Magnitude images keep the Rician bias through any denoiser of their mean; where the
  // series' background shows the noise to be Rician, of the deviation measured, it goes.
  report.ricianBiasRemoved = p.removeRicianBias && report.comparedWithBilateral &&
                             IsMagnitude(volume) &&
                             HasRicianBackground(volume, report.heldOutNoiseSigma);
  if (!report.applied) context.Warn(info_.name + ": " + report.fallback);
  if (context.learned) context.learned(report);
  if (bilateral) {
    RunContext rest = context;  // progress goes on from where training left it
    if (context.progress) {
      rest.progress = [&context](double f) {
        context.progress(kTrainingShare + (1 - kTrainingShare) * f);
      };
    }
    Volume result = BilateralDenoiser().Run(volume, rest);
    RemoveRicianBias(report, result.voxels.data(), result.voxels.size());
    return result;
  }
  WriteResults(*network, volume, map, report, p, device, context);
  return std::move(volume);
}

}  // namespace enhance
