// SPDX-License-Identifier: GPL-3.0-or-later
//
// Turns a stable series into processing jobs according to Enhance.Rules. Runs on the
// routing queue's thread (never on Orthanc's change thread, which must not call REST).
#pragma once

#include <string>

#include <json/value.h>

#include "JobRequest.h"
#include "SeriesRouting.h"

namespace enhance::plugin {

struct PluginContext;

// Items of the routing queue that are not series IDs.
extern const char* const kRecoverToken;     // route what arrived while the plugin was down
extern const char* const kCheckpointToken;  // advance the checkpoint in the changes log

// Routes a series, or handles a token. Never throws: outcomes are logged and counted.
void RouteStableSeries(PluginContext& plugin, const std::string& seriesId);

// The job a rule asks for on a series.
JobRequest RequestForRule(const RoutingRule& rule, const std::string& seriesId,
                          const SeriesFacts& facts);

// The facts the rules look at for a series (its JSON from GET /series/{id}), read from
// one of its instances' tags and metadata (sender and called AE titles), as a stable
// series and an instance still arriving (early start) are both routed. Throws
// OrthancApiError when Orthanc cannot answer.
SeriesFacts ReadSeriesFacts(const PluginContext& plugin, const Json::Value& series,
                            const std::string& instanceId);

}  // namespace enhance::plugin
