// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/ModelSpec.h"

#include <json/reader.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>

#include "ManifestReader.h"
#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"

namespace enhance {

using manifest::ManifestReader;
using manifest::OptionalString;
using manifest::ParseArchive;

namespace manifest {

std::filesystem::path ParseArchive(const ManifestReader& r, const std::string& archive,
                                   const std::string& key, const std::filesystem::path& folder) {
  const std::filesystem::path relative(archive);
  if (relative.is_absolute() || archive.find("..") != std::string::npos) {
    r.Fail(key, "'" + Printable(archive) + "' must be a file name inside the model's folder");
  }
  std::error_code ec;
  const auto base = std::filesystem::weakly_canonical(folder, ec);
  const auto resolved = std::filesystem::weakly_canonical(folder / relative, ec);
  const auto [baseEnd, _] =
      std::mismatch(base.begin(), base.end(), resolved.begin(), resolved.end());
  if (ec || baseEnd != base.end()) {
    r.Fail(key, "'" + Printable(archive) + "' resolves outside the model's folder");
  }
  return resolved;
}

std::string OptionalString(const ManifestReader& r, const Json::Value& o, const std::string& prefix,
                           const char* key, const std::string& fallback) {
  if (!o.isMember(key)) return fallback;
  if (!o[key].isString()) r.Fail(prefix + "." + key, "must be a string");
  return o[key].asString();
}

}  // namespace manifest

int ModelSpec::InputChannels() const {
  if (throughPlaneScale > 1) return 2 * std::max(1, sliceContext);
  return 2 * sliceContext + 1;
}

CodedConcept DefaultDerivationCode(const std::string& task) {
  if (task == "superres") return {"113085", "DCM", "Spatial resampling"};
  if (task == "mr2ct") return {"ENH-MR2CT", "99ENHANCE", "Synthetic CT from MR by a learned model"};
  return {"ENH-DENOISE", "99ENHANCE", "Noise reduction by a learned model"};
}

bool SlicesAreIndependent(const ModelSpec& spec) {
  const auto fixed = [](const Normalization& n) {
    return n.method == Normalization::Method::kNone || n.method == Normalization::Method::kWindow;
  };
  return spec.sliceContext == 0 && spec.throughPlaneScale == 1 && fixed(spec.input) &&
         fixed(spec.output);
}

namespace {

// name, version, task, modalities and intended use.
void ParseIdentity(const ManifestReader& r, const Json::Value& m, ModelSpec& s) {
  s.name = r.String(m, "name", true);
  static const std::regex kName("[a-z0-9][a-z0-9._-]{0,63}");
  if (!std::regex_match(s.name, kName)) {
    r.Fail("name",
           "'" + Printable(s.name) + "' must be 1-64 lower-case letters, digits, '.', '_' or '-'");
  }
  s.version = r.String(m, "version", true);
  s.task = r.String(m, "task", true);
  if (s.task != "denoise" && s.task != "superres" && s.task != "mr2ct") {
    r.Fail("task", "'" + Printable(s.task) + "' must be one of denoise, superres, mr2ct");
  }
  if (!m.isMember("modalities") || !m["modalities"].isArray() || m["modalities"].empty()) {
    r.Fail("modalities", "must be a non-empty list such as [\"CT\"]");
  }
  for (const auto& modality : m["modalities"]) {
    if (!modality.isString() || modality.asString().empty())
      r.Fail("modalities", "must hold strings");
    s.modalities.push_back(modality.asString());
  }
  s.intendedUse = r.String(m, "intended_use", true);
}

// How values go in and out of the network: normalisations, output range and units.
void ParseValues(const ManifestReader& r, const Json::Value& m, ModelSpec& s) {
  if (m.isMember("input_normalization")) {
    s.input = r.ParseNormalization(m["input_normalization"], "input_normalization");
  }
  if (m.isMember("output_normalization")) {
    s.output = r.ParseNormalization(m["output_normalization"], "output_normalization");
    if (s.output.method == Normalization::Method::kPercentile ||
        s.output.method == Normalization::Method::kZScore) {
      r.Fail("output_normalization.method", "must be none or window");
    }
  }
  if (m.isMember("output_range")) {
    const Json::Value& range = m["output_range"];
    if (!range.isArray() || range.size() != 2 || !range[0].isNumeric() || !range[1].isNumeric() ||
        !(range[1].asDouble() > range[0].asDouble())) {
      r.Fail("output_range", "must be [min, max] with min < max");
    }
    s.hasOutputRange = true;
    s.outputMin = range[0].asDouble();
    s.outputMax = range[1].asDouble();
  }
  s.outputUnits = m.isMember("output_units") ? r.String(m, "output_units", true) : "";
}

// How the network is fed: scale, slice context, tiles, precision and batches.
void ParseLayout(const ManifestReader& r, const Json::Value& m, ModelSpec& s) {
  if (m.isMember("scale")) {
    const Json::Value& scale = m["scale"];
    if (!scale.isObject())
      r.Fail("scale", "must be an object {\"in_plane\": 2, \"through_plane\": 1}");
    r.CheckKeys(scale, "scale", {"in_plane", "through_plane"});
    s.inPlaneScale = r.Int(scale, "scale", "in_plane", 1, 1, 4);
    s.throughPlaneScale = r.Int(scale, "scale", "through_plane", 1, 1, 2);
    if (s.inPlaneScale == 3) r.Fail("scale.in_plane", "must be 1, 2 or 4");
    if (s.inPlaneScale > 1 && s.throughPlaneScale > 1) {
      r.Fail("scale", "a model scales either in-plane or through-plane, not both");
    }
  }
  if ((s.inPlaneScale > 1 || s.throughPlaneScale > 1) != (s.task == "superres")) {
    r.Fail("scale", "superres models, and only they, must have a scale above 1");
  }
  s.sliceContext = r.Int(m, "", "slice_context", 0, 0, 8);
  if (m.isMember("tile")) {
    const Json::Value& tile = m["tile"];
    if (!tile.isObject()) r.Fail("tile", "must be an object {\"size\": 256, \"overlap\": 32}");
    r.CheckKeys(tile, "tile", {"size", "overlap"});
    s.tileSize = r.Int(tile, "tile", "size", s.tileSize, 0, 4096);
    s.tileOverlap = r.Int(tile, "tile", "overlap", s.tileOverlap, 0, 1024);
    if (s.tileSize > 0 && (s.tileSize < 16 || 2 * s.tileOverlap >= s.tileSize)) {
      r.Fail("tile", "size must be 0 (no tiling) or at least 16 and more than twice the overlap");
    }
  }
  if (m.isMember("fp16")) {
    if (!m["fp16"].isBool()) r.Fail("fp16", "must be true or false");
    s.allowFp16 = m["fp16"].asBool();
  }
  s.maxBatch = r.Int(m, "", "max_batch", s.maxBatch, 1, 1024);
  s.sizeMultiple = r.Int(m, "", "size_multiple", s.sizeMultiple, 1, 64);
  if (s.tileSize > 0 && s.tileSize % s.sizeMultiple != 0) {
    r.Fail("tile",
           "size must be a multiple of size_multiple (" + std::to_string(s.sizeMultiple) + ")");
  }
}

// diffusion.schedule: the noise schedule, as named β ranges or a table of ā.
void ParseSchedule(const ManifestReader& r, const Json::Value& o, SamplerSpec& d) {
  const std::string key = "diffusion.schedule";
  if (!o.isObject()) r.Fail(key, "must be an object such as {\"type\": \"cosine\"}");
  r.CheckKeys(o, key, {"type", "beta_start", "beta_end", "alphas_cumprod"});
  const std::string type = o.isMember("type") && o["type"].isString() ? o["type"].asString() : "";
  if (type == "linear" || type == "scaled_linear") {
    d.schedule =
        type == "linear" ? SamplerSpec::Schedule::kLinear : SamplerSpec::Schedule::kScaledLinear;
    if (o.isMember("beta_start")) d.betaStart = r.Number(o, key, "beta_start");
    if (o.isMember("beta_end")) d.betaEnd = r.Number(o, key, "beta_end");
    if (!(d.betaStart > 0 && d.betaStart < d.betaEnd && d.betaEnd < 1)) {
      r.Fail(key, "needs 0 < beta_start < beta_end < 1");
    }
  } else if (type == "cosine") {
    d.schedule = SamplerSpec::Schedule::kCosine;
  } else if (type == "table") {
    d.schedule = SamplerSpec::Schedule::kTable;
    const Json::Value& table = o["alphas_cumprod"];
    if (!table.isArray() || static_cast<int>(table.size()) != d.trainingTimesteps) {
      r.Fail(key + ".alphas_cumprod", "must list " + std::to_string(d.trainingTimesteps) +
                                          " values, one per training timestep");
    }
    double previous = 1.0;
    for (const auto& value : table) {
      if (!value.isNumeric() || !(value.asDouble() > 0) || value.asDouble() > previous) {
        r.Fail(key + ".alphas_cumprod", "must be numbers in (0, 1] that never increase");
      }
      previous = value.asDouble();
      d.alphasCumprod.push_back(previous);
    }
  } else {
    r.Fail(key + ".type", "must be one of linear, scaled_linear, cosine, table");
  }
}

// diffusion.timesteps: an explicit descending list, or a count and a spacing.
void ParseTimesteps(const ManifestReader& r, const Json::Value& o, SamplerSpec& d) {
  const std::string key = "diffusion.timesteps";
  if (o.isArray()) {
    if (o.empty()) r.Fail(key, "must not be empty");
    for (const auto& value : o) {
      if (!value.isInt() || value.asInt() < 0 || value.asInt() >= d.trainingTimesteps ||
          (!d.timesteps.empty() && value.asInt() >= d.timesteps.back())) {
        r.Fail(key, "must be strictly decreasing integers from " +
                        std::to_string(d.trainingTimesteps - 1) + " down to 0");
      }
      d.timesteps.push_back(value.asInt());
    }
    return;
  }
  if (!o.isObject()) r.Fail(key, "must be a list such as [999, 749, 499, 249] or {\"count\": 4}");
  r.CheckKeys(o, key, {"count", "spacing"});
  d.stepCount = r.Int(o, key, "count", d.stepCount, 1, d.trainingTimesteps);
  d.spacing = OptionalString(r, o, key, "spacing", d.spacing);
  if (d.spacing != "linspace" && d.spacing != "leading" && d.spacing != "trailing") {
    r.Fail(key + ".spacing", "must be one of linspace, leading, trailing");
  }
}

// The "diffusion" section: how the node samples a conditional diffusion model.
void ParseSampler(const ManifestReader& r, const Json::Value& o, ModelSpec& s) {
  if (!o.isObject()) r.Fail("diffusion", "must be an object describing the sampler");
  r.CheckKeys(o, "diffusion",
              {"training_timesteps", "schedule", "prediction", "timesteps", "eta", "clip",
               "samples", "seed", "time_input"});
  if (s.inPlaneScale != 1 || s.throughPlaneScale != 1) {
    r.Fail("diffusion", "diffusion models run on the input's grid: their scale must be 1");
  }
  SamplerSpec& d = s.sampler;
  s.isDiffusion = true;
  d.trainingTimesteps = r.Int(o, "diffusion", "training_timesteps", d.trainingTimesteps, 1, 100000);
  if (o.isMember("schedule")) ParseSchedule(r, o["schedule"], d);
  const std::string prediction = OptionalString(r, o, "diffusion", "prediction", "epsilon");
  const std::map<std::string, SamplerSpec::Prediction> predictions{
      {"epsilon", SamplerSpec::Prediction::kEpsilon},
      {"v", SamplerSpec::Prediction::kV},
      {"sample", SamplerSpec::Prediction::kSample}};
  if (predictions.count(prediction) == 0)
    r.Fail("diffusion.prediction", "must be one of epsilon, v, sample");
  d.prediction = predictions.at(prediction);
  if (o.isMember("timesteps")) ParseTimesteps(r, o["timesteps"], d);
  if (o.isMember("eta")) {
    d.eta = r.Number(o, "diffusion", "eta");
    if (!(d.eta >= 0 && d.eta <= 1))
      r.Fail("diffusion.eta", "must be from 0 (deterministic DDIM) to 1");
  }
  if (o.isMember("clip")) {
    const Json::Value& clip = o["clip"];
    if (clip.isBool() && !clip.asBool()) {
      d.clip = false;
    } else if (clip.isArray() && clip.size() == 2 && clip[0].isNumeric() && clip[1].isNumeric() &&
               clip[1].asDouble() > clip[0].asDouble()) {
      d.clipMin = clip[0].asDouble();
      d.clipMax = clip[1].asDouble();
    } else {
      r.Fail("diffusion.clip", "must be false or [min, max] with min < max (network units)");
    }
  }
  d.samples = r.Int(o, "diffusion", "samples", d.samples, 1, 64);
  if (o.isMember("seed")) {
    if (!o["seed"].isIntegral() || (o["seed"].isInt64() && o["seed"].asInt64() < 0)) {
      r.Fail("diffusion.seed", "must be a non-negative integer");
    }
    d.seed = o["seed"].asUInt64();
  }
  const std::string time = OptionalString(r, o, "diffusion", "time_input", "index");
  if (time != "index" && time != "fraction")
    r.Fail("diffusion.time_input", "must be index or fraction");
  d.timeInput =
      time == "index" ? SamplerSpec::TimeInput::kIndex : SamplerSpec::TimeInput::kFraction;
}

// The "uncertainty" section: a deterministic model's map by test-time augmentation.
void ParseUncertainty(const ManifestReader& r, const Json::Value& u, ModelSpec& s) {
  if (!u.isObject()) r.Fail("uncertainty", "must be {\"method\": \"augmentation\"}");
  r.CheckKeys(u, "uncertainty", {"method"});
  if (OptionalString(r, u, "uncertainty", "method", "") != "augmentation") {
    r.Fail("uncertainty.method", "must be augmentation (flips and 90-degree rotations)");
  }
  if (s.isDiffusion)
    r.Fail("uncertainty", "a diffusion model's uncertainty comes from its samples");
  s.augmentationUncertainty = true;
}

// A tolerance object {"mean": M, "p999": P} of the "low_precision" section.
void ParseTolerance(const ManifestReader& r, const Json::Value& o, const std::string& key,
                    double& mean, double& p999) {
  const Json::Value& tolerance = o[key.substr(key.rfind('.') + 1)];
  if (!tolerance.isObject()) {
    r.Fail(key, "is required: {\"mean\": M, \"p999\": P} in output units");
  }
  r.CheckKeys(tolerance, key, {"mean", "p999"});
  mean = r.Number(tolerance, key, "mean");
  p999 = r.Number(tolerance, key, "p999");
  if (!(mean > 0) || !(p999 > 0) || !std::isfinite(mean) || !std::isfinite(p999)) {
    r.Fail(key, "mean and p999 must be numbers above 0");
  }
}

// The "low_precision" section: {"allow": ["bf16", "int8"], "calibration": FILE,
// "tolerance": {"mean": M, "p999": P}, "int8_tolerance": {...}} (LowPrecisionSpec).
void ParseLowPrecision(const ManifestReader& r, const Json::Value& o,
                       const std::filesystem::path& folder, ModelSpec& s) {
  const std::string key = "low_precision";
  if (!o.isObject()) {
    r.Fail(key,
           "must be {\"allow\": [\"bf16\", \"int8\"], \"calibration\": FILE, \"tolerance\": "
           "{\"mean\": M, \"p999\": P}, \"int8_tolerance\": {...}}");
  }
  r.CheckKeys(o, key, {"allow", "calibration", "tolerance", "int8_tolerance"});
  LowPrecisionSpec& p = s.lowPrecision;
  const Json::Value& allow = o["allow"];
  if (!allow.isArray())
    r.Fail(key + ".allow", "must be a list of precisions: [\"bf16\", \"int8\"]");
  for (const auto& item : allow) {
    const std::string name = item.isString() ? item.asString() : "";
    if (name != "bf16" && name != "int8") {
      r.Fail(key + ".allow",
             "unknown precision; the node runs \"bf16\" and \"int8\" besides float");
    }
    (name == "bf16" ? p.bf16 : p.int8) = true;
  }
  const std::string calibration = OptionalString(r, o, key, "calibration", "");
  if (calibration.empty()) {
    r.Fail(key + ".calibration",
           "is required: a tensor file of network inputs to compare the precisions on");
  }
  p.calibration = ParseArchive(r, calibration, key + ".calibration", folder);
  if (p.bf16 || !p.int8 || o.isMember("tolerance"))
    ParseTolerance(r, o, key + ".tolerance", p.meanTolerance, p.p999Tolerance);
  if (p.int8 || o.isMember("int8_tolerance"))
    ParseTolerance(r, o, key + ".int8_tolerance", p.int8MeanTolerance, p.int8P999Tolerance);
}

// The derivation code, and the defaults a synthetic CT model implies.
void ParseDerivation(const ManifestReader& r, const Json::Value& m, ModelSpec& s) {
  s.derivationCode = DefaultDerivationCode(s.task);
  if (m.isMember("derivation_code")) {
    const Json::Value& code = m["derivation_code"];
    if (!code.isObject()) r.Fail("derivation_code", "must be {\"value\", \"scheme\", \"meaning\"}");
    r.CheckKeys(code, "derivation_code", {"value", "scheme", "meaning"});
    s.derivationCode = {r.String(code, "value", true), r.String(code, "scheme", true),
                        r.String(code, "meaning", true)};
  }
  if (s.task == "mr2ct") {
    if (s.outputUnits.empty()) s.outputUnits = "HU";
    if (!s.hasOutputRange) {  // the range a CT scanner stores
      s.hasOutputRange = true;
      s.outputMin = -1024;
      s.outputMax = 3071;
    }
  }
}

}  // namespace

ModelSpec ParseManifest(const Json::Value& m, const std::filesystem::path& folder) {
  const ManifestReader r((folder / "manifest.json").string());
  if (!m.isObject()) r.Fail("manifest", "must be a JSON object");
  r.CheckKeys(m, "",
              {"name",
               "version",
               "task",
               "modalities",
               "intended_use",
               "model_uid",
               "archive",
               "input_normalization",
               "output_normalization",
               "output_range",
               "output_units",
               "scale",
               "slice_context",
               "tile",
               "size_multiple",
               "fp16",
               "max_batch",
               "derivation_code",
               "description",
               "diffusion",
               "uncertainty",
               "domain_check",
               "low_precision"});
  ModelSpec s;
  ParseIdentity(r, m, s);
  s.archive = ParseArchive(r, r.String(m, "archive", true), "archive", folder);
  if (m.isMember("model_uid")) {
    s.uid = r.String(m, "model_uid", true);
    if (!IsValidUid(s.uid))
      r.Fail("model_uid", "'" + Printable(s.uid) + "' is not a valid DICOM UID");
  }
  ParseValues(r, m, s);
  ParseLayout(r, m, s);
  if (m.isMember("diffusion")) ParseSampler(r, m["diffusion"], s);
  if (m.isMember("uncertainty")) ParseUncertainty(r, m["uncertainty"], s);
  if (m.isMember("domain_check")) manifest::ParseDomainCheck(r, m["domain_check"], folder, s);
  if (m.isMember("low_precision")) ParseLowPrecision(r, m["low_precision"], folder, s);
  ParseDerivation(r, m, s);
  return s;
}

ModelSpec ParseManifestText(const std::string& text, const std::filesystem::path& folder) {
  Json::CharReaderBuilder builder;
  const std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  Json::Value manifest;
  std::string errors;
  if (!reader->parse(text.data(), text.data() + text.size(), &manifest, &errors)) {
    throw Error(ErrorKind::kBadInput,
                (folder / "manifest.json").string() + ": not valid JSON: " + errors);
  }
  return ParseManifest(manifest, folder);
}

ModelSpec LoadManifest(const std::filesystem::path& folder) {
  const auto path = folder / "manifest.json";
  std::ifstream stream(path, std::ios::binary);
  if (!stream) {
    throw Error(ErrorKind::kNotFound, path.string() + ": cannot be opened");
  }
  std::ostringstream text;
  text << stream.rdbuf();
  if (stream.bad()) throw Error(ErrorKind::kNotFound, path.string() + ": cannot be read");
  return ParseManifestText(text.str(), folder);
}

}  // namespace enhance
