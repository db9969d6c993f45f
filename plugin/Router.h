// SPDX-License-Identifier: GPL-3.0-or-later
//
// Turns a stable series into processing jobs according to Enhance.Rules. Runs on the
// routing queue's thread (never on Orthanc's change thread, which must not call REST).
#pragma once

#include <string>

namespace enhance::plugin {

struct PluginContext;

// Never throws: outcomes are logged and counted.
void RouteStableSeries(PluginContext& plugin, const std::string& seriesId);

}  // namespace enhance::plugin
