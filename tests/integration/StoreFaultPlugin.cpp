// SPDX-License-Identifier: GPL-3.0-or-later
//
// Test-only Orthanc plugin: incoming-instance filters that make Orthanc misbehave when
// the enhancement plugin stores a derived series (any instance whose SeriesDescription
// contains "[AI "), the way a full disk, a storage quota or a site's own filter would,
// or that make an Orthanc playing a remote modality refuse what it receives.
//
// Modes, set by the "StoreFault" section of Orthanc's configuration or at run time by
// PUT /enhance-test/store-fault with the same JSON:
//   {"Mode": "off"}                              accept everything
//   {"Mode": "refuse", "After": N}               keep the first N derived instances of each
//                                                series, then discard (Status FilteredOut)
//   {"Mode": "error",  "After": N}               the same, but the filter fails (HTTP error)
//   {"Mode": "delay",  "DelayMs": D}             accept each derived instance after D ms
//   {"Mode": "refuse-cstore", "Status": S}       refuse every instance received by C-STORE
//                                                with DIMSE status S, as a remote PACS would
//                                                (Orthanc 1.10's Lua filters cannot: their
//                                                refusal reaches the sender as a success)
// Never installed; built only for tests/integration.
#include <json/reader.h>
#include <orthanc/OrthancCPlugin.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace {

OrthancPluginContext* g_context = nullptr;

struct Fault {
  std::string mode = "off";
  int after = 0;
  int delayMs = 0;
  int status = 0xA700;  // refuse-cstore: Refused, out of resources
};

std::mutex g_mutex;  // guards the two below: the filter runs on Orthanc's storing threads
Fault g_fault;
std::map<std::string, int> g_seen;  // derived instances seen per SeriesInstanceUID

bool Parse(const char* data, size_t size, Json::Value& value) {
  Json::CharReaderBuilder builder;
  const std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string errors;
  return reader->parse(data, data + size, &value, &errors) && value.isObject();
}

bool SetFault(const Json::Value& value) {
  Fault fault;
  fault.mode = value.get("Mode", "off").asString();
  fault.after = value.get("After", 0).asInt();
  fault.delayMs = value.get("DelayMs", 0).asInt();
  fault.status = value.get("Status", fault.status).asInt();
  if (fault.mode != "off" && fault.mode != "refuse" && fault.mode != "error" &&
      fault.mode != "delay" && fault.mode != "refuse-cstore")
    return false;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_fault = fault;
  g_seen.clear();
  return true;
}

// 1: store, 0: discard, -1: error. Never throws into Orthanc.
int32_t Filter(const OrthancPluginDicomInstance* instance) {
  try {
    char* text = OrthancPluginGetInstanceSimplifiedJson(g_context, instance);
    if (text == nullptr) return 1;
    Json::Value tags;
    const std::string json(text);
    OrthancPluginFreeString(g_context, text);
    if (!Parse(json.data(), json.size(), tags)) return 1;
    if (tags["SeriesDescription"].asString().find("[AI ") == std::string::npos) return 1;

    Fault fault;
    int seen = 0;
    {
      std::lock_guard<std::mutex> lock(g_mutex);
      fault = g_fault;
      seen = ++g_seen[tags["SeriesInstanceUID"].asString()];
    }
    if (fault.mode == "delay") {
      std::this_thread::sleep_for(std::chrono::milliseconds(fault.delayMs));
      return 1;
    }
    if (fault.mode == "refuse" && seen > fault.after) return 0;
    if (fault.mode == "error" && seen > fault.after) return -1;
    return 1;
  } catch (...) {
    return -1;
  }
}

// 1: store, 0: refuse with *dimseStatus. Never throws into Orthanc.
int32_t CStoreFilter(uint16_t* dimseStatus, const OrthancPluginDicomInstance*) {
  try {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_fault.mode != "refuse-cstore") return 1;
    *dimseStatus = static_cast<uint16_t>(g_fault.status);
    return 0;
  } catch (...) {
    return -1;
  }
}

OrthancPluginErrorCode Configure(OrthancPluginRestOutput* output, const char*,
                                 const OrthancPluginHttpRequest* request) {
  try {
    if (request->method != OrthancPluginHttpMethod_Put) {
      OrthancPluginSendMethodNotAllowed(g_context, output, "PUT");
      return OrthancPluginErrorCode_Success;
    }
    Json::Value value;
    if (!Parse(static_cast<const char*>(request->body), request->bodySize, value) ||
        !SetFault(value)) {
      OrthancPluginSendHttpStatusCode(g_context, output, 400);
      return OrthancPluginErrorCode_Success;
    }
    OrthancPluginAnswerBuffer(g_context, output, "{}", 2, "application/json");
    return OrthancPluginErrorCode_Success;
  } catch (...) {
    return OrthancPluginErrorCode_Plugin;
  }
}

}  // namespace

extern "C" {

ORTHANC_PLUGINS_API int32_t OrthancPluginInitialize(OrthancPluginContext* context) {
  g_context = context;
  try {
    char* configuration = OrthancPluginGetConfiguration(context);
    if (configuration != nullptr) {
      const std::string text(configuration);
      OrthancPluginFreeString(context, configuration);
      Json::Value value;
      if (Parse(text.data(), text.size(), value) && value.isMember("StoreFault") &&
          !SetFault(value["StoreFault"])) {
        OrthancPluginLogError(context, "StoreFault: unknown mode");
        return -1;
      }
    }
  } catch (...) {
    return -1;
  }
  OrthancPluginRegisterIncomingDicomInstanceFilter(context, Filter);
  OrthancPluginRegisterIncomingCStoreInstanceFilter(context, CStoreFilter);
  OrthancPluginRegisterRestCallback(context, "/enhance-test/store-fault", Configure);
  return 0;
}

ORTHANC_PLUGINS_API void OrthancPluginFinalize() {}

ORTHANC_PLUGINS_API const char* OrthancPluginGetName() { return "enhance-store-fault"; }

ORTHANC_PLUGINS_API const char* OrthancPluginGetVersion() { return "0"; }
}
