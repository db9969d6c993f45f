// SPDX-License-Identifier: GPL-3.0-or-later
//
// A model turns an input volume into an output volume for one task. Classical
// operators and learned TorchScript networks implement the same interface.
//
// Thread-safety: Run() is const and may be called from several threads at once;
// implementations must not keep per-call state in members.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "enhance/base/Volume.h"
#include "enhance/inference/ModelSpec.h"

namespace enhance {

class DomainCheck;

// What a model is and how it is fed: its parsed manifest, or the equivalent for a
// built-in model. Model::Info() returns it.
using ModelInfo = ModelSpec;

// What a model that learns from the series it runs on (Model::LearnsFromSeries) learned
// there, for the derived series' DerivationDescription and the job's content.
struct LearningReport {
  std::string method;    // e.g. "neighbouring-slice Noise2Noise"
  std::string device;    // where it trained: "cpu", "cuda:0"
  int plannedSteps = 0;  // the model's step count
  int steps = 0;         // steps taken: fewer when the time budget ran out first
  bool stoppedByTimeBudget = false;
  double trainingSeconds = 0;
  double finalLoss = 0;  // mean training loss over the last stretch of the curve
  // How far the anatomy of a slice differs from the mean of its neighbours, beyond what
  // their noise explains, as a fraction of the noise power of one slice (measured before
  // training; 0 when not measured). Near 0: neighbours are views of the same anatomy.
  double anatomyToNoise = 0;
  // The blind spot's hidden square, pixels a side (1 for white noise, wider for noise
  // correlated over more pixels); 0 for another method.
  int blindSpotSide = 0;
  int heldOutSlices = 0;        // slices whose pairs were never trained on
  double heldOutLoss = 0;       // the self-supervised loss of the network on them
  double heldOutInputLoss = 0;  // the same loss of the baseline below, which it must beat
  // What the network must beat: "the input" itself (Noise2Noise), or "the mean of the
  // neighbouring slices" (the blind spot, whose target the input is).
  std::string heldOutBaseline = "the input";
  // Where the noise is white, the network and the bilateral filter on the held-out slices,
  // each by its estimated root-mean-square error (Stein's unbiased risk estimate, in the
  // series' units); their blend of the lowest estimate gives the result (below). Not
  // compared for correlated noise, a method forced by the configuration, or a series with
  // no held-out slices.
  bool comparedWithBilateral = false;
  double heldOutNetworkError = 0;
  double heldOutBilateralError = 0;
  // The noise's deviation the estimates assumed (series' units): the root of the mean, over
  // the pixels scored, of each held-out slice's measured variance.
  double heldOutNoiseSigma = 0;
  // The mean-square estimates behind them, signed: an estimate at or below 0 (too little
  // noise to score, or its deviation overestimated) shows as an error of 0 above.
  double heldOutNetworkMeanSquare = 0;
  double heldOutBilateralMeanSquare = 0;
  // The network's share of the result, w in w f + (1 - w) b, b the bilateral filter's
  // result on each slice: the weight of the lowest estimated error of such blends on the
  // held-out slices, whose estimate is heldOutBlendMeanSquare (1: the network alone, with
  // the estimate of the network; 0 where the bilateral filter alone ran instead).
  double networkWeight = 1;
  double heldOutBlendMeanSquare = 0;
  // Whether the result's Rician bias was removed (a compared magnitude series whose
  // background is pure noise of deviation heldOutNoiseSigma; RicianBias.h in core).
  bool ricianBiasRemoved = false;
  // Whether the network's output is the result. false: `fallback` says what is instead
  // (the input unchanged, or a classical filter) and why.
  bool applied = false;
  std::string fallback;
  struct Point {
    int step = 0;     // the last step of a stretch of steps
    double loss = 0;  // their mean training loss, in normalised units
  };
  std::vector<Point> curve;
};

// One line for a DerivationDescription: what was learned from the series, how long,
// with what loss, or what ran instead.
std::string DescribeLearning(const LearningReport& report);

// An estimated root-mean-square error from its signed mean-square estimate, for messages:
// "0.0123", or, at or below 0, "at or below 0 (too little noise to score)".
std::string DescribeEstimatedError(double meanSquare);

// The noise's deviation the estimates assumed, for the same messages: " (noise deviation
// 0.0588)".
std::string DescribeNoiseDeviation(double sigma);

// Passed to Run(): lets a long computation report progress and stop early.
struct RunContext {
  // Called with a fraction in [0, 1]. May be empty.
  std::function<void(double)> progress;
  // Polled between slices or batches; when it returns true, Run throws Error(kCancelled).
  std::function<bool()> cancelled;

  // Names the series for models that draw random numbers (diffusion sampling): their
  // noise is a function of this key, the model's seed and each slice's position, so the
  // same series gives the same pixels. The pipeline sets it from the SeriesInstanceUID.
  uint64_t randomKey = 0;

  // Where a model that can tell how uncertain each output voxel is (ProducesUncertainty)
  // puts that: the standard deviation across its samples, in output units, on the output
  // grid. Null: not wanted. Models that cannot leave it as it is.
  Volume* uncertainty = nullptr;

  // Called with a message the user should see (e.g. a fallback that was taken). May be empty.
  std::function<void(const std::string&)> warning;

  // Output slices already computed (e.g. while the series arrived): called once per
  // output slice before inference; returns that slice's values in output units
  // (rows x columns of the output) or an empty vector. Only consulted by models whose
  // TakesPrecomputedSlices() is true. May be empty.
  std::function<std::vector<float>(int64_t slice)> precomputed;
  // Called from the computing thread, by a model writing its output over its input
  // (Model::RunReusing), when output slice k is final: from then on slice k of the volume
  // holds output and is not written again, so another thread may read it. May be empty.
  std::function<void(int64_t slice)> outputReady;

  // Called once by a model that learns from the series it runs on (LearnsFromSeries),
  // when it has learned and before any output slice is final (outputReady), from the
  // computing thread. May be empty.
  std::function<void(const LearningReport&)> learned;

  void Warn(const std::string& message) const {
    if (warning) warning(message);
  }
  void Report(double fraction) const {
    if (progress) progress(fraction);
  }
  void ThrowIfCancelled() const;
};

// What a model's loader decided about lower precisions on the CPU (the manifest's
// "low_precision"; TorchModel).
struct LowPrecisionReport {
  std::string runs = "float";  // the precision the network runs in: "float", "bf16" or "int8"
  bool compared = false;       // bf16 was compared with float on the calibration input
  double meanDeviation = 0;    // mean |bf16 - float| there, in network output units
  double p999Deviation = 0;    // its 99.9th percentile
  double floatSeconds = 0;     // the fastest float and bf16 timing passes (0: not timed)
  double bf16Seconds = 0;
  // Why bf16 does not run when the manifest allows it (no instructions for it, too far from
  // float, slower, or forced by the options); empty otherwise.
  std::string note;
  // The same for int8, with how many of the network's wide convolutions run in int8 (fewer
  // than all when int8 everywhere was beyond the tolerance and the loader kept the most
  // costly ones in bf16 or float) of how many there are.
  struct Int8 {
    bool compared = false;
    double meanDeviation = 0, p999Deviation = 0;
    double seconds = 0;
    int layers = 0, wideLayers = 0;
    std::string note;
  } int8;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelInfo& Info() const = 0;
  // Human-readable key parameters for the DerivationDescription of the output.
  virtual std::string Parameters() const = 0;
  virtual Volume Run(const Volume& input, const RunContext& context) const = 0;
  // As Run, but the output may take the input's memory: a model whose output slice k
  // depends on input slice k alone, on the same grid, writes it over the input, so that
  // memory holds one volume instead of two. Afterwards `input` is unspecified (its voxels
  // may be gone). The default runs Run().
  virtual Volume RunReusing(Volume& input, const RunContext& context) const {
    return Run(input, context);
  }
  // Whether Run and RunReusing use the slices RunContext::precomputed gives instead of
  // computing them (and never read the input of such a slice). The default: no.
  virtual bool TakesPrecomputedSlices() const { return false; }
  // Whether Run() fills RunContext::uncertainty (a diffusion model drawing two or more
  // samples).
  virtual bool ProducesUncertainty() const { return false; }
  // Whether Run() first learns from the series it is given (a self-supervised denoiser):
  // it then reports what it learned through RunContext::learned before any output.
  virtual bool LearnsFromSeries() const { return false; }
  // The model's domain check (manifest "domain_check"), or null when it has none.
  virtual const DomainCheck* Domain() const { return nullptr; }
  // What runs in lower precision, for a model whose manifest allows it; null otherwise.
  virtual const LowPrecisionReport* LowPrecision() const { return nullptr; }
};

}  // namespace enhance
