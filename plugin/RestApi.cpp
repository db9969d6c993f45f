// SPDX-License-Identifier: GPL-3.0-or-later
#include "RestApi.h"

#include "Cluster.h"

#include "RestSupport.h"

#include <cmath>

#include "OrthancInstanceSource.h"
#include "SeriesPipeline.h"
#include "enhance/base/Error.h"
#include "enhance/inference/DomainCheck.h"
#include "enhance/inference/Runtime.h"
#include "enhance/inference/TorchModel.h"
#include "enhance/pipeline/SeriesEnhancer.h"
#include "enhance/quality/Metrics.h"

namespace enhance::plugin {
namespace {

using namespace rest;

// A model's domain check, as GET /enhance/models shows it.
Json::Value DomainCheckJson(const DomainCheckSpec& d) {
  Json::Value domain;
  domain["Archive"] = d.archive.filename().string();
  domain["Threshold"] = d.threshold;
  // Series scored on 1, 2, ... slices (fewer than MinSlices): each slice against the
  // nearest of the reference slices, the thresholds by length.
  Json::Value thresholds(Json::arrayValue);
  for (double t : d.shortSeriesThresholds) thresholds.append(t);
  domain["ShortSeriesThresholds"] = thresholds;
  domain["ReferenceSlices"] = static_cast<Json::UInt>(d.shortSeriesSlices.size());
  domain["TrainedOn"] = d.trainedOn;
  // How a series is scored (docs/models.md, "Domain checks").
  domain["Score"] = d.referenceSeries.empty() ? "mean" : "nearest";
  domain["ReferenceSeries"] = static_cast<Json::UInt>(d.referenceSeries.size());
  domain["SliceStep"] = d.sliceStep;
  domain["MinSlices"] = d.minSlices;
  domain["MaxSlices"] = d.maxSlices;
  domain["Downsample"] = d.downsample;
  domain["Crop"] = d.crop;
  Json::Value features(Json::arrayValue);
  for (const ScoredFeature& f : ScoredFeatures(d)) features.append(f.name);
  domain["Features"] = features;
  return domain;
}

Json::Value ModelJson(const Model& model) {
  const ModelSpec& m = model.Info();
  Json::Value entry;
  entry["Name"] = m.name;
  entry["Version"] = m.version;
  entry["Task"] = m.task;
  entry["Modalities"] = Strings(m.modalities);
  entry["Uid"] = m.uid;
  entry["IntendedUse"] = m.intendedUse;
  entry["Parameters"] = model.Parameters();
  entry["Builtin"] = m.archive.empty();
  entry["LearnsFromSeries"] = model.LearnsFromSeries();
  entry["InPlaneScale"] = m.inPlaneScale;
  entry["ThroughPlaneScale"] = m.throughPlaneScale;
  entry["SliceContext"] = m.sliceContext;
  entry["OutputUnits"] = m.outputUnits;
  if (m.hasDomainCheck) entry["DomainCheck"] = DomainCheckJson(m.domainCheck);
  if (const LowPrecisionReport* low = model.LowPrecision()) {
    // What runs, and how far bf16 and int8 are from float on the calibration input.
    Json::Value precision;
    precision["Runs"] = low->runs;
    std::vector<std::string> allowed{"float"};
    if (m.lowPrecision.bf16) allowed.push_back("bf16");
    if (m.lowPrecision.int8) allowed.push_back("int8");
    precision["Allowed"] = Strings(allowed);
    if (low->floatSeconds > 0) precision["FloatMilliseconds"] = 1000 * low->floatSeconds;
    const auto trial = [&](bool compared, double mean, double p999, double meanTolerance,
                           double p999Tolerance, double seconds, const std::string& note) {
      Json::Value t;
      t["Compared"] = compared;
      if (compared) {
        t["MeanDeviation"] = mean;
        t["P999Deviation"] = p999;
        t["MeanTolerance"] = meanTolerance;
        t["P999Tolerance"] = p999Tolerance;
      }
      if (seconds > 0) t["Milliseconds"] = 1000 * seconds;
      if (!note.empty()) t["Note"] = note;
      return t;
    };
    if (m.lowPrecision.bf16) {
      precision["Bf16"] =
          trial(low->compared, low->meanDeviation, low->p999Deviation, m.lowPrecision.meanTolerance,
                m.lowPrecision.p999Tolerance, low->bf16Seconds, low->note);
    }
    if (m.lowPrecision.int8) {
      Json::Value& int8 = precision["Int8"] =
          trial(low->int8.compared, low->int8.meanDeviation, low->int8.p999Deviation,
                m.lowPrecision.int8MeanTolerance, m.lowPrecision.int8P999Tolerance,
                low->int8.seconds, low->int8.note);
      if (low->int8.wideLayers > 0) {
        int8["Layers"] = low->int8.layers;  // wide convolutions in int8, of WideLayers
        int8["WideLayers"] = low->int8.wideLayers;
      }
    }
    entry["Precision"] = precision;
  }
  return entry;
}

Json::Value ProblemsJson(const std::vector<ModelLoadProblem>& problems) {
  Json::Value list(Json::arrayValue);
  for (const auto& p : problems) {
    Json::Value entry;
    entry["Folder"] = p.folder;
    entry["Name"] = p.name;
    entry["Message"] = p.message;
    list.append(entry);
  }
  return list;
}

Json::Value Number(double value) {
  return std::isfinite(value) ? Json::Value(value) : Json::Value(Json::nullValue);
}

Json::Value FiguresJson(const QualityFigures& f) {
  Json::Value v;
  v["PSNR"] = Number(f.psnr);
  v["SSIM"] = Number(f.ssim);
  v["MAE"] = Number(f.mae);
  v["RMSE"] = Number(f.rmse);
  v["Voxels"] = static_cast<Json::Int64>(f.voxels);
  return v;
}

void GetSystem(OrthancPluginRestOutput* output, const char*,
               const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Get, "GET")) return;
  SendJson(output, SystemInformation(Plugin()));
}

void GetModels(OrthancPluginRestOutput* output, const char*,
               const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Get, "GET")) return;
  Json::Value list(Json::arrayValue);
  for (const auto& model : Plugin().models.List()) list.append(ModelJson(*model));
  SendJson(output, list);
}

void ModelOrReload(OrthancPluginRestOutput* output, const char*,
                   const OrthancPluginHttpRequest* request) {
  const std::string name = request->groupsCount > 0 ? request->groups[0] : "";
  if (request->method == OrthancPluginHttpMethod_Post && name == "reload") {
    const ModelLoadReport report = Plugin().ReloadModels();
    Json::Value body;
    body["Loaded"] = Strings(report.loaded);
    body["Problems"] = ProblemsJson(report.problems);
    body["RuleProblems"] = Strings(Plugin().RuleProblems());
    SendJson(output, body);
    return;
  }
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Get, "GET")) return;
  SendJson(output, ModelJson(*Plugin().models.Get(name)));
}

// GET /enhance/series/{id}/domain?Model=NAME: the model's domain check on the series,
// without running the model or storing anything.
void GetSeriesDomain(OrthancPluginRestOutput* output, const char*,
                     const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Get, "GET")) return;
  std::string name;
  for (uint32_t i = 0; i < request->getCount; ++i) {
    if (std::string(request->getKeys[i]) == "Model") {
      name = request->getValues[i];
    } else {
      throw Error(ErrorKind::kBadInput, "unknown argument '" + std::string(request->getKeys[i]) +
                                            "'; GET /enhance/series/{id}/domain takes ?Model=NAME");
    }
  }
  if (name.empty()) {
    throw Error(ErrorKind::kBadInput,
                "name the model whose domain check to run: /enhance/series/{id}/domain?Model=NAME");
  }
  const auto model = Plugin().models.Get(name);
  if (model->Domain() == nullptr) {
    throw Error(ErrorKind::kNotFound,
                "model '" + name + "' has no domain check (no \"domain_check\" in its manifest)");
  }
  const std::string seriesId = request->groups[0];
  OrthancInstanceSource source(Plugin().api, seriesId);
  RunContext context;
  SeriesDomainScorer scorer(*model->Domain(), static_cast<int64_t>(source.ListInstances().size()));
  const DecodedSeries series = FetchSeries(
      source, context, 1.0, nullptr,
      [&](SeriesReader::Added& slice) { scorer.Offer(slice.values, slice.rows, slice.columns); });
  Json::Value body = DomainJson(scorer.Score(), DomainAction::kWarn);
  body.removeMember("Action");
  body["Series"] = seriesId;
  body["Model"] = name;
  body["Modality"] = series.modality;
  SendJson(output, body);
}

std::string SeriesId(const Json::Value& body, const char* key) {
  if (!body.isMember(key) || !body[key].isString() || body[key].asString().empty()) {
    throw Error(ErrorKind::kBadInput,
                std::string("\"") + key + "\" must be the Orthanc ID of a series");
  }
  return body[key].asString();
}

// "Classes" of POST /enhance/evaluate: [{"Name": "bone", "Above": 250}, ...].
std::vector<TissueClass> ParseClasses(const Json::Value& list) {
  const std::string how =
      "\"Classes\" must be a list of {\"Name\", \"Above\", \"Below\"} with a name and at least "
      "one threshold, e.g. [{\"Name\": \"bone\", \"Above\": 250}]";
  if (!list.isArray() || list.empty() || list.size() > 16) {
    throw Error(ErrorKind::kBadInput, how + " (1 to 16 classes)");
  }
  std::vector<TissueClass> classes;
  for (const auto& item : list) {
    if (!item.isObject() || !item["Name"].isString() || item["Name"].asString().empty() ||
        (!item.isMember("Above") && !item.isMember("Below"))) {
      throw Error(ErrorKind::kBadInput, how);
    }
    for (const auto& key : item.getMemberNames()) {
      if (key != "Name" && key != "Above" && key != "Below") {
        throw Error(ErrorKind::kBadInput,
                    "unknown key \"" + Printable(key) + "\" in Classes; " + how);
      }
    }
    TissueClass c;
    c.name = item["Name"].asString();
    for (const char* bound : {"Above", "Below"}) {
      if (!item.isMember(bound)) continue;
      if (!item[bound].isNumeric()) throw Error(ErrorKind::kBadInput, how);
      (std::string(bound) == "Above" ? c.above : c.below) = item[bound].asDouble();
    }
    classes.push_back(c);
  }
  return classes;
}

Json::Value ClassesJson(const std::vector<ClassOverlap>& overlaps) {
  Json::Value list(Json::arrayValue);
  for (const ClassOverlap& o : overlaps) {
    Json::Value item;
    item["Name"] = o.name;
    item["Dice"] = std::isfinite(o.dice) ? Json::Value(o.dice) : Json::Value();
    item["IoU"] = std::isfinite(o.iou) ? Json::Value(o.iou) : Json::Value();
    item["ReferenceVoxels"] = static_cast<Json::Int64>(o.reference);
    item["TestVoxels"] = static_cast<Json::Int64>(o.test);
    item["BothVoxels"] = static_cast<Json::Int64>(o.both);
    list.append(item);
  }
  return list;
}

// POST /enhance/evaluate {"Reference": id, "Test": id, "Window": [low, high],
//                         "DataRange": number, "BodyMask": bool, "Classes": [...]}
void Evaluate(OrthancPluginRestOutput* output, const char*,
              const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Post, "POST")) return;
  const Json::Value body = RequestBody(request);
  CheckKeys(body, {"Reference", "Test", "Window", "DataRange", "BodyMask", "Classes"});
  MetricOptions options;
  if (body.isMember("Window")) {
    const Json::Value& w = body["Window"];
    if (!w.isArray() || w.size() != 2 || !w[0].isNumeric() || !w[1].isNumeric()) {
      throw Error(ErrorKind::kBadInput, "\"Window\" must be [low, high], e.g. [-160, 240]");
    }
    options.windowLow = w[0].asDouble();
    options.windowHigh = w[1].asDouble();
  }
  if (body.isMember("DataRange")) {
    if (!body["DataRange"].isNumeric() || body["DataRange"].asDouble() <= 0) {
      throw Error(ErrorKind::kBadInput, "\"DataRange\" must be a positive number");
    }
    options.dataRange = body["DataRange"].asDouble();
  }
  if (body.isMember("BodyMask")) {
    if (!body["BodyMask"].isBool())
      throw Error(ErrorKind::kBadInput, "\"BodyMask\" must be true or false");
    options.bodyMask = body["BodyMask"].asBool();
  }
  const std::vector<TissueClass> classes =
      body.isMember("Classes") ? ParseClasses(body["Classes"]) : std::vector<TissueClass>();
  const std::string referenceId = SeriesId(body, "Reference");
  const std::string testId = SeriesId(body, "Test");
  OrthancInstanceSource referenceSource(Plugin().api, referenceId);
  OrthancInstanceSource testSource(Plugin().api, testId);
  const DecodedSeries reference = FetchSeries(referenceSource, {});
  const DecodedSeries test = FetchSeries(testSource, {});
  const QualityReport report = CompareVolumes(reference.volume, test.volume, options);

  Json::Value answer;
  answer["Reference"] = referenceId;
  answer["Test"] = testId;
  answer["Units"] = reference.volume.units;
  answer["DataRange"] = report.dataRange;
  if (options.windowLow) {
    answer["Window"].append(*options.windowLow);
    answer["Window"].append(*options.windowHigh);
  }
  answer["BodyMask"] = options.bodyMask;
  answer["Overall"] = FiguresJson(report.overall);
  answer["Slices"] = Json::arrayValue;
  for (const auto& slice : report.slices) answer["Slices"].append(FiguresJson(slice));
  if (!classes.empty()) {
    answer["Classes"] =
        ClassesJson(CompareClasses(reference.volume, test.volume, classes, options));
  }
  SendJson(output, answer);
}

}  // namespace

Json::Value SystemInformation(const PluginContext& plugin) {
  Json::Value info;
  info["Name"] = kPluginName;
  info["Version"] = kPluginVersion;
  info["TorchVersion"] = TorchVersion();
  info["Device"] = EffectiveDevice(plugin.config.device);
  info["Threads"] = TorchThreads();
  info["Enabled"] = plugin.config.enabled;
  info["ConcurrentSeries"] = plugin.config.concurrentSeries;
  Json::Value models(Json::arrayValue);
  for (const auto& model : plugin.models.List()) models.append(ModelJson(*model));
  info["Models"] = models;
  info["ModelProblems"] = ProblemsJson(plugin.models.Problems());
  Json::Value rules(Json::arrayValue);
  for (const auto& rule : plugin.config.rules) rules.append(rule.name);
  info["Rules"] = rules;
  info["RuleProblems"] = Strings(plugin.RuleProblems());
  if (plugin.cluster) {
    info["Cluster"] = plugin.cluster->Status();
  } else {
    info["Cluster"]["Enabled"] = false;
  }
  Json::Value jobs;
  jobs["Submitted"] = static_cast<Json::UInt64>(plugin.metrics.jobsSubmitted.load());
  jobs["Running"] = static_cast<Json::UInt64>(plugin.metrics.jobsRunning.load());
  jobs["Succeeded"] = static_cast<Json::UInt64>(plugin.metrics.jobsSucceeded.load());
  jobs["Failed"] = static_cast<Json::UInt64>(plugin.metrics.jobsFailed.load());
  jobs["Stopped"] = static_cast<Json::UInt64>(plugin.metrics.jobsStopped.load());
  info["Jobs"] = jobs;
  Json::Value series;
  series["AwaitingRouting"] =
      static_cast<Json::UInt64>(plugin.stableSeries.Pending() + plugin.stableSeries.Running());
  series["Skipped"] = static_cast<Json::UInt64>(plugin.metrics.seriesSkipped.load());
  series["SlicesProcessed"] = static_cast<Json::UInt64>(plugin.metrics.slicesProcessed.load());
  info["Series"] = series;
  return info;
}

void RegisterRestRoutes(PluginContext& plugin) {
  SetPlugin(plugin);
  RegisterProcessingRoutes(plugin);
  OrthancPluginContext* context = plugin.api.context();
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/system", Protected<GetSystem>);
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/models", Protected<GetModels>);
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/models/([^/]+)",
                                          Protected<ModelOrReload>);
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/evaluate", Protected<Evaluate>);
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/series/([^/]+)/domain",
                                          Protected<GetSeriesDomain>);
}

}  // namespace enhance::plugin
