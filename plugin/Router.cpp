// SPDX-License-Identifier: GPL-3.0-or-later
#include "Router.h"

#include "Jobs.h"
#include "PluginContext.h"
#include "SeriesRouting.h"

namespace enhance::plugin {

void RouteStableSeries(PluginContext& plugin, const std::string& seriesId) {
  try {
    Json::Value series;
    try {
      series = plugin.api.GetJson("/series/" + seriesId);
    } catch (const OrthancApiError& e) {
      if (e.code() == OrthancPluginErrorCode_UnknownResource) return;  // deleted meanwhile
      throw;
    }
    if (!series["Instances"].isArray() || series["Instances"].empty()) return;
    const std::string first = series["Instances"][0].asString();
    const SeriesFacts facts =
        ExtractSeriesFacts(series, plugin.api.GetJson("/instances/" + first + "/simplified-tags"),
                           plugin.api.GetJson("/instances/" + first + "/metadata?expand"));
    const RoutingDecision decision = Route(plugin.config, facts);
    if (decision.rules.empty()) {
      plugin.metrics.seriesSkipped++;
      plugin.PublishMetrics();
      plugin.api.LogInfo("series " + seriesId + " not processed: " + decision.reason);
      return;
    }
    for (const RoutingRule* rule : decision.rules) {
      JobRequest request;
      request.seriesId = seriesId;
      request.task = rule->task;
      request.model = rule->model;
      request.options = rule->options;
      request.destinations = rule->destinations;
      request.senderAet = facts.callingAet;
      request.priority = rule->priority;
      request.origin = "rule '" + rule->name + "'";
      const std::string job = SubmitSeriesJob(plugin, request);
      plugin.api.LogInfo("series " + seriesId + ": " + decision.reason + "; job " + job +
                         " submitted");
    }
  } catch (const std::exception& e) {
    plugin.api.LogError("series " + seriesId + ": routing failed: " + e.what());
  } catch (...) {
    plugin.api.LogError("series " + seriesId + ": routing failed");
  }
}

}  // namespace enhance::plugin
