// SPDX-License-Identifier: GPL-3.0-or-later
//
// Everything the plugin holds between OrthancPluginInitialize and OrthancPluginFinalize.
// Created once in Initialize before any callback is registered and destroyed in
// Finalize after Orthanc stopped calling them, so callbacks may use it without locking;
// its members state their own thread-safety.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "OrthancApi.h"
#include "PluginConfiguration.h"
#include "SeriesProcessor.h"
#include "WorkQueue.h"
#include "enhance/ModelRegistry.h"

namespace enhance::plugin {

struct PluginContext {
  PluginContext(OrthancPluginContext* context, PluginConfiguration configuration);

  // (Re)loads the models of Enhance.ModelsDirectories and logs what happened.
  // Serialised: two reloads never run at once; jobs keep the models they hold.
  ModelLoadReport ReloadModels();

  // Problems of the rules with the models now loaded, one message per rule at fault.
  std::vector<std::string> RuleProblems() const;

  OrthancApi api;
  const PluginConfiguration config;
  const InferenceOptions inference;
  ModelRegistry models;
  SeriesProcessor processor;
  WorkQueue queue;

 private:
  std::mutex reloadMutex_;
};

extern const char* const kPluginName;
extern const char* const kPluginVersion;

}  // namespace enhance::plugin
