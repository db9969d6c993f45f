// SPDX-License-Identifier: GPL-3.0-or-later
#include "RestApi.h"

#include <cmath>

#include "OrthancInstanceSource.h"
#include "enhance/Error.h"
#include "enhance/Metrics.h"
#include "enhance/Runtime.h"
#include "enhance/SeriesEnhancer.h"
#include "enhance/TorchModel.h"

namespace enhance::plugin {
namespace {

PluginContext* g_plugin = nullptr;  // set once before the routes are registered

int HttpStatusFor(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kBadInput:
    case ErrorKind::kUnsupported:
      return 400;
    case ErrorKind::kNotFound:
      return 404;
    case ErrorKind::kCancelled:
      return 409;
    case ErrorKind::kInternal:
      return 500;
  }
  return 500;
}

void SendJson(OrthancPluginRestOutput* output, const Json::Value& body) {
  const std::string text = WriteJson(body);
  OrthancPluginAnswerBuffer(g_plugin->api.context(), output, text.data(),
                            static_cast<uint32_t>(text.size()), "application/json");
}

void SendError(OrthancPluginRestOutput* output, const char* url, int status,
               const std::string& kind, const std::string& message) {
  Json::Value body;
  body["HttpStatus"] = status;
  body["Kind"] = kind;
  body["Message"] = message;
  body["Uri"] = url;
  const std::string text = WriteJson(body);
  OrthancPluginSendHttpStatus(g_plugin->api.context(), output, static_cast<uint16_t>(status),
                              text.data(), static_cast<uint32_t>(text.size()));
}

using Handler = void (*)(OrthancPluginRestOutput*, const char*, const OrthancPluginHttpRequest*);

// The single place where exceptions from a route become HTTP answers.
template <Handler handler>
OrthancPluginErrorCode Protected(OrthancPluginRestOutput* output, const char* url,
                                 const OrthancPluginHttpRequest* request) {
  try {
    handler(output, url, request);
    return OrthancPluginErrorCode_Success;
  } catch (const Error& e) {
    try {
      SendError(output, url, HttpStatusFor(e.kind()), ToString(e.kind()), e.what());
      return OrthancPluginErrorCode_Success;
    } catch (...) {
    }
  } catch (const std::exception& e) {
    try {
      g_plugin->api.LogError(std::string(url) + ": " + e.what());
      SendError(output, url, 500, ToString(ErrorKind::kInternal), e.what());
      return OrthancPluginErrorCode_Success;
    } catch (...) {
    }
  } catch (...) {
  }
  return OrthancPluginErrorCode_Plugin;
}

bool AllowOnly(OrthancPluginRestOutput* output, const OrthancPluginHttpRequest* request,
               OrthancPluginHttpMethod method, const char* allowed) {
  if (request->method == method) return true;
  OrthancPluginSendMethodNotAllowed(g_plugin->api.context(), output, allowed);
  return false;
}

Json::Value RequestBody(const OrthancPluginHttpRequest* request) {
  const std::string text(static_cast<const char*>(request->body), request->bodySize);
  try {
    return ParseJson(text.empty() ? "{}" : text, "the request body");
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kBadInput, e.what());
  }
}

Json::Value Strings(const std::vector<std::string>& items) {
  Json::Value list(Json::arrayValue);
  for (const auto& item : items) list.append(item);
  return list;
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
  entry["InPlaneScale"] = m.inPlaneScale;
  entry["ThroughPlaneScale"] = m.throughPlaneScale;
  entry["SliceContext"] = m.sliceContext;
  entry["OutputUnits"] = m.outputUnits;
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
  SendJson(output, SystemInformation(*g_plugin));
}

void GetModels(OrthancPluginRestOutput* output, const char*,
               const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Get, "GET")) return;
  Json::Value list(Json::arrayValue);
  for (const auto& model : g_plugin->models.List()) list.append(ModelJson(*model));
  SendJson(output, list);
}

void ModelOrReload(OrthancPluginRestOutput* output, const char*,
                   const OrthancPluginHttpRequest* request) {
  const std::string name = request->groupsCount > 0 ? request->groups[0] : "";
  if (request->method == OrthancPluginHttpMethod_Post && name == "reload") {
    const ModelLoadReport report = g_plugin->ReloadModels();
    Json::Value body;
    body["Loaded"] = Strings(report.loaded);
    body["Problems"] = ProblemsJson(report.problems);
    body["RuleProblems"] = Strings(g_plugin->RuleProblems());
    SendJson(output, body);
    return;
  }
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Get, "GET")) return;
  SendJson(output, ModelJson(*g_plugin->models.Get(name)));
}

std::string SeriesId(const Json::Value& body, const char* key) {
  if (!body.isMember(key) || !body[key].isString() || body[key].asString().empty()) {
    throw Error(ErrorKind::kBadInput,
                std::string("\"") + key + "\" must be the Orthanc ID of a series");
  }
  return body[key].asString();
}

// POST /enhance/evaluate {"Reference": id, "Test": id, "Window": [low, high],
//                         "DataRange": number, "BodyMask": bool}
void Evaluate(OrthancPluginRestOutput* output, const char*,
              const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Post, "POST")) return;
  const Json::Value body = RequestBody(request);
  if (!body.isObject()) throw Error(ErrorKind::kBadInput, "the request body must be a JSON object");
  for (const auto& key : body.getMemberNames()) {
    if (key != "Reference" && key != "Test" && key != "Window" && key != "DataRange" &&
        key != "BodyMask") {
      throw Error(ErrorKind::kBadInput,
                  "unknown key \"" + key +
                      "\"; known keys are Reference, Test, Window, DataRange, BodyMask");
    }
  }
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
  const std::string referenceId = SeriesId(body, "Reference");
  const std::string testId = SeriesId(body, "Test");
  OrthancInstanceSource referenceSource(g_plugin->api, referenceId);
  OrthancInstanceSource testSource(g_plugin->api, testId);
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
  Json::Value queue;
  queue["Pending"] = static_cast<Json::UInt64>(plugin.queue.Pending());
  queue["Running"] = static_cast<Json::UInt64>(plugin.queue.Running());
  queue["Succeeded"] = static_cast<Json::UInt64>(plugin.processor.counters().succeeded.load());
  queue["Failed"] = static_cast<Json::UInt64>(plugin.processor.counters().failed.load());
  queue["Skipped"] = static_cast<Json::UInt64>(plugin.processor.counters().skipped.load());
  info["Series"] = queue;
  return info;
}

void RegisterRestRoutes(PluginContext& plugin) {
  g_plugin = &plugin;
  OrthancPluginContext* context = plugin.api.context();
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/system", Protected<GetSystem>);
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/models", Protected<GetModels>);
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/models/([^/]+)",
                                          Protected<ModelOrReload>);
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/evaluate", Protected<Evaluate>);
}

}  // namespace enhance::plugin
