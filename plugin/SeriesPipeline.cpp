// SPDX-License-Identifier: GPL-3.0-or-later
#include "SeriesPipeline.h"

#include <algorithm>
#include <chrono>

#include "Forwarder.h"
#include "OrthancInstanceSource.h"
#include "PluginContext.h"
#include "enhance/Error.h"
#include "enhance/SeriesEnhancer.h"

namespace enhance::plugin {
namespace {

// Progress bar: processing up to 90%, storing to 95%, forwarding to 100%.
constexpr double kProcessingShare = 0.90;
constexpr double kStoringShare = 0.05;

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The Orthanc ID of the series with this SeriesInstanceUID, or "".
std::string LookupSeries(const OrthancApi& api, const std::string& seriesUid) {
  const Json::Value found = api.PostJson("/tools/lookup", seriesUid);
  for (const auto& item : found) {
    if (item["Type"].isString() && item["Type"].asString() == "Series")
      return item["ID"].asString();
  }
  return "";
}

// Stores every file, or none: on any failure, and when Orthanc does not keep an instance
// (an incoming-instance filter, a storage limit), the instances already stored are
// deleted. Only instances of this derived series are ever deleted.
std::string Publish(PluginContext& plugin, const JobRequest& request, const EnhancedSeries& result,
                    JobState& state, const std::atomic<bool>& cancel) {
  std::vector<std::string> stored;
  std::string derivedSeriesId;
  const size_t total = result.files.size();
  try {
    for (size_t i = 0; i < total; ++i) {
      if (cancel) throw Error(ErrorKind::kCancelled, "cancelled while storing the derived series");
      const std::string which =
          "derived instance " + std::to_string(i + 1) + " of " + std::to_string(total);
      Json::Value answer;
      try {
        answer = plugin.api.PostJson("/instances", result.files[i]);
      } catch (const std::exception& e) {
        throw Error(ErrorKind::kInternal, "Orthanc could not store " + which + ": " + e.what());
      }
      // "Success", or "AlreadyStored" when a former run of this request stored it; a
      // filtered-out instance comes back with an ID but is not in Orthanc.
      const std::string status = answer["Status"].asString();
      if (status != "Success" && status != "AlreadyStored") {
        throw Error(ErrorKind::kInternal,
                    "Orthanc did not keep " + which + " (status " +
                        (status.empty() ? std::string("none") : status) +
                        "): an incoming-instance filter or a storage limit refused it");
      }
      if (!answer["ID"].isString()) {
        throw Error(ErrorKind::kInternal, "Orthanc did not return an ID for " + which);
      }
      stored.push_back(answer["ID"].asString());
      if (answer["ParentSeries"].isString()) derivedSeriesId = answer["ParentSeries"].asString();
      state.SetProgress(kProcessingShare +
                        kStoringShare * static_cast<double>(i + 1) / static_cast<double>(total));
    }
  } catch (const std::exception& e) {
    size_t removed = 0;
    for (const auto& id : stored) {
      try {
        plugin.api.Delete("/instances/" + id);
        ++removed;
      } catch (const std::exception& cleanup) {
        plugin.api.LogError("series " + request.seriesId +
                            ": could not remove partial derived instance " + id + ": " +
                            cleanup.what());
      }
    }
    const std::string kept = removed == stored.size()
                                 ? "; nothing of the derived series was kept (" +
                                       std::to_string(removed) +
                                       " instance(s) stored before were removed)"
                                 : "; " + std::to_string(stored.size() - removed) +
                                       " instance(s) of the derived series could not be removed";
    const auto* error = dynamic_cast<const Error*>(&e);
    if (error && error->kind() == ErrorKind::kCancelled) throw *error;
    throw Error(
        error ? error->kind() : ErrorKind::kInternal,
        "storing the derived series of series " + request.seriesId + " failed: " + e.what() + kept);
  }
  return derivedSeriesId;
}

}  // namespace

void RunSeriesPipeline(PluginContext& plugin, const JobRequest& request, JobState& state,
                       const std::atomic<bool>& cancel) {
  const auto start = std::chrono::steady_clock::now();
  OrthancInstanceSource source(plugin.api, request.seriesId);
  const auto model = plugin.models.Get(request.model);
  const ModelSpec& spec = model->Info();
  if (spec.task != request.task) {
    throw Error(ErrorKind::kBadInput,
                "model '" + spec.name + "' performs " + spec.task + ", not " + request.task);
  }
  state.Set("ModelVersion", spec.version);
  state.Set("ModelUid", spec.uid);
  const std::string sourceUid = source.series()["MainDicomTags"]["SeriesInstanceUID"].asString();
  const std::string derivedUid =
      DerivedSeriesUid(request, sourceUid, spec.uid, plugin.config.uidRoot);
  // Another job making the same series (same request) finishes first; this one then
  // finds its series complete.
  if (plugin.derivedSeries.IsHeld(derivedUid)) {
    state.Set("Stage", "waiting for another job making the same derived series");
  }
  const KeyedLockGuard sameSeries(plugin.derivedSeries, derivedUid, &cancel);
  const size_t sourceCount = source.ListInstances().size();
  const size_t expected = spec.throughPlaneScale > 1 ? 2 * sourceCount - 1 : sourceCount;
  state.Set("SourceInstances", static_cast<Json::UInt64>(sourceCount));

  std::string derivedId = LookupSeries(plugin.api, derivedUid);
  if (!derivedId.empty()) {
    const size_t have = plugin.api.GetJson("/series/" + derivedId)["Instances"].size();
    if (have == expected) {
      state.Set("AlreadyProcessed", true);
      plugin.api.LogInfo("series " + request.seriesId + ": already processed as series " +
                         derivedId);
    } else {
      // Left by an interrupted run: it carries this request's own UID, so it is ours.
      plugin.api.LogWarning("series " + request.seriesId + ": removing incomplete derived series " +
                            derivedId + " (" + std::to_string(have) + " of " +
                            std::to_string(expected) + " instances) before processing again");
      plugin.api.Delete("/series/" + derivedId);
      derivedId.clear();
    }
  }

  std::vector<std::string> files;          // the derived series' files, for forwarding
  Json::Value timings(Json::objectValue);  // seconds per stage, in the job's content
  if (derivedId.empty()) {
    SlotGuard slot(plugin.processingSlots, &cancel, "a processing slot");
    state.Set("Stage", "processing");
    OutputOptions output;
    output.seriesDescriptionSuffix = plugin.config.SuffixFor(request.task);
    output.seriesNumberOffset = plugin.config.SeriesNumberOffsetFor(request.task);
    output.uidRoot = plugin.config.uidRoot;
    output.seriesInstanceUid = derivedUid;
    output.softwareVersion = kPluginVersion;
    RunContext context;
    context.cancelled = [&cancel] { return cancel.load(); };
    context.progress = [&](double f) { state.SetProgress(kProcessingShare * f); };
    context.warning = [&](const std::string& message) {
      state.Append("Warnings", message);
      plugin.api.LogWarning("series " + request.seriesId + ": " + message);
    };
    // Slices computed while the series arrived are taken; no more are computed ahead.
    if (plugin.earlySlices) plugin.earlySlices->MarkStarted(sourceUid);
    EnhancedSeries result =
        EnhanceSeries(source, *model, output, context, plugin.earlySlices.get());
    for (const auto& warning : result.warnings) context.Warn(warning);

    state.Set("Stage", "storing");
    const auto storeStart = std::chrono::steady_clock::now();
    derivedId = Publish(plugin, request, result, state, cancel);
    const StageTimings& t = result.timings;
    timings["Fetch"] = t.fetchSeconds;
    timings["Decode"] = t.decodeSeconds;
    timings["Inference"] = t.inferenceSeconds;
    timings["Encode"] = t.encodeSeconds;
    timings["Store"] = Since(storeStart);
    state.Set("Timings", timings);
    state.Set("PrecomputedSlices", static_cast<Json::Int64>(t.precomputedSlices));
    state.Set("DerivedInstances", static_cast<Json::UInt64>(result.files.size()));
    plugin.metrics.slicesProcessed += static_cast<uint64_t>(result.sourceSlices);
    plugin.metrics.inferenceMilliseconds += static_cast<uint64_t>(t.inferenceSeconds * 1000);
    if (!request.destinations.empty()) files = std::move(result.files);
  } else if (!request.destinations.empty()) {
    for (const auto& id : plugin.api.GetJson("/series/" + derivedId)["Instances"]) {
      files.push_back(plugin.api.Get("/instances/" + id.asString() + "/file"));
    }
  }
  state.Set("DerivedSeries", derivedId);
  state.SetProgress(kProcessingShare + kStoringShare);

  // Forwarding: every destination is tried; any failure fails the job, with the derived
  // series kept in Orthanc.
  std::string failures;
  const auto forwardStart = std::chrono::steady_clock::now();
  for (size_t i = 0; i < request.destinations.size(); ++i) {
    state.Set("Stage", "forwarding to " + request.destinations[i]);
    const ForwardResult forwarded =
        ForwardSeries(plugin.api, plugin.forwarding, request.destinations[i], request.senderAet,
                      files, plugin.config.forwarding, cancel);
    state.Append("Forwarding", forwarded.ToJson());
    if (!forwarded.success) {
      failures += (failures.empty() ? "" : "; ") + forwarded.destination + ": " +
                  forwarded.message + " (" + std::to_string(forwarded.attempts) + " attempt(s))";
    }
    state.SetProgress(kProcessingShare + kStoringShare +
                      (1 - kProcessingShare - kStoringShare) * static_cast<double>(i + 1) /
                          static_cast<double>(request.destinations.size()));
  }
  if (!request.destinations.empty()) {
    timings["Forward"] = Since(forwardStart);
    state.Set("Timings", timings);
  }
  state.Set("Stage", failures.empty() ? "done" : "forwarding failed");
  state.Set("TotalSeconds", Since(start));
  if (!failures.empty()) {
    throw Error(ErrorKind::kInternal, "forwarding failed: " + failures + "; derived series " +
                                          derivedId + " stays in Orthanc");
  }
  state.SetProgress(1.0);
  plugin.api.LogWarning("series " + request.seriesId + ": " + request.task + " with " + spec.name +
                        " " + spec.version + " -> series " + derivedId +
                        (request.destinations.empty() ? "" : ", forwarded"));
}

}  // namespace enhance::plugin
