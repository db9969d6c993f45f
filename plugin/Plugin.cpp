// SPDX-License-Identifier: GPL-3.0-or-later
//
// The four entry points Orthanc calls, and the change callback. Nothing here may let an
// exception escape into Orthanc: each entry point catches everything.
#include <orthanc/OrthancCPlugin.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <thread>

#include "ExplorerExtension.h"
#include "Jobs.h"
#include "PluginContext.h"
#include "RestApi.h"
#include "Router.h"
#include "enhance/base/Error.h"
#include "enhance/dicom/DicomCodecs.h"
#include "enhance/inference/Runtime.h"
#include "enhance/inference/TorchModel.h"

namespace enhance::plugin {

const char* const kPluginName = "enhance";
const char* const kPluginVersion = ENHANCE_VERSION;

namespace {

std::unique_ptr<PluginContext> g_plugin;

// Enqueue only: the SDK forbids slow work and REST calls on this thread.
OrthancPluginErrorCode OnChange(OrthancPluginChangeType change, OrthancPluginResourceType type,
                                const char* resourceId) {
  try {
    if (!g_plugin) return OrthancPluginErrorCode_Success;
    switch (change) {
      case OrthancPluginChangeType_OrthancStarted:
        if (g_plugin->cluster) g_plugin->cluster->Start();
        g_plugin->stableSeries.Start();
        g_plugin->stableSeries.Push(kRecoverToken);
        if (g_plugin->earlySlices) g_plugin->storedInstances.Start();
        break;
      case OrthancPluginChangeType_OrthancStopped:
        g_plugin->storedInstances.Stop();
        g_plugin->stableSeries.Stop();
        if (g_plugin->cluster) g_plugin->cluster->Stop();
        break;
      case OrthancPluginChangeType_StableSeries:
        if (type == OrthancPluginResourceType_Series && resourceId != nullptr) {
          g_plugin->stableSeries.Push(resourceId);
        }
        break;
      default:
        break;
    }
    return OrthancPluginErrorCode_Success;
  } catch (...) {
    return OrthancPluginErrorCode_InternalError;
  }
}

// Enqueue only, for the early start; a long backlog is not worth computing ahead.
OrthancPluginErrorCode OnStoredInstance(const OrthancPluginDicomInstance* /*instance*/,
                                        const char* instanceId) {
  try {
    if (g_plugin && g_plugin->earlySlices && instanceId != nullptr &&
        g_plugin->storedInstances.Pending() < 100000) {
      g_plugin->storedInstances.Push(instanceId);
    }
    return OrthancPluginErrorCode_Success;
  } catch (...) {
    return OrthancPluginErrorCode_Success;  // the early start is an optimisation only
  }
}

// A rule naming a model that no folder declares is a typo: refuse to start. A model that
// exists but failed to load only disables its rules, so Orthanc still starts.
void CheckRuleModelsExist(const PluginContext& plugin) {
  for (const auto& rule : plugin.config.rules) {
    if (plugin.models.Find(rule.model)) continue;
    bool declared = false;
    for (const auto& problem : plugin.models.Problems())
      declared = declared || problem.name == rule.model;
    if (!declared) {
      std::string available;
      for (const auto& m : plugin.models.List())
        available += (available.empty() ? "" : ", ") + m->Info().name;
      throw Error(ErrorKind::kBadInput, "configuration Enhance.Rules '" + rule.name +
                                            "': unknown model '" + rule.model +
                                            "'; available models: " + available);
    }
  }
}

}  // namespace
}  // namespace enhance::plugin

extern "C" {

ORTHANC_PLUGINS_API int32_t OrthancPluginInitialize(OrthancPluginContext* context) {
  using namespace enhance::plugin;
  try {
    if (!OrthancPluginCheckVersion(context)) {
      OrthancPluginLogError(
          context, "Enhance: this Orthanc is too old for the plugin (1.10.1 or later is needed)");
      return -1;
    }
    OrthancPluginSetDescription(
        context,
        "Orthanc Enhance: AI enhancement of CT and MR series (denoising, super-resolution, "
        "synthetic CT) as new derived series in the same study.");
    const OrthancApi api(context);
    const Json::Value orthancConfiguration = api.Configuration();
    PluginConfiguration configuration = ParseConfiguration(orthancConfiguration);
    // Without an explicit thread count, the cores are shared between the series that may
    // run at once, so that concurrent inferences do not oversubscribe the CPU.
    int threads = configuration.threads;
    if (threads == 0) {
      threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                configuration.concurrentSeries);
    }
    enhance::ConfigureRuntime({threads});
    enhance::RegisterDicomCodecs();

    g_plugin = std::make_unique<PluginContext>(context, std::move(configuration),
                                               ReadForwardingContext(orthancConfiguration));
    // On a job thread: the models' and domain checks' runs at load set LibTorch and oneDNN
    // up on it, which the first job would otherwise pay for (ThreadCache.h).
    std::exception_ptr loadFailure;
    g_plugin->jobThreads
        .Run([&loadFailure] {
          try {
            g_plugin->ReloadModels();
          } catch (...) {
            loadFailure = std::current_exception();
          }
        })
        .Wait();
    if (loadFailure) std::rethrow_exception(loadFailure);
    CheckRuleModelsExist(*g_plugin);
    RegisterJobsUnserializer(*g_plugin);
    RegisterRestRoutes(*g_plugin);
    OrthancPluginExtendOrthancExplorer(context, reinterpret_cast<const char*>(kExplorerExtension));
    if (g_plugin->config.enabled) {
      OrthancPluginRegisterOnChangeCallback(context, OnChange);
      OrthancPluginRegisterOnStoredInstanceCallback(context, OnStoredInstance);
    }
    api.LogWarning(
        std::string("version ") + kPluginVersion + ", LibTorch " + enhance::TorchVersion() +
        ", device " + enhance::EffectiveDevice(g_plugin->config.device) + ", " +
        std::to_string(enhance::TorchThreads()) + " threads, " +
        std::to_string(g_plugin->config.rules.size()) + " routing rule(s)" +
        (g_plugin->config.enabled ? "" : "; automatic processing disabled (Enhance.Enable)") +
        (g_plugin->cluster ? "; cluster node " + g_plugin->config.cluster.node : "") +
        (g_plugin->config.simulatedDeviceMemoryMb > 0
             ? "; Enhance.SimulatedDeviceMemoryMB: the device is taken to have " +
                   std::to_string(g_plugin->config.simulatedDeviceMemoryMb) + " MB (testing only)"
             : ""));
    return 0;
  } catch (const std::exception& e) {
    OrthancPluginLogError(context, (std::string("Enhance: cannot start: ") + e.what()).c_str());
  } catch (...) {
    OrthancPluginLogError(context, "Enhance: cannot start: unknown error");
  }
  g_plugin.reset();
  return -1;
}

ORTHANC_PLUGINS_API void OrthancPluginFinalize() {
  try {
    if (enhance::plugin::g_plugin) {
      enhance::plugin::g_plugin->stableSeries.Stop();
      if (enhance::plugin::g_plugin->cluster) enhance::plugin::g_plugin->cluster->Stop();
    }
    enhance::plugin::g_plugin.reset();
  } catch (...) {
  }
}

ORTHANC_PLUGINS_API const char* OrthancPluginGetName() { return enhance::plugin::kPluginName; }

ORTHANC_PLUGINS_API const char* OrthancPluginGetVersion() {
  return enhance::plugin::kPluginVersion;
}

}  // extern "C"
