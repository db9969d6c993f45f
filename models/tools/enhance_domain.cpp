// SPDX-License-Identifier: GPL-3.0-or-later
//
// enhance-domain: calibrates and evaluates the domain checks of the shipped models
// (docs/models.md, "Domain checks").
//
//   enhance-domain calibrate ct|ct-x2|mr|mr-x2 --vae FILE --models DIR
//           [--score mean|nearest] [--downsample N] [--crop N] [--slice-step N]
//           [--min-slices N] [--intensity on|off] [--correlation on|off]
//       copies the autoencoder FILE into each model folder of that training distribution
//       as domain.pt and writes its manifest's "domain_check": the reference statistics
//       of the reference series (with --score nearest, each series' features too), the
//       scoring options and the threshold, the 99th percentile of the calibration series'
//       scores (DomainSets.h); then evaluates it as below.
//   enhance-domain evaluate ct|ct-x2|mr|mr-x2 --models DIR
//       the AUROC of the score for every out-of-distribution set against the held-out
//       in-distribution series, the false warnings, and the check's cost beside each model's.
#include <json/reader.h>
#include <json/writer.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <vector>

#include "DomainSets.h"
#include "Mr2CtData.h"
#include "MrDenoiseData.h"
#include "enhance/inference/DomainCheck.h"
#include "enhance/inference/Runtime.h"
#include "enhance/inference/TorchModel.h"
#include "enhance/quality/Metrics.h"

namespace enhance::models {
namespace {

const char* const kPydicomTestFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files";

struct Distribution {
  std::vector<std::string> models;  // the shipped models trained on it
  Normalization input;              // the autoencoder's, applied to each slice
  std::string units;
};

// ct, mr: the inputs of the models on the acquisition's grid; ct-x2, mr-x2: those of the
// in-plane super-resolution models, acquisitions with pixels twice as large.
Distribution For(const std::string& name) {
  Distribution d;
  if (name == "ct") {
    d.models = {"ct-denoise", "ct-denoise-gan", "ct-superres-z2"};
  } else if (name == "ct-x2") {
    d.models = {"ct-superres-x2"};
  } else if (name == "mr") {
    d.models = {"mr-denoise", "mr2ct", "mr2ct-diffusion"};
  } else if (name == "mr-x2") {
    d.models = {"mr-superres-x2"};
  } else {
    throw std::invalid_argument("the distribution must be ct, ct-x2, mr or mr-x2, not '" + name +
                                "'");
  }
  if (name.rfind("ct", 0) == 0) {
    d.input = {Normalization::Method::kWindow, -1024.0, 3071.0};
    d.units = "HU";
  } else {
    d.input = {Normalization::Method::kPercentile, 0.0, 99.5};
  }
  return d;
}

void HalveResolution(DomainSet& set) {
  for (Volume& v : set.series) v = Downsample2(v);
}

// With a cache folder, the acquisitions of "ct" and "mr" are simulated once and read back.
DomainSets Sets(const std::string& name, const std::string& cache) {
  const bool ct = name.rfind("ct", 0) == 0;
  const std::filesystem::path file =
      cache.empty() ? std::filesystem::path()
                    : std::filesystem::path(cache) / (ct ? "ct.sets" : "mr.sets");
  DomainSets sets;
  if (!file.empty() && std::filesystem::exists(file)) {
    sets = ReadSets(file);
    std::cerr << "read the " << (ct ? "CT" : "MR") << " sets from " << file.string() << "\n";
  } else {
    sets = ct ? CtDomainSets(kMricronTemplates, kPydicomTestFiles, std::cerr)
              : MrDomainSets(kMricronTemplates, kPydicomTestFiles, std::cerr);
    if (!file.empty()) {
      std::filesystem::create_directories(file.parent_path());
      WriteSets(file, sets);
    }
  }
  if (!ct) sets.tuning = MrTuningSets(sets.calibration);
  if (name.size() > 3 && name.substr(name.size() - 3) == "-x2") {
    // The same acquisitions with pixels twice as large (2x2 means), as the super-resolution
    // models are trained on.
    sets.trainedOn +=
        ", at half the resolution (2x2 means), as the in-plane super-resolution "
        "model sees them";
    if (!ct) {
      AddMrSuperResInputs(sets, kMricronTemplates);
      sets.trainedOn +=
          "; its reference also holds that model's own training inputs, noise-free slabs with "
          "random contrast (gamma 0.71-1.4) and blur (up to 1.2 px)";
    }
    for (DomainSet* set : {&sets.reference, &sets.calibration, &sets.test}) HalveResolution(*set);
    for (auto* list : {&sets.far, &sets.near, &sets.extra, &sets.tuning}) {
      for (DomainSet& set : *list) HalveResolution(set);
    }
    // The kernel changes again, made at the resolution the model sees: after the 2x2 mean,
    // which averages much of a 1 px change made before it away.
    DomainSet smoother{"smoother at the model's resolution (Gaussian 1 px after the 2x2 mean)", {}};
    DomainSet sharper{
        "sharper at the model's resolution (unsharp mask 1.0, 1 px, after the 2x2 mean)", {}};
    for (size_t i : KernelChangeBase(ct)) {
      smoother.series.push_back(Blurred(sets.test.series.at(i), 1.0));
      sharper.series.push_back(Sharpened(sets.test.series.at(i), 1.0, 1.0));
    }
    sets.near.push_back(std::move(smoother));
    sets.near.push_back(std::move(sharper));
    if (!ct) sets.extra.push_back(MrDemoTemplate(kMricronTemplates));
  }
  return sets;
}

std::vector<DomainScore> ScoreAll(const DomainCheck& check, const DomainSet& set) {
  std::vector<DomainScore> scores;
  for (const Volume& v : set.series) scores.push_back(check.Score(v));
  return scores;
}

// The scores of a set's series, and how many are outside the domain.
struct SetScores {
  std::vector<double> scores;
  size_t outside = 0;
};

SetScores ScoresOf(const DomainCheck& check, const DomainSet& set) {
  SetScores out;
  for (const DomainScore& s : ScoreAll(check, set)) {
    out.scores.push_back(s.score);
    out.outside += s.outside ? 1 : 0;
  }
  return out;
}

double Percentile(std::vector<double> values, double percent) {
  std::sort(values.begin(), values.end());
  const double position = percent / 100.0 * static_cast<double>(values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (values[above] - values[below]) * (position - static_cast<double>(below));
}

std::pair<double, double> MeanSd(const std::vector<double>& values) {
  double mean = 0;
  for (double v : values) mean += v / static_cast<double>(values.size());
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(squares / static_cast<double>(std::max<size_t>(1, values.size() - 1)))};
}

Json::Value Pair(double a, double b) {
  Json::Value pair(Json::arrayValue);
  pair.append(a);
  pair.append(b);
  return pair;
}

Json::Value ReadJson(const std::filesystem::path& file) {
  std::ifstream in(file);
  Json::Value value;
  Json::CharReaderBuilder builder;
  std::string errors;
  if (!Json::parseFromStream(builder, in, &value, &errors)) {
    throw std::runtime_error(file.string() + ": " + errors);
  }
  return value;
}

int Evaluate(const std::string& name, const std::filesystem::path& models, const DomainSets& sets);

// How a check scores, as the calibration writes it into the manifest.
struct Scoring {
  bool nearest = false;  // the distance to the nearest reference series, not to their mean
  int downsample = 1;    // slices scored on the means of N x N blocks
  int crop = 0;          // the central crop of larger slices (0: whole slices)
  int sliceStep = 1;     // one slice in this many, at least minSlices and at most 32
  int minSlices = 8;
  bool intensity = false;    // the mean intensity is a feature of the score too
  bool correlation = false;  // and the residual correlation
};

int Calibrate(const std::string& name, const std::filesystem::path& vae,
              const std::filesystem::path& models, const std::string& cache,
              const Scoring& scoring) {
  const Distribution d = For(name);
  DomainCheckSpec spec;
  spec.archive = std::filesystem::absolute(vae);
  spec.input = d.input;
  spec.units = d.units;
  spec.downsample = scoring.downsample;
  spec.crop = scoring.crop;
  spec.sliceStep = scoring.sliceStep;
  spec.minSlices = scoring.minSlices;
  spec.threshold = 1;  // replaced below
  const auto check = DomainCheck::Load(spec, "cpu", vae.string());
  const DomainSets sets = Sets(name, cache);
  spec.hasResidualReference = true;
  spec.hasIntensityReference = scoring.intensity;
  spec.hasCorrelationReference = scoring.correlation;
  std::vector<double> reconstruction, kl, residual, intensity, correlation;
  for (const DomainScore& s : ScoreAll(*check, sets.reference)) {
    reconstruction.push_back(s.logReconstruction);
    kl.push_back(s.logKl);
    residual.push_back(s.logResidual);
    intensity.push_back(s.meanIntensity);
    correlation.push_back(s.residualCorrelation);
    if (scoring.nearest) {
      // Rounded as the manifest keeps them, before the threshold is set from them.
      std::vector<double> point;
      for (const ScoredFeature& f : ScoredFeatures(spec)) {
        point.push_back(std::round(s.*f.median * 1e4) / 1e4);
      }
      spec.referenceSeries.push_back(std::move(point));
    }
  }
  std::tie(spec.reconstructionMean, spec.reconstructionSd) = MeanSd(reconstruction);
  std::tie(spec.klMean, spec.klSd) = MeanSd(kl);
  std::tie(spec.residualMean, spec.residualSd) = MeanSd(residual);
  std::tie(spec.intensityMean, spec.intensitySd) = MeanSd(intensity);
  std::tie(spec.correlationMean, spec.correlationSd) = MeanSd(correlation);
  // The calibration series scored as the node scores a series: the same slices.
  std::vector<std::vector<SliceDomainFeatures>> features;  // of every slice of each series
  std::vector<double> scores;
  for (const Volume& v : sets.calibration.series) {
    features.emplace_back();
    for (int64_t k = 0; k < v.slices; ++k) {
      features.back().push_back(check->SliceFeatures(v.Slice(k), v.rows, v.columns));
    }
    std::vector<SliceDomainFeatures> slices;
    const std::vector<bool> scored = DomainSlicesScored(v.slices, spec);
    for (int64_t k = 0; k < v.slices; ++k) {
      if (scored[static_cast<size_t>(k)]) slices.push_back(features.back()[static_cast<size_t>(k)]);
    }
    scores.push_back(AggregateDomainScore(spec, slices).score);
  }
  spec.threshold = Percentile(scores, 99.0);
  // A series of fewer slices than the minimum is scored on all of them, and a few slices of
  // one body region are not like the median of a longer series: each slice of such a series
  // is compared with every single slice of the reference series, the nearest first, and the
  // series' threshold, for each length, is set the same way on every run of that many
  // adjacent slices of the calibration series, never below the threshold.
  for (const Volume& v : sets.reference.series) {
    for (int64_t k = 0; k < v.slices; ++k) {
      const SliceDomainFeatures slice = check->SliceFeatures(v.Slice(k), v.rows, v.columns);
      std::vector<double> point;  // rounded as the manifest keeps them
      for (const ScoredFeature& f : ScoredFeatures(spec)) {
        point.push_back(std::round(slice.*f.slice * 1e4) / 1e4);
      }
      spec.shortSeriesSlices.push_back(std::move(point));
    }
  }
  spec.shortSeriesThresholds.assign(static_cast<size_t>(spec.minSlices - 1), spec.threshold);
  for (size_t length = 1; length < static_cast<size_t>(spec.minSlices); ++length) {
    std::vector<double> runScores;
    for (const std::vector<SliceDomainFeatures>& series : features) {
      for (size_t first = 0; first + length <= series.size(); ++first) {
        const std::vector<SliceDomainFeatures> run(
            series.begin() + static_cast<std::ptrdiff_t>(first),
            series.begin() + static_cast<std::ptrdiff_t>(first + length));
        runScores.push_back(AggregateDomainScore(spec, run).score);
      }
    }
    // Rounded up as the manifest keeps it, so that it stays at least the threshold.
    if (!runScores.empty()) {
      spec.shortSeriesThresholds[length - 1] =
          std::ceil(std::max(spec.threshold, Percentile(runScores, 99.0)) * 1e4) / 1e4;
    }
  }
  std::cout << "reference (" << sets.reference.series.size() << " series)";
  const char* separator = ": ";
  for (const ScoredFeature& f : ScoredFeatures(spec)) {
    std::cout << separator << f.symbol << " " << f.mean << " +- " << f.sd;
    separator = ", ";
  }
  std::cout << "\nthreshold: 99th percentile of " << scores.size()
            << " calibration series' scores = " << spec.threshold << "\n";
  for (size_t i = 0; i < spec.shortSeriesThresholds.size(); ++i) {
    std::cout << "threshold of a series of " << i + 1 << (i == 0 ? " slice" : " slices")
              << " (each slice against the nearest of " << spec.shortSeriesSlices.size()
              << " reference slices): 99th percentile of the calibration series' runs = "
              << spec.shortSeriesThresholds[i] << "\n";
  }

  Json::Value section;
  section["archive"] = "domain.pt";
  section["input_normalization"]["method"] =
      d.input.method == Normalization::Method::kWindow ? "window" : "percentile";
  section["input_normalization"]["low"] = d.input.low;
  section["input_normalization"]["high"] = d.input.high;
  section["size_multiple"] = 8;
  if (spec.sliceStep != 1) section["slice_step"] = spec.sliceStep;
  if (spec.minSlices != 8) section["min_slices"] = spec.minSlices;
  if (spec.downsample != 1) section["downsample"] = spec.downsample;
  if (spec.crop != 0) section["crop"] = spec.crop;
  for (const ScoredFeature& f : ScoredFeatures(spec)) {
    section["reference"][f.key] = Pair(f.mean, f.sd);
  }
  for (const std::vector<double>& p : spec.referenceSeries) {
    Json::Value point(Json::arrayValue);
    for (double v : p) point.append(v);
    section["reference"]["series"].append(point);
  }
  section["threshold"] = spec.threshold;
  if (!spec.shortSeriesThresholds.empty()) {
    for (const std::vector<double>& p : spec.shortSeriesSlices) {
      Json::Value point(Json::arrayValue);
      for (double v : p) point.append(v);
      section["short_series"]["series"].append(point);
    }
    for (double t : spec.shortSeriesThresholds) section["short_series"]["thresholds"].append(t);
  }
  section["trained_on"] = sets.trainedOn;
  // Every model's manifest with the new section is checked before any file is written, so
  // that an option the manifest refuses (a crop or block size out of range) leaves every
  // model folder as it was.
  std::vector<Json::Value> manifests;
  for (const std::string& model : d.models) {
    Json::Value manifest = ReadJson(models / model / "manifest.json");
    manifest["domain_check"] = section;
    ParseManifest(manifest, models / model);
    manifests.push_back(std::move(manifest));
  }
  for (size_t i = 0; i < d.models.size(); ++i) {
    const auto folder = models / d.models[i];
    const auto archive = folder / "domain.pt";
    // Recalibrating a shipped check names that model's own archive as --vae.
    if (!std::filesystem::exists(archive) || !std::filesystem::equivalent(vae, archive)) {
      std::filesystem::copy_file(vae, archive, std::filesystem::copy_options::overwrite_existing);
    }
    Json::StreamWriterBuilder builder;
    builder["indentation"] = "  ";
    builder["precision"] = 12;         // 0.0003, not 0.00029999999999999997
    builder["commentStyle"] = "None";  // short arrays (a reference point) on one line
    std::ofstream(folder / "manifest.json") << Json::writeString(builder, manifests[i]) << "\n";
    std::cout << "wrote " << (folder / "domain.pt").string() << " and its manifest section\n";
  }
  std::cout << "\n";
  return Evaluate(name, models, sets);
}

std::string Fixed(double value, int digits) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(digits) << value;
  return text.str();
}

double Seconds(const std::function<void()>& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// How many slices of a series of `slices` the check scores.
double ScoredCount(int64_t slices, const DomainCheckSpec& spec) {
  const std::vector<bool> scored = DomainSlicesScored(slices, spec);
  return static_cast<double>(std::count(scored.begin(), scored.end(), true));
}

// Where the check's time per scored slice of `series` goes (DomainCheckTimes): 7 rounds after
// a warm-up, medians of each part.
void PrintCheckParts(const DomainCheck& check, const Volume& series) {
  const double count = ScoredCount(series.slices, check.Spec());
  std::vector<double> prepare, network, figures, whole;
  for (int round = 0; round < 8; ++round) {
    DomainCheckTimes times;
    const double s = Seconds([&] { check.Score(series, &times); });
    if (round == 0) continue;  // warms up
    prepare.push_back(times.prepare / count);
    network.push_back(times.network / count);
    figures.push_back(times.figures / count);
    whole.push_back(s / count);
  }
  std::cout << "Where a scored slice's time goes (" << check.Describe()
            << ", medians of 7 rounds, seconds): normalisation "
            << Fixed(Percentile(prepare, 50.0), 5) << ", network "
            << Fixed(Percentile(network, 50.0), 5) << ", residual figures "
            << Fixed(Percentile(figures, 50.0), 5) << ", the whole slice "
            << Fixed(Percentile(whole, 50.0), 5) << "\n";
}

// The check's seconds per scored slice of `series`, run with fused convolutions, as optimised
// by LibTorch and as saved: 5 rounds of the three in turns, medians.
void PrintCheckVersions(const DomainCheck& check, const Volume& series) {
  std::vector<std::unique_ptr<const DomainCheck>> versions;
  std::vector<std::vector<double>> seconds(3);
  for (DomainCheckCpu cpu :
       {DomainCheckCpu::kFastest, DomainCheckCpu::kLibTorch, DomainCheckCpu::kAsSaved}) {
    versions.push_back(DomainCheck::Load(check.Spec(), "cpu", check.Spec().archive.string(), cpu));
  }
  const double scored = ScoredCount(series.slices, check.Spec());
  for (int round = 0; round < 6; ++round) {
    for (size_t v = 0; v < versions.size(); ++v) {
      const double s = Seconds([&] { versions[v]->Score(series); });
      if (round > 0) seconds[v].push_back(s / scored);  // the first round warms up
    }
  }
  std::cout << "\nThe check alone, seconds per scored slice (medians of 5 rounds in turns):";
  for (size_t v = 0; v < versions.size(); ++v) {
    std::cout << (v == 0 ? " " : ", ") << versions[v]->Describe() << " "
              << Fixed(Percentile(seconds[v], 50.0), 4);
  }
  std::cout << "\n";
  PrintCheckParts(check, series);
}

void PrintCost(const Distribution& d, const std::filesystem::path& models, const Volume& series,
               const DomainCheck& check) {
  PrintCheckVersions(check, series);
  // The series' first slice alone: a series shorter than the check's minimum is scored whole,
  // and the model runs it in a batch of one.
  Volume first = series;
  first.slices = 1;
  first.voxels.resize(static_cast<size_t>(series.VoxelsPerSlice()));
  const double scoredHere = ScoredCount(series.slices, check.Spec());
  std::cout << "\nCost on one held-out series of " << series.slices << " slices of " << series.rows
            << "x" << series.columns << " and on its first slice alone (CPU, " << TorchThreads()
            << " threads; the check, then the model, 7 times after one warm-up, medians); a "
               "series is checked on one slice in "
            << check.Spec().sliceStep << ", at least " << check.Spec().minSlices << " and at most "
            << check.Spec().maxSlices
            << (check.Spec().downsample > 1
                    ? ", on the means of " + std::to_string(check.Spec().downsample) + " x " +
                          std::to_string(check.Spec().downsample) + " pixels"
                    : std::string())
            << (check.Spec().crop > 0
                    ? ", each on its central " + std::to_string(check.Spec().crop) + " x " +
                          std::to_string(check.Spec().crop) + " pixels"
                    : std::string())
            << "; longer series from the per-slice figures:\n\n| model | model s/slice | check "
               "s/slice scored | check / model, series of 1 slice | of "
            << series.slices;
  // The longer series, from the per-slice figures.
  std::vector<int> longer;
  for (int slices : {8, 16, 32, 64, 256}) {
    if (slices > series.slices) longer.push_back(slices);
  }
  for (int slices : longer) std::cout << " | " << slices;
  std::cout << " slices |\n|---|---|---|---|---|";
  for (size_t i = 0; i < longer.size(); ++i) std::cout << "---|";
  std::cout << "\n";
  for (const std::string& name : d.models) {
    InferenceOptions options;
    options.device = "cpu";
    const auto model = TorchModel::Load(models / name, options);
    // The check and the model in turns, so that the machine's other work slows both alike.
    auto measure = [&](const Volume& volume) {
      std::vector<double> checkSeconds, modelSeconds;
      for (int round = 0; round < 8; ++round) {
        const double c = Seconds([&] { check.Score(volume); });
        const double m = Seconds([&] { model->Run(volume, {}); });
        if (round == 0) continue;  // warms up
        checkSeconds.push_back(c);
        modelSeconds.push_back(m);
      }
      return std::make_pair(Percentile(checkSeconds, 50.0), Percentile(modelSeconds, 50.0));
    };
    // "-" for a model that needs several slices (through-plane super-resolution).
    std::string oneSlice = "-";
    if (model->Info().throughPlaneScale == 1) {
      const auto [checkOne, modelOne] = measure(first);
      oneSlice = Fixed(100.0 * checkOne / modelOne, 1) + "%";
    }
    const auto [checkSeries, modelSeries] = measure(series);
    const double perSlice = checkSeries / scoredHere;
    const double modelPerSlice = modelSeries / static_cast<double>(series.slices);
    auto share = [&](int slices) {
      const double checked = ScoredCount(slices, check.Spec());
      return Fixed(100.0 * checked * perSlice / (slices * modelPerSlice), 1) + "%";
    };
    std::cout << "| " << name << " | " << Fixed(modelPerSlice, 4) << " | " << Fixed(perSlice, 4)
              << " | " << oneSlice << " | " << Fixed(100.0 * checkSeries / modelSeries, 1) << "% |";
    for (int slices : longer) std::cout << " " << share(slices) << " |";
    std::cout << "\n";
  }
}

// The tuning sets against the calibration series (DomainSets::tuning), and the least of their
// AUROCs: where scoring choices are compared without the held-out series.
void PrintTuning(const DomainCheck& check, const DomainSets& sets) {
  if (sets.tuning.empty()) return;
  const std::vector<double> negatives = ScoresOf(check, sets.calibration).scores;
  std::cout << "\nChanges of the " << negatives.size()
            << " calibration series (not held out; for comparing scoring choices):\n\n"
               "| set | AUROC against the calibration series | warned |\n|---|---|---|\n";
  double least = 1.0;
  for (const DomainSet& set : sets.tuning) {
    const SetScores positives = ScoresOf(check, set);
    const double auc = AreaUnderRoc(positives.scores, negatives);
    least = std::min(least, auc);
    std::cout << "| " << set.name << " | " << Fixed(auc, 3) << " | " << positives.outside << " of "
              << positives.scores.size() << " |\n";
  }
  std::cout << "\nLeast AUROC of the changes of the calibration series: " << Fixed(least, 3)
            << "\n";
}

// Gamma changes of the calibration series, scored against the calibration series themselves:
// not held out (the threshold comes from these series), the set on which the MR checks'
// mean-intensity feature was chosen (docs/models.md, "The shipped domain checks").
void PrintContrastTuning(const DomainCheck& check, const DomainSet& calibration) {
  const std::vector<double> negatives = ScoresOf(check, calibration).scores;
  std::cout << "\nContrast changes of the " << calibration.series.size()
            << " calibration series (not held out; where the mean-intensity feature was "
               "chosen):\n\n| gamma | AUROC against the calibration series | warned |\n"
               "|---|---|---|\n";
  for (double gamma : {0.5, 0.6, 1.6, 2.0}) {
    std::vector<double> positives;
    size_t outside = 0;
    uint64_t seed = 500;
    for (const Volume& v : calibration.series) {
      const DomainScore s = check.Score(ApplyMrEffects(v, {0.0, gamma, 0.0}, seed++));
      positives.push_back(s.score);
      outside += s.outside ? 1 : 0;
    }
    std::cout << "| " << Fixed(gamma, 1) << " | " << Fixed(AreaUnderRoc(positives, negatives), 3)
              << " | " << outside << " of " << positives.size() << " |\n";
  }
}

// The series of `set` cut into series of `slices` adjacent slices (the rest of each dropped),
// as a short series of the same acquisition would come.
DomainSet Windows(const DomainSet& set, int64_t slices) {
  DomainSet cut{set.name, {}};
  for (const Volume& v : set.series) {
    for (int64_t first = 0; first + slices <= v.slices; first += slices) {
      Volume w;
      w.geometry = v.geometry;
      w.units = v.units;
      w.Resize(slices, v.rows, v.columns);
      std::copy(v.Slice(first), v.Slice(first) + slices * v.VoxelsPerSlice(), w.voxels.begin());
      cut.series.push_back(std::move(w));
    }
  }
  return cut;
}

// Series shorter than the check's minimum of scored slices are scored on all their slices,
// and judged as the manifest's short_series says: the held-out series and the far and near
// sets cut into series of 1, 2, 3 ... slices, their false warnings and AUROCs.
void PrintShortSeries(const DomainCheck& check, const DomainSets& sets) {
  const int64_t least = std::max(1, check.Spec().minSlices);
  std::vector<int64_t> lengths;
  for (int64_t k = 1; k < least && k <= 4; ++k) lengths.push_back(k);
  if (lengths.empty()) return;
  std::cout << "\nShort series: the held-out series and the sets cut into series of adjacent "
               "slices, each scored on all of its slices (the check scores at least "
            << least << " of a longer series)\n\n| set |";
  for (int64_t k : lengths) std::cout << " " << k << (k == 1 ? " slice" : " slices") << " |";
  std::cout << "\n|---|";
  for (size_t i = 0; i < lengths.size(); ++i) std::cout << "---|";
  std::cout << "\n";
  std::vector<std::vector<double>> negatives;
  std::cout << "| " << sets.test.name << ": false warnings |";
  for (int64_t k : lengths) {
    const SetScores test = ScoresOf(check, Windows(sets.test, k));
    negatives.push_back(test.scores);
    std::cout << " " << test.outside << " of " << test.scores.size() << " ("
              << Fixed(100.0 * test.outside / test.scores.size(), 1) << "%) |";
  }
  std::cout << "\n";
  auto row = [&](const DomainSet& set, const char* kind) {
    std::cout << "| " << set.name << " (" << kind << "): AUROC |";
    for (size_t i = 0; i < lengths.size(); ++i) {
      const SetScores positives = ScoresOf(check, Windows(set, lengths[i]));
      // "-": the set's series are shorter (pydicom's images are single slices).
      std::cout << " "
                << (positives.scores.empty()
                        ? std::string("-")
                        : Fixed(AreaUnderRoc(positives.scores, negatives[i]), 3))
                << " |";
    }
    std::cout << "\n";
  };
  for (const DomainSet& set : sets.far) row(set, "far");
  for (const DomainSet& set : sets.near) row(set, "near");
}

int Evaluate(const std::string& name, const std::filesystem::path& models, const DomainSets& sets) {
  const Distribution d = For(name);
  const ModelSpec spec = LoadManifest(models / d.models.front());
  if (!spec.hasDomainCheck) {
    throw std::runtime_error(d.models.front() +
                             " has no domain check: run enhance-domain calibrate");
  }
  const auto check = DomainCheck::Load(spec.domainCheck, "cpu", (models / spec.name).string());
  const SetScores test = ScoresOf(*check, sets.test);
  const std::vector<double>& negatives = test.scores;
  const size_t warned = test.outside;
  std::cout
      << "Domain check of the " << name << " models (trained on " << sets.trainedOn
      << "); threshold " << Fixed(spec.domainCheck.threshold, 2) << "\n\n"
      << "| set | kind | series | AUROC | warned | median score |\n|---|---|---|---|---|---|\n";
  std::cout << "| " << sets.test.name << " | in-distribution | " << negatives.size() << " | - | "
            << warned << " (" << Fixed(100.0 * warned / negatives.size(), 1)
            << "% false warnings) | " << Fixed(Percentile(negatives, 50), 2) << " |\n";
  auto row = [&](const DomainSet& set, const char* kind) {
    const SetScores positives = ScoresOf(*check, set);
    const size_t count = positives.scores.size();
    std::cout << "| " << set.name << " | " << kind << " | " << count << " | "
              << Fixed(AreaUnderRoc(positives.scores, negatives), 3) << " | " << positives.outside
              << " of " << count << " | " << Fixed(Percentile(positives.scores, 50), 2) << " |\n";
  };
  for (const DomainSet& set : sets.far) row(set, "far");
  for (const DomainSet& set : sets.near) row(set, "near");
  for (const DomainSet& set : sets.extra) row(set, "other");
  std::cout << "\nTargets: AUROC >= 0.95 (far), >= 0.80 (near); false warnings <= 5%.\n";
  PrintShortSeries(*check, sets);
  if (d.units.empty()) PrintContrastTuning(*check, sets.calibration);
  PrintTuning(*check, sets);
  PrintCost(d, models, sets.test.series.front(), *check);
  return 0;
}

}  // namespace
}  // namespace enhance::models

int main(int argc, char** argv) {
  using namespace enhance::models;
  const std::string usage =
      "usage: enhance-domain calibrate ct|ct-x2|mr|mr-x2 --vae FILE --models DIR [--cache DIR]\n"
      "           [--score mean|nearest] [--downsample N] [--crop N] [--slice-step N]\n"
      "           [--min-slices N] [--intensity on|off] [--correlation on|off]\n"
      "       enhance-domain evaluate ct|ct-x2|mr|mr-x2 --models DIR [--cache DIR]\n"
      "--cache DIR keeps the simulated series in DIR for the next run\n"
      "--score: the distance to the reference series' mean (default) or to the nearest of them\n"
      "--downsample N: score the means of N x N blocks of pixels, as an autoencoder trained at\n"
      "1/N of the resolution sees them\n"
      "--crop N: score the central N x N pixels of larger slices; --slice-step N: one slice in N,\n"
      "but at least --min-slices N (default 8)\n"
      "--intensity on: the slices' mean normalised intensity is a feature of the score too\n"
      "--correlation on: and the correlation of their residuals with their neighbours\n";
  enhance::ConfigureRuntime({});  // every hardware thread, as the node by default
  try {
    if (argc < 3) throw std::invalid_argument("missing arguments");
    const std::string command = argv[1];
    const std::string name = argv[2];
    std::map<std::string, std::string> options;
    for (int i = 3; i + 1 < argc; i += 2) options[argv[i]] = argv[i + 1];
    if (options.count("--models") == 0) throw std::invalid_argument("--models is required");
    if (command == "calibrate") {
      if (options.count("--vae") == 0) throw std::invalid_argument("--vae is required");
      Scoring scoring;
      const std::string score = options.count("--score") ? options["--score"] : "mean";
      if (score != "mean" && score != "nearest") {
        throw std::invalid_argument("--score must be mean or nearest, not '" + score + "'");
      }
      scoring.nearest = score == "nearest";
      if (options.count("--downsample")) scoring.downsample = std::stoi(options["--downsample"]);
      if (options.count("--crop")) scoring.crop = std::stoi(options["--crop"]);
      if (options.count("--slice-step")) scoring.sliceStep = std::stoi(options["--slice-step"]);
      if (options.count("--min-slices")) scoring.minSlices = std::stoi(options["--min-slices"]);
      const std::string intensity = options.count("--intensity") ? options["--intensity"] : "off";
      if (intensity != "on" && intensity != "off") {
        throw std::invalid_argument("--intensity must be on or off, not '" + intensity + "'");
      }
      scoring.intensity = intensity == "on";
      const std::string correlation =
          options.count("--correlation") ? options["--correlation"] : "off";
      if (correlation != "on" && correlation != "off") {
        throw std::invalid_argument("--correlation must be on or off, not '" + correlation + "'");
      }
      scoring.correlation = correlation == "on";
      return Calibrate(name, options["--vae"], options["--models"], options["--cache"], scoring);
    }
    if (command == "evaluate") {
      return Evaluate(name, options["--models"], Sets(name, options["--cache"]));
    }
    throw std::invalid_argument("unknown command '" + command + "'");
  } catch (const std::exception& e) {
    std::cerr << "enhance-domain: " << e.what() << "\n" << usage;
    return 2;
  }
}
