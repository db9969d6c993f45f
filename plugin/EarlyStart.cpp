// SPDX-License-Identifier: GPL-3.0-or-later
#include "EarlyStart.h"

#include <set>

#include "JobRequest.h"
#include "OrthancFrameDecoder.h"
#include "PluginContext.h"
#include "Router.h"
#include "SeriesRouting.h"
#include "enhance/pipeline/SeriesEnhancer.h"

namespace enhance::plugin {

void PrecomputeStoredInstance(PluginContext& plugin, const std::string& instanceId,
                              const std::atomic<bool>& stopping) {
  SliceCache* cache = plugin.earlySlices.get();
  if (!cache || stopping) return;
  try {
    Json::Value series;
    try {
      series = plugin.api.GetJson("/instances/" + instanceId + "/series");
    } catch (const OrthancApiError& e) {
      if (e.code() == OrthancPluginErrorCode_UnknownResource) return;  // deleted meanwhile
      throw;
    }
    // A stable series is routed, and processed, as a whole.
    if (series["IsStable"].isBool() && series["IsStable"].asBool()) return;
    const std::string seriesUid = series["MainDicomTags"]["SeriesInstanceUID"].asString();
    if (cache->Started(seriesUid)) return;

    const RoutingDecision decision =
        Route(plugin.config, ReadSeriesFacts(plugin, series, instanceId));
    std::set<std::string> done;
    for (const RoutingRule* rule : decision.rules) {
      const auto model = plugin.models.Find(rule->model);
      // A slice computed early carries no uncertainty: when the job wants the map, it
      // computes every slice itself.
      if (!model || model->Info().task != rule->task || !model->TakesPrecomputedSlices() ||
          (model->ProducesUncertainty() && UncertaintyWanted(rule->options)) ||
          !done.insert(model->Info().uid).second) {
        continue;
      }
      RunContext context;
      context.cancelled = [&] { return stopping.load() || cache->Started(seriesUid); };
      const OrthancFrameDecoder decoder(plugin.api.context());
      PrecomputeInstance({instanceId, plugin.api.Get("/instances/" + instanceId + "/file")},
                         "series " + series["ID"].asString() + ", instance " + instanceId, &decoder,
                         *model, *cache, context);
    }
  } catch (const std::exception& e) {
    // The series' job meets the same problem and reports it; here it only costs time.
    plugin.api.LogInfo("early start: instance " + instanceId + " left to its job: " + e.what());
  } catch (...) {
    plugin.api.LogInfo("early start: instance " + instanceId + " left to its job");
  }
}

}  // namespace enhance::plugin
