// SPDX-License-Identifier: GPL-3.0-or-later
//
// The "domain_check" section of a model's manifest (docs/models.md, "Domain checks").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ManifestReader.h"
#include "enhance/inference/DomainCheck.h"

namespace enhance::manifest {
namespace {

// A [mean, sd] pair of the "reference" of a domain check.
void ParseReference(const ManifestReader& r, const Json::Value& o, const char* key, double& mean,
                    double& sd) {
  const std::string name = std::string("domain_check.reference.") + key;
  const Json::Value& pair = o[key];
  if (!pair.isArray() || pair.size() != 2 || !pair[0].isNumeric() || !pair[1].isNumeric() ||
      !std::isfinite(pair[0].asDouble()) || !(pair[1].asDouble() > 0) ||
      !std::isfinite(pair[1].asDouble())) {
    r.Fail(name, "must be [mean, standard deviation] with a standard deviation above 0");
  }
  mean = pair[0].asDouble();
  sd = pair[1].asDouble();
}

// An optional feature scored after log m (mean_intensity, residual_correlation): its
// [mean, sd] pair, and whether the reference has it.
bool ParseLaterFeature(const ManifestReader& r, const Json::Value& reference, const char* key,
                       const char* what, bool hasResidual, double& mean, double& sd) {
  if (!reference.isMember(key)) return false;
  if (!hasResidual) {
    r.Fail(std::string("domain_check.reference.") + key,
           std::string("needs log_residual: a check scores ") + what +
               " after the reconstruction error, the KL and the median residual");
  }
  ParseReference(r, reference, key, mean, sd);
  return true;
}

// A list of reference points named `name` ("reference.series": one per reference series;
// "short_series.series": one per reference slice) into `out`: each the features the check
// scores, in their order (ScoredFeatures): [log r, log k], with a residual reference [log r,
// log k, log m], then i with an intensity reference and c with a correlation reference:
// [log r, log k, log m, i, c].
void ParseReferenceSeries(const ManifestReader& r, const Json::Value& series,
                          const std::string& name, const DomainCheckSpec& d,
                          std::vector<std::vector<double>>& out) {
  const std::vector<ScoredFeature> scored = ScoredFeatures(d);
  std::string shape;
  for (const ScoredFeature& f : scored)
    shape += (shape.empty() ? "[" : ", ") + std::string(f.symbol);
  shape += "]";
  const auto features = static_cast<Json::ArrayIndex>(scored.size());
  if (!series.isArray() || series.empty() || series.size() > 100000) {
    r.Fail(name, "must be a list of 1 to 100000 reference series' features, each " + shape);
  }
  for (const Json::Value& point : series) {
    bool good = point.isArray() && point.size() == features;
    for (Json::ArrayIndex i = 0; good && i < features; ++i) {
      good = point[i].isNumeric() && std::isfinite(point[i].asDouble());
    }
    if (!good) r.Fail(name, "each entry must be " + shape + " of finite numbers");
    std::vector<double> values;
    for (Json::ArrayIndex i = 0; i < features; ++i) values.push_back(point[i].asDouble());
    out.push_back(std::move(values));
  }
}

// "short_series": how a series scored on fewer than min_slices slices is judged: the
// reference series' single slices, and a threshold for each length.
void ParseShortSeries(const ManifestReader& r, const Json::Value& o, const std::string& key,
                      DomainCheckSpec& d) {
  const std::string name = key + ".short_series";
  const auto lengths = static_cast<Json::ArrayIndex>(d.minSlices - 1);
  if (!o.isObject()) {
    r.Fail(name,
           "must be an object {\"series\": [the features of each reference slice], "
           "\"thresholds\": [those of series of 1, 2, ... slices]}");
  }
  r.CheckKeys(o, name, {"series", "thresholds"});
  ParseReferenceSeries(r, o["series"], name + ".series", d, d.shortSeriesSlices);
  const Json::Value& list = o["thresholds"];
  if (!list.isArray() || list.empty() || list.size() > lengths) {
    r.Fail(name + ".thresholds", "must be a list of 1 to min_slices - 1 (" +
                                     std::to_string(lengths) +
                                     ") thresholds: those of series scored on 1, 2, ... slices");
  }
  char threshold[32];
  std::snprintf(threshold, sizeof(threshold), "%.6g", d.threshold);
  for (Json::ArrayIndex i = 0; i < list.size(); ++i) {
    const double t = list[i].isNumeric() ? list[i].asDouble() : std::nan("");
    if (!std::isfinite(t) || t < d.threshold) {
      r.Fail(name + ".thresholds", "entry " + std::to_string(i) +
                                       " must be a number at least the threshold (" + threshold +
                                       "): a shorter series is never judged more strictly");
    }
    d.shortSeriesThresholds.push_back(t);
  }
}

}  // namespace

// The "domain_check" section: the autoencoder that tells whether a series is like the
// model's training data (DomainCheck.h).
void ParseDomainCheck(const ManifestReader& r, const Json::Value& o,
                      const std::filesystem::path& folder, ModelSpec& s) {
  const std::string key = "domain_check";
  if (!o.isObject()) r.Fail(key, "must be an object naming the autoencoder's archive");
  r.CheckKeys(
      o, key,
      {"archive", "input_normalization", "size_multiple", "slice_step", "min_slices", "max_slices",
       "downsample", "crop", "reference", "threshold", "short_series", "trained_on"});
  DomainCheckSpec& d = s.domainCheck;
  const std::string archive = OptionalString(r, o, key, "archive", "");
  if (archive.empty()) r.Fail(key + ".archive", "is required: the autoencoder's archive");
  d.archive = ParseArchive(r, archive, key + ".archive", folder);
  if (d.archive == s.archive) r.Fail(key + ".archive", "must not be the model's own archive");
  d.input = o.isMember("input_normalization")
                ? r.ParseNormalization(o["input_normalization"], key + ".input_normalization")
                : s.input;
  const bool ct = std::find(s.modalities.begin(), s.modalities.end(), "CT") != s.modalities.end();
  d.units = ct ? "HU" : "";
  d.sizeMultiple = r.Int(o, key, "size_multiple", d.sizeMultiple, 1, 64);
  d.sliceStep = r.Int(o, key, "slice_step", d.sliceStep, 1, 100000);
  d.maxSlices = r.Int(o, key, "max_slices", d.maxSlices, 1, 100000);
  d.minSlices = r.Int(o, key, "min_slices", std::min(d.minSlices, d.maxSlices), 1, 100000);
  if (d.minSlices > d.maxSlices) {
    r.Fail(key + ".min_slices",
           "must not be above max_slices (" + std::to_string(d.maxSlices) + ")");
  }
  d.downsample = r.Int(o, key, "downsample", d.downsample, 1, 8);
  d.crop = r.Int(o, key, "crop", d.crop, 0, 65536);
  if (d.crop != 0 && d.crop < 4 * d.sizeMultiple) {
    r.Fail(key + ".crop", "must be 0 (the whole slice) or at least 4 times size_multiple (" +
                              std::to_string(4 * d.sizeMultiple) + ")");
  }
  const Json::Value& reference = o["reference"];
  if (!reference.isObject()) {
    r.Fail(key + ".reference",
           "is required: {\"log_reconstruction\": [mean, sd], \"log_kl\": [mean, sd], "
           "\"log_residual\": [mean, sd] (optional), \"mean_intensity\": [mean, sd] (optional), "
           "\"residual_correlation\": [mean, sd] (optional)} of the training series");
  }
  r.CheckKeys(reference, key + ".reference",
              {"log_reconstruction", "log_kl", "log_residual", "mean_intensity",
               "residual_correlation", "series"});
  ParseReference(r, reference, "log_reconstruction", d.reconstructionMean, d.reconstructionSd);
  ParseReference(r, reference, "log_kl", d.klMean, d.klSd);
  d.hasResidualReference = reference.isMember("log_residual");
  if (d.hasResidualReference) {
    ParseReference(r, reference, "log_residual", d.residualMean, d.residualSd);
  }
  d.hasIntensityReference =
      ParseLaterFeature(r, reference, "mean_intensity", "the mean intensity",
                        d.hasResidualReference, d.intensityMean, d.intensitySd);
  d.hasCorrelationReference =
      ParseLaterFeature(r, reference, "residual_correlation", "the residual correlation",
                        d.hasResidualReference, d.correlationMean, d.correlationSd);
  if (reference.isMember("series")) {
    ParseReferenceSeries(r, reference["series"], key + ".reference.series", d, d.referenceSeries);
  }
  d.threshold = r.Number(o, key, "threshold");
  if (!(d.threshold > 0) || !std::isfinite(d.threshold)) {
    r.Fail(key + ".threshold", "must be a number above 0 (a score in standard deviations)");
  }
  if (o.isMember("short_series")) ParseShortSeries(r, o["short_series"], key, d);
  d.trainedOn = OptionalString(r, o, key, "trained_on", "");
  s.hasDomainCheck = true;
}

}  // namespace enhance::manifest

namespace enhance {

// Here rather than in DomainCheck.cpp: the manifest's parsing needs it, without LibTorch.
std::vector<ScoredFeature> ScoredFeatures(const DomainCheckSpec& spec) {
  std::vector<ScoredFeature> features{
      {"log r", "LogReconstruction", "log_reconstruction", &DomainScore::logReconstruction,
       &SliceDomainFeatures::logReconstruction, spec.reconstructionMean, spec.reconstructionSd},
      {"log k", "LogKL", "log_kl", &DomainScore::logKl, &SliceDomainFeatures::logKl, spec.klMean,
       spec.klSd}};
  if (spec.hasResidualReference) {
    features.push_back({"log m", "LogResidual", "log_residual", &DomainScore::logResidual,
                        &SliceDomainFeatures::logResidual, spec.residualMean, spec.residualSd});
  }
  if (spec.hasIntensityReference) {
    features.push_back({"i", "MeanIntensity", "mean_intensity", &DomainScore::meanIntensity,
                        &SliceDomainFeatures::meanIntensity, spec.intensityMean, spec.intensitySd});
  }
  if (spec.hasCorrelationReference) {
    features.push_back(
        {"c", "ResidualCorrelation", "residual_correlation", &DomainScore::residualCorrelation,
         &SliceDomainFeatures::residualCorrelation, spec.correlationMean, spec.correlationSd});
  }
  return features;
}

}  // namespace enhance
