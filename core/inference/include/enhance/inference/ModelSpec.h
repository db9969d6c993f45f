// SPDX-License-Identifier: GPL-3.0-or-later
//
// What a model is and how to feed it, as declared by its manifest.json (see
// docs/models.md). Parsing validates every field and names the file and key of any
// problem. A value type: copy freely; not synchronised.
#pragma once

#include <json/value.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "enhance/base/CodedConcept.h"

namespace enhance {

// How physical values map to the numbers a network sees (and back).
struct Normalization {
  enum class Method {
    kNone,        // values pass unchanged
    kWindow,      // [low, high] in physical units -> [0, 1]
    kPercentile,  // [low, high] percentiles of the series (inside the body) -> [0, 1]
    kZScore,      // (value - mean) / standard deviation of the series (inside the body)
  };
  Method method = Method::kNone;
  double low = 0.0;
  double high = 1.0;
};

// How a conditional diffusion model is sampled (the manifest's "diffusion" section; see
// docs/models.md). The archive is the denoising network alone; the node runs the loop.
struct SamplerSpec {
  enum class Schedule { kLinear, kScaledLinear, kCosine, kTable };
  enum class Prediction { kEpsilon, kV, kSample };
  enum class TimeInput { kIndex, kFraction };  // t given as the index, or as index / T

  int trainingTimesteps = 1000;
  Schedule schedule = Schedule::kLinear;
  double betaStart = 1e-4;
  double betaEnd = 0.02;
  std::vector<double> alphasCumprod;  // kTable: one value per training timestep
  Prediction prediction = Prediction::kEpsilon;
  // The inference timesteps: this list (descending) when not empty, else `stepCount`
  // steps with `spacing` ("linspace", "leading" or "trailing").
  std::vector<int> timesteps;
  int stepCount = 4;
  std::string spacing = "trailing";
  double eta = 0.0;
  bool clip = true;  // clamp the predicted x_0 to [clipMin, clipMax] (normalised units)
  double clipMin = -1.0;
  double clipMax = 1.0;
  int samples = 4;  // samples per slice; with two or more, their SD is the uncertainty
  uint64_t seed = 0;
  TimeInput timeInput = TimeInput::kIndex;
};

// A model's domain check (the manifest's "domain_check" section; DomainCheck.h): a
// variational autoencoder trained on the model's training distribution, the statistics of
// the training series' features and the threshold of the score.
struct DomainCheckSpec {
  std::filesystem::path archive;  // absolute path, inside the model's folder
  // Applied to each slice on its own: a window as is; percentiles and z-scores from the
  // slice's own body voxels.
  Normalization input;
  // What a slice's body is, for percentile and z-score normalisation: as for this unit
  // ("HU" for a CT model, "" otherwise), whatever the series turns out to be.
  std::string units;
  int sizeMultiple = 8;  // slices are padded with 0 to a multiple of this
  // Which slices are scored (DomainSlicesScored): one in sliceStep, evenly spaced, at least
  // minSlices (8 by default, or maxSlices if lower; all of a shorter series) and at most
  // maxSlices.
  int sliceStep = 1;
  int minSlices = 8;
  int maxSlices = 32;
  // Each slice is scored on the means of its downsample x downsample blocks (pixels this
  // many times as large; 1: as it is), before it is normalised and cropped: an autoencoder
  // trained at a coarser resolution, at a fraction of the cost. A slice narrower than a
  // block is scored as it is.
  int downsample = 1;
  // A slice taller or wider than this (after the block means) is scored on its central crop
  // of at most crop x crop pixels, normalised as the whole slice is (0: the whole slice).
  int crop = 0;
  double reconstructionMean = 0;  // of the training series' median log r ...
  double reconstructionSd = 1;    // ... and its standard deviation
  double klMean = 0;              // the same for the median log k
  double klSd = 1;
  // The same for the median log m (optional: a check calibrated without it scores with r
  // and k alone).
  bool hasResidualReference = false;
  double residualMean = 0;
  double residualSd = 1;
  // The same for the median mean intensity i (optional, and only with the residual
  // reference).
  bool hasIntensityReference = false;
  double intensityMean = 0;
  double intensitySd = 1;
  // The same for the median residual correlation c (optional, and only with the residual
  // reference).
  bool hasCorrelationReference = false;
  double correlationMean = 0;
  double correlationSd = 1;
  // The features (log r, log k and, with the residual reference, log m, with the intensity
  // reference, i, with the correlation reference, c, in this order) of each reference series
  // (optional): with them the score is the distance to the nearest of them rather than to
  // their mean (DomainCheck.h).
  std::vector<std::vector<double>> referenceSeries;
  double threshold = 0;  // a series scoring above it is outside the domain
  // How a series scored on fewer than minSlices slices is judged (a series that short is
  // scored on all of its slices, and a few slices of one body region do not look like the
  // median of a longer series): each of its slices by its distance to the nearest single
  // slice of the reference series (the features of each, as referenceSeries), the series by
  // the median of those distances, against shortSeriesThresholds[k - 1] for k slices (each
  // at least `threshold`). A series scored on more slices than the list covers, or a check
  // without them, is judged as above.
  std::vector<std::vector<double>> shortSeriesSlices;
  std::vector<double> shortSeriesThresholds;
  std::string trainedOn;
};

// Lower precisions the network may run in on a CPU with the instructions for them (the
// manifest's "low_precision" section; TorchModel tries them at load). Absent: float only.
struct LowPrecisionSpec {
  bool bf16 = false;  // "allow": ["bf16", "int8"]
  bool int8 = false;
  // A tensor file (torch.save) of network inputs [N, C, H, W] in normalised units, on
  // which a lower precision's output is compared with float's.
  std::filesystem::path calibration;
  // The largest deviation accepted, in the network's output units (normalised): the mean
  // of |low - float| over the calibration outputs, and its 99.9th percentile.
  double meanTolerance = 0;
  double p999Tolerance = 0;
  // The same for int8 ("int8_tolerance"; required when int8 is allowed).
  double int8MeanTolerance = 0;
  double int8P999Tolerance = 0;
};

struct ModelSpec {
  std::string name;
  std::string version;
  std::string task;  // "denoise" | "superres" | "mr2ct"
  std::vector<std::string> modalities;
  std::string intendedUse;
  std::string uid;                // DeviceUID of the output; changes with the weights
  std::filesystem::path archive;  // absolute path of the TorchScript archive

  Normalization input;
  // How the network's output maps back to physical units. kNone means "the inverse of
  // the input normalisation" (denoise, superres); mr2ct maps [0, 1] to a HU window.
  Normalization output;
  bool hasOutputRange = false;  // clamp the output to [outputMin, outputMax]
  double outputMin = 0.0;
  double outputMax = 0.0;
  std::string outputUnits;  // "HU", or "" for the input's units

  int inPlaneScale = 1;       // 1, 2 or 4
  int throughPlaneScale = 1;  // 1 or 2
  int sliceContext = 0;       // neighbours on each side given as channels
  int tileSize = 256;         // square tiles of the input; 0 = whole slices
  int tileOverlap = 32;
  // Rows and columns the network accepts are multiples of this (e.g. 2 for a network
  // that starts with a pixel unshuffle); the engine pads each tile at the bottom and
  // right with 0 in normalised units (as the network's own zero padding) and crops.
  int sizeMultiple = 1;
  bool allowFp16 = false;
  int maxBatch = 8;

  CodedConcept derivationCode;

  bool isDiffusion = false;  // a conditional diffusion model, sampled as `sampler` says
  SamplerSpec sampler;
  // A deterministic model that gives an uncertainty map by test-time augmentation: its
  // output and the spread over the eight flips and 90-degree rotations of each tile
  // (manifest: "uncertainty": {"method": "augmentation"}).
  bool augmentationUncertainty = false;

  bool hasDomainCheck = false;
  DomainCheckSpec domainCheck;

  LowPrecisionSpec lowPrecision;

  // Input channels the network expects: 2 * sliceContext + 1, or 2 * max(1, sliceContext)
  // for through-plane models, which see the slices on both sides of a gap.
  int InputChannels() const;
};

// Whether each output slice depends on its own input slice alone (no slice context, no
// through-plane resampling, a normalisation that does not look at the whole volume), so
// that slices can be computed one by one as they arrive.
bool SlicesAreIndependent(const ModelSpec& spec);

// Parses a manifest. `folder` is the model's folder: the archive must lie inside it.
// Throws Error(kBadInput) naming `folder/manifest.json` and the key.
ModelSpec ParseManifest(const Json::Value& manifest, const std::filesystem::path& folder);

// Parses the text of folder/manifest.json; invalid JSON is Error(kBadInput) too.
ModelSpec ParseManifestText(const std::string& text, const std::filesystem::path& folder);

// Reads and parses folder/manifest.json.
ModelSpec LoadManifest(const std::filesystem::path& folder);

// The default derivation code of a task: (113085, DCM, "Spatial resampling") for
// superres, and codes of the local scheme "99ENHANCE" otherwise (docs/dicom.md).
CodedConcept DefaultDerivationCode(const std::string& task);

}  // namespace enhance
