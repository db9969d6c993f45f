// SPDX-License-Identifier: GPL-3.0-or-later
//
// The plugin's REST routes under /enhance/. Each handler runs inside one wrapper that
// turns any exception into an HTTP error with a JSON body
// {"HttpStatus", "Message", "Kind", "Uri"}; nothing crosses the C ABI.
#pragma once

#include "PluginContext.h"

namespace enhance::plugin {

void RegisterRestRoutes(PluginContext& plugin);

// The processing routes (RestProcessing.cpp): /enhance/series, /enhance/studies,
// /enhance/retrieve, /enhance/rules.
void RegisterProcessingRoutes(PluginContext& plugin);

// The JSON served by GET /enhance/system.
Json::Value SystemInformation(const PluginContext& plugin);

}  // namespace enhance::plugin
