// SPDX-License-Identifier: GPL-3.0-or-later
#include "Router.h"

#include "ChangeLog.h"
#include "Jobs.h"
#include "PluginContext.h"
#include "SeriesRouting.h"

namespace enhance::plugin {

const char* const kRecoverToken = "!recover";
const char* const kCheckpointToken = "!checkpoint";

namespace {

// Global property holding the checkpoint in Orthanc's changes log (plugins use >= 1024).
constexpr int32_t kCheckpointProperty = 5601;

int64_t LastChange(const OrthancApi& api) { return api.GetJson("/changes?last")["Last"].asInt64(); }

// All changes after `since` (paged), and the log's last sequence number.
Json::Value ChangesSince(const OrthancApi& api, int64_t since, int64_t& last) {
  Json::Value all(Json::arrayValue);
  while (true) {
    const Json::Value page = api.GetJson("/changes?since=" + std::to_string(since) + "&limit=1000");
    for (const auto& change : page["Changes"]) all.append(change);
    last = page["Last"].asInt64();
    if (page["Done"].asBool() || page["Changes"].empty()) return all;
    since = last;
  }
}

std::string ReadCheckpoint(const OrthancApi& api) {
  char* value = OrthancPluginGetGlobalProperty(api.context(), kCheckpointProperty, "");
  std::string text = value ? value : "";
  if (value) OrthancPluginFreeString(api.context(), value);
  return text;
}

void WriteCheckpoint(const OrthancApi& api, int64_t seq) {
  OrthancPluginSetGlobalProperty(api.context(), kCheckpointProperty, std::to_string(seq).c_str());
}

void Recover(PluginContext& plugin) {
  const std::string saved = ReadCheckpoint(plugin.api);
  if (saved.empty()) {  // first start with this database: history is not ours to process
    WriteCheckpoint(plugin.api, LastChange(plugin.api));
    return;
  }
  int64_t last = 0;
  const int64_t checkpoint = std::stoll(saved);
  const Json::Value changes = ChangesSince(plugin.api, checkpoint, last);  // sets `last`
  const ChangeScan scan = ScanChanges(changes, checkpoint, last);
  if (!scan.series.empty()) {
    plugin.api.LogWarning(
        "routing " + std::to_string(scan.series.size()) +
        " series that arrived or became stable while the plugin could not route them");
  }
  for (const auto& id : scan.series) plugin.stableSeries.Push(id);
  plugin.stableSeries.Push(kCheckpointToken);
}

void AdvanceCheckpoint(PluginContext& plugin) {
  // Series the broker has not taken yet stay behind the checkpoint, so that a restart
  // publishes them again.
  if (plugin.cluster && plugin.cluster->Unpublished() > 0) return;
  const std::string saved = ReadCheckpoint(plugin.api);
  const int64_t checkpoint = saved.empty() ? 0 : std::stoll(saved);
  int64_t last = 0;
  const Json::Value changes = ChangesSince(plugin.api, checkpoint, last);  // sets `last`
  const ChangeScan scan = ScanChanges(changes, checkpoint, last);
  if (scan.safeCheckpoint != checkpoint) WriteCheckpoint(plugin.api, scan.safeCheckpoint);
}

void Route(PluginContext& plugin, const std::string& seriesId);

}  // namespace

SeriesFacts ReadSeriesFacts(const PluginContext& plugin, const Json::Value& series,
                            const std::string& instanceId) {
  return ExtractSeriesFacts(series,
                            plugin.api.GetJson("/instances/" + instanceId + "/simplified-tags"),
                            plugin.api.GetJson("/instances/" + instanceId + "/metadata?expand"));
}

JobRequest RequestForRule(const RoutingRule& rule, const std::string& seriesId,
                          const SeriesFacts& facts) {
  JobRequest request;
  request.seriesId = seriesId;
  request.task = rule.task;
  request.model = rule.model;
  request.options = rule.options;
  request.destinations = rule.destinations;
  request.senderAet = facts.callingAet;
  request.priority = rule.priority;
  request.origin = "rule '" + rule.name + "'";
  return request;
}

void RouteStableSeries(PluginContext& plugin, const std::string& item) {
  try {
    if (item == kRecoverToken) {
      Recover(plugin);
    } else if (item == kCheckpointToken) {
      AdvanceCheckpoint(plugin);
    } else {
      Route(plugin, item);
      // Once the queue is drained, what was routed is safe behind the checkpoint.
      if (plugin.stableSeries.Pending() == 0) plugin.stableSeries.Push(kCheckpointToken);
    }
  } catch (const std::exception& e) {
    plugin.api.LogError("routing: " + item + ": " + e.what());
  } catch (...) {
    plugin.api.LogError("routing: " + item + " failed");
  }
}

namespace {

void Route(PluginContext& plugin, const std::string& seriesId) {
  try {
    Json::Value series;
    try {
      series = plugin.api.GetJson("/series/" + seriesId);
    } catch (const OrthancApiError& e) {
      if (e.code() == OrthancPluginErrorCode_UnknownResource) return;  // deleted meanwhile
      throw;
    }
    if (!series["Instances"].isArray() || series["Instances"].empty()) return;
    // Still arriving: its StableSeries event will route it.
    if (series["IsStable"].isBool() && !series["IsStable"].asBool()) return;
    const SeriesFacts facts = ReadSeriesFacts(plugin, series, series["Instances"][0].asString());
    const RoutingDecision decision = Route(plugin.config, facts);
    if (decision.rules.empty()) {
      plugin.metrics.seriesSkipped++;
      plugin.PublishMetrics();
      plugin.api.LogInfo("series " + seriesId + " not processed: " + decision.reason);
      return;
    }
    if (plugin.cluster) {  // any node of the cluster processes it, once
      plugin.cluster->Announce(seriesId);
      plugin.api.LogInfo("series " + seriesId + ": " + decision.reason +
                         "; published for the cluster");
      return;
    }
    for (const RoutingRule* rule : decision.rules) {
      const JobRequest request = RequestForRule(*rule, seriesId, facts);
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

}  // namespace

}  // namespace enhance::plugin
