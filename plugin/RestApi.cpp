// SPDX-License-Identifier: GPL-3.0-or-later
#include "RestApi.h"

#include "enhance/Error.h"
#include "enhance/Runtime.h"

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

void GetSystem(OrthancPluginRestOutput* output, const char*,
               const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Get, "GET")) return;
  SendJson(output, SystemInformation(*g_plugin));
}

}  // namespace

Json::Value SystemInformation(const PluginContext& plugin) {
  Json::Value info;
  info["Name"] = kPluginName;
  info["Version"] = kPluginVersion;
  info["TorchVersion"] = TorchVersion();
  info["Device"] = DeviceDescription();
  info["Threads"] = TorchThreads();
  info["Enabled"] = plugin.config.enabled;
  info["ConcurrentSeries"] = plugin.config.concurrentSeries;
  Json::Value models(Json::arrayValue);
  for (const auto& model : plugin.models.List()) {
    const ModelInfo& m = model->Info();
    Json::Value entry;
    entry["Name"] = m.name;
    entry["Version"] = m.version;
    entry["Task"] = m.task;
    entry["Uid"] = m.uid;
    entry["Modalities"] = Json::arrayValue;
    for (const auto& modality : m.modalities) entry["Modalities"].append(modality);
    entry["IntendedUse"] = m.intendedUse;
    models.append(entry);
  }
  info["Models"] = models;
  Json::Value rules(Json::arrayValue);
  for (const auto& rule : plugin.config.rules) rules.append(rule.name);
  info["Rules"] = rules;
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
  OrthancPluginRegisterRestCallbackNoLock(plugin.api.context(), "/enhance/system",
                                          Protected<GetSystem>);
}

}  // namespace enhance::plugin
