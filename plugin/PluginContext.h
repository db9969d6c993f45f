// SPDX-License-Identifier: GPL-3.0-or-later
//
// Everything the plugin holds between OrthancPluginInitialize and OrthancPluginFinalize.
// Created once in Initialize before any callback is registered and destroyed in
// Finalize after Orthanc stopped calling them, so callbacks may use it without locking;
// its members state their own thread-safety.
#pragma once

#include <memory>
#include <string>

#include "OrthancApi.h"
#include "PluginConfiguration.h"
#include "SeriesProcessor.h"
#include "WorkQueue.h"
#include "enhance/ModelRegistry.h"

namespace enhance::plugin {

struct PluginContext {
  PluginContext(OrthancPluginContext* context, PluginConfiguration configuration);

  OrthancApi api;
  const PluginConfiguration config;
  ModelRegistry models;
  SeriesProcessor processor;
  WorkQueue queue;
};

extern const char* const kPluginName;
extern const char* const kPluginVersion;

}  // namespace enhance::plugin
