// SPDX-License-Identifier: GPL-3.0-or-later
//
// A denoiser that needs no training data: it learns the noise of the series it is given
// and then removes it, inside that series' run (built-in model
// "self-supervised-denoise", task denoise, CT and MR).
//
// Two methods, both learning from neighbouring slices where slices do not overlap
// (spacing >= thickness): the noise of slice k is then independent of that of slices k - 1
// and k + 1, whether it is white (MR, Rician in magnitude images) or spatially correlated
// within the slice (CT's filtered back-projection).
// - Neighbouring-slice Noise2Noise (Lehtinen et al. 2018, with neighbouring slices as the
//   independent noisy views, as in Noise2Noise for CT by Hasan et al. and Wu et al.): a
//   small residual CNN maps slice k to the mean of its two neighbours. The target's
//   expectation is slice k's anatomy only up to the anatomy's change along the slice
//   normal, so this serves where the anatomy changes slowly from slice to slice.
// - Neighbouring-slice blind spot, where the anatomy changes faster (anatomyToNoise above
//   `maxAnatomyToNoise`): a CNN predicts slice k from slices k - 1 and k + 1 and from slice
//   k outside a square of `blindSpotRadius` pixels around each output pixel (a blind spot
//   wide enough for correlated noise, as in Noise2Self, Batson and Royer 2019, and the
//   blind-spot networks of Laine et al. 2019 and Lee et al. 2022). Its target is slice k
//   itself, unbiased by any change of anatomy; since the network never sees the noise it
//   predicts, it cannot learn to reproduce it. Its estimate is then combined with the
//   input pixel by pixel by the noise's local variance (CombineWithInput in
//   SliceDenoiserNetwork.h): where it departs from the input by more than the noise (an
//   edge the blind spot could not place), the input is kept.
// Slices are then denoised one by one, averaged over flips and transposes.
//
// Safeguards: slices that overlap or whose thickness is unknown, and series of fewer
// than three slices, are not learned from (their neighbours share noise): the bilateral
// filter runs instead and the derived series says so. Pairs around every 16th slice are
// held out of training; when the network does not lower the self-supervised loss on them
// below that of its baseline (the input for Noise2Noise; the mean of the neighbouring
// slices, the untrained network, for the blind spot), the input is returned unchanged.
//
// Training is deterministic for a seed, a series (RunContext::randomKey) and a thread
// count: patch positions come from the seed and the series, the weights start from the
// seed, and `steps` is fixed; `timeBudgetSeconds` stops it sooner when reached (then
// reported). Memory: the input volume, one batch of patches and the network; the output
// is written over the input slice by slice (RunReusing).
//
// Thread-safe: Run() is const; every run builds and trains its own network.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "enhance/base/Geometry.h"
#include "enhance/inference/Model.h"

namespace enhance {

// Which network learns from the series: kAuto takes Noise2Noise where the anatomy changes
// slowly from slice to slice (anatomyToNoise <= maxAnatomyToNoise), the blind spot where
// it changes faster (up to blindSpotMaxAnatomyToNoise) and the bilateral filter beyond;
// kNoise2Noise runs the bilateral filter where it would not learn; kBlindSpot always
// learns.
enum class SelfSupervisedMethod { kAuto, kNoise2Noise, kBlindSpot };

// The method of a configuration's name ("auto", "noise2noise", "blind-spot", as in
// Enhance.SelfSupervised.Method); nullopt for any other. Inline: the configuration's
// parser needs it without LibTorch.
inline std::optional<SelfSupervisedMethod> SelfSupervisedMethodNamed(const std::string& name) {
  if (name == "auto") return SelfSupervisedMethod::kAuto;
  if (name == "noise2noise") return SelfSupervisedMethod::kNoise2Noise;
  if (name == "blind-spot") return SelfSupervisedMethod::kBlindSpot;
  return std::nullopt;
}

struct SelfSupervisedParameters {
  SelfSupervisedMethod method = SelfSupervisedMethod::kAuto;
  int steps = 3000;               // Adam steps; the result depends on these
  double timeBudgetSeconds = 60;  // training stops when it has taken this long
  int batch = 8;                  // patches per step
  int patch = 48;                 // patch side, pixels
  int features = 32;              // channels of the hidden layers
  int layers = 5;                 // 3x3 convolutions
  double learningRate = 1e-3;     // Adam; the last third of the steps decays it to 10%
  uint64_t seed = 1;
  int heldOutEvery = 16;  // the pairs around every 16th slice are held out
  // Beyond this ratio of the anatomy's slice-to-slice change to the noise power
  // (LearningReport::anatomyToNoise), the bilateral filter runs instead.
  double maxAnatomyToNoise = 0.5;
  // kAuto: beyond this ratio the bilateral filter runs instead of the blind spot (where the
  // anatomy changes that much between slices, the neighbours tell the network little the
  // slice's own pixels do not). On the tuning head (enhance-evaluate
  // self-supervised-denoise --data tune) the blind spot beat the bilateral filter up to
  // 7.5 and lost from 25.7: their geometric mean.
  double blindSpotMaxAnatomyToNoise = 14.0;
  // The blind-spot network: pixels of slice k hidden around each output pixel, and its
  // dilated layers. -1: the reach of the noise's correlation, measured on the series
  // (NoiseCorrelationRadius: 0 for white noise, at most 3).
  int blindSpotRadius = -1;
  int blindSpotDilatedLayers = 2;
  // kAuto, white noise: the trained network's result f and the bilateral filter's b (each
  // slice alone), and every blend w f + (1 - w) b, are scored on the held-out slices by
  // Stein's unbiased risk estimate; the blend of the lowest estimated error gives the
  // result (LearningReport::comparedWithBilateral, networkWeight; w = 0: the bilateral
  // filter alone). false: the network's result stands whenever it beats its held-out
  // baseline.
  bool compareWithBilateral = true;
  // Compared magnitude images (MR) whose background is pure noise: the result's Rician
  // bias is removed with the noise's deviation measured for the comparison
  // (LearningReport::ricianBiasRemoved).
  bool removeRicianBias = true;
  int augmentations = 8;        // output averaged over 1, 2, 4 or 8 flips/transposes
  int slicesPerBatch = 2;       // slices denoised at once
  std::string device = "auto";  // "auto" (CUDA when present), "cpu", "cuda", "cuda:N"
};

// Why neighbouring slices of this geometry cannot serve as independent noisy views of
// each other, or "" when they can: at least three slices, a known thickness, and slice
// centres at least one thickness apart (a 1% tolerance for rounded values).
std::string WhyNeighboursShareNoise(const Geometry& geometry, int64_t slices);

// Which slices are the centres of training pairs (input slice k, target the mean of
// slices k - 1 and k + 1) and which are held out to check the network: every
// `heldOutEvery`-th slice from heldOutEvery / 2 on, provided that leaves a training
// centre; no training pair reads a slice of a held-out pair.
struct NeighbourPairs {
  std::vector<int64_t> training;
  std::vector<int64_t> heldOut;
};
NeighbourPairs PlanNeighbourPairs(int64_t slices, int heldOutEvery);

// The anatomy's change from slice to slice against the noise (LearningReport::
// anatomyToNoise): for up to 8 pair centres spread over the series, from d = slice k - the
// mean of slices k - 1 and k + 1, the noise's deviation from the median of |d| (most
// pixels show no change of anatomy; valid for white and correlated noise alike) and the
// anatomy's change from the mean of d^2 beyond what that noise explains, over the noise
// power of one slice; the median over those slices. 0 for a constant volume.
double AnatomyToNoise(const Volume& volume, const std::vector<int64_t>& centres);

// The blind spot's radius for this series' noise, measured on the difference of the
// neighbours of up to 8 of the centres (their noise is the slices' noise, most of the
// anatomy cancels): the reach s of the noise's correlation is the tap spacing of the
// Laplacian-difference noise estimate (EstimateNoiseSigmaAtSpacing) past which it stops
// jumping, and the median over the centres is taken. White noise (s = 1) hides the pixel
// alone (radius 0). Correlated noise hides a square reaching s pixels around, one pixel
// past the correlation the estimate sees: the tails of a reconstruction kernel (the ramp
// filter's negative side lobes in CT) reach further, and the network would learn them (on
// the CT tuning phantom, s = 2: 5x5 beat 3x3). At most 3 (7x7). -1 where the reach is
// unknown on at least half of them (the structure, not the noise, grows the estimate
// there): kAuto then runs the bilateral filter; the blind spot, forced, hides a 5x5 square.
int NoiseCorrelationRadius(const Volume& volume, const std::vector<int64_t>& centres);

class SelfSupervisedDenoiser final : public Model {
 public:
  explicit SelfSupervisedDenoiser(SelfSupervisedParameters parameters = {});
  const ModelInfo& Info() const override { return info_; }
  std::string Parameters() const override;
  Volume Run(const Volume& input, const RunContext& context) const override;
  Volume RunReusing(Volume& input, const RunContext& context) const override;
  bool LearnsFromSeries() const override { return true; }

  const SelfSupervisedParameters& parameters() const { return parameters_; }

 private:
  SelfSupervisedParameters parameters_;
  ModelInfo info_;
};

}  // namespace enhance
