// SPDX-License-Identifier: GPL-3.0-or-later
//
// Turns a stable series into processing jobs according to Enhance.Rules. Runs on the
// routing queue's thread (never on Orthanc's change thread, which must not call REST).
#pragma once

#include <string>

namespace enhance::plugin {

struct PluginContext;

// Items of the routing queue that are not series IDs.
extern const char* const kRecoverToken;     // route what arrived while the plugin was down
extern const char* const kCheckpointToken;  // advance the checkpoint in the changes log

// Routes a series, or handles a token. Never throws: outcomes are logged and counted.
void RouteStableSeries(PluginContext& plugin, const std::string& seriesId);

}  // namespace enhance::plugin
