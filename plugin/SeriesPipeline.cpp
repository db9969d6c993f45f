// SPDX-License-Identifier: GPL-3.0-or-later
#include "SeriesPipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "Forwarder.h"
#include "OrthancInstanceSource.h"
#include "PluginContext.h"
#include "enhance/base/Error.h"
#include "enhance/pipeline/SeriesEnhancer.h"

namespace enhance::plugin {
namespace {

// Progress bar: processing and storing up to 95%, forwarding to 100%.
constexpr double kProcessingShare = 0.95;

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

// Stores the derived instances one by one as they are encoded, and deletes them all again
// when the series cannot be completed: on any failure, and when Orthanc does not keep an
// instance (an incoming-instance filter, a storage limit). Only instances of this derived
// series are ever deleted. Not thread-safe: used by one job.
class DerivedSeriesStore {
 public:
  DerivedSeriesStore(PluginContext& plugin, const JobRequest& request, JobState& state)
      : plugin_(plugin), request_(request), state_(state) {}

  void Store(size_t index, size_t count, const std::string& file) {
    if (index == 0) state_.Set("Stage", "storing");
    const std::string which =
        "derived instance " + std::to_string(index + 1) + " of " + std::to_string(count);
    storing_ = true;
    Json::Value answer;
    try {
      answer = plugin_.api.PostJson("/instances", file);
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
    stored_.push_back(answer["ID"].asString());
    // The derived series comes first, then the uncertainty series when there is one.
    const std::string series = answer["ParentSeries"].asString();
    if (!series.empty() &&
        std::find(seriesIds_.begin(), seriesIds_.end(), series) == seriesIds_.end()) {
      seriesIds_.push_back(series);
    }
    storing_ = false;
  }

  // Removes every instance stored so far: the series is written again from its first file.
  void Discard() {
    seriesIds_.clear();
    plugin_.api.LogWarning("series " + request_.seriesId + ": storing the derived series again (" +
                           std::to_string(stored_.size()) +
                           " instance(s) removed): its values need another encoding");
    while (!stored_.empty()) {
      plugin_.api.Delete("/instances/" + stored_.back());
      stored_.pop_back();
    }
  }

  // Called with the exception that stopped the series: when nothing was stored and the
  // failure was not Orthanc's answer to a store, the error stands as it is; otherwise what
  // was stored is removed and the error says so.
  [[noreturn]] void Fail(const std::exception& e) {
    const auto* error = dynamic_cast<const Error*>(&e);
    if (stored_.empty() && !storing_) {
      if (error) throw *error;
      throw Error(ErrorKind::kInternal, e.what());
    }
    size_t removed = 0;
    for (const auto& id : stored_) {
      try {
        plugin_.api.Delete("/instances/" + id);
        ++removed;
      } catch (const std::exception& cleanup) {
        plugin_.api.LogError("series " + request_.seriesId +
                             ": could not remove partial derived instance " + id + ": " +
                             cleanup.what());
      }
    }
    const std::string kept = removed == stored_.size()
                                 ? "; nothing of the derived series was kept (" +
                                       std::to_string(removed) +
                                       " instance(s) stored before were removed)"
                                 : "; " + std::to_string(stored_.size() - removed) +
                                       " instance(s) of the derived series could not be removed";
    if (error && error->kind() == ErrorKind::kCancelled) {
      throw Error(ErrorKind::kCancelled, std::string(e.what()) + kept);
    }
    throw Error(error ? error->kind() : ErrorKind::kInternal,
                "storing the derived series of series " + request_.seriesId +
                    " failed: " + e.what() + kept);
  }

  const std::vector<std::string>& stored() const { return stored_; }
  std::string seriesId() const { return seriesIds_.empty() ? "" : seriesIds_[0]; }
  std::string uncertaintySeriesId() const { return seriesIds_.size() > 1 ? seriesIds_[1] : ""; }

 private:
  PluginContext& plugin_;
  const JobRequest& request_;
  JobState& state_;
  std::vector<std::string> stored_;     // Orthanc IDs, in instance order
  std::vector<std::string> seriesIds_;  // of the series stored, in order
  bool storing_ = false;                // inside a store: a failure now is Orthanc's answer
};

// A series an earlier run of this request made: its Orthanc ID when complete; when
// incomplete (an interrupted run), it is removed and "" returned, as when there is none.
std::string FindCompleteSeries(PluginContext& plugin, const JobRequest& request,
                               const std::string& uid, size_t expected) {
  const std::string id = LookupSeries(plugin.api, uid);
  if (id.empty()) return "";
  const size_t have = plugin.api.GetJson("/series/" + id)["Instances"].size();
  if (have == expected) return id;
  // Left by an interrupted run: it carries this request's own UID, so it is ours.
  plugin.api.LogWarning("series " + request.seriesId + ": removing incomplete derived series " +
                        id + " (" + std::to_string(have) + " of " + std::to_string(expected) +
                        " instances) before processing again");
  plugin.api.Delete("/series/" + id);
  return "";
}

// The stages' durations and the counts of a processed series, in the job's content and the
// plugin's metrics.
void Record(PluginContext& plugin, const EnhancedSeries& result, JobState& state,
            Json::Value& timings) {
  const StageTimings& t = result.timings;
  timings["Fetch"] = t.fetchSeconds;
  timings["Decode"] = t.decodeSeconds;
  // Part of Decode: the scored slices are prepared as they are decoded, and go through the
  // check's network up to 8 at a time, the last of them when decoding ends.
  timings["DomainCheck"] = t.domainSeconds;
  timings["Inference"] = t.inferenceSeconds;
  timings["Encode"] = t.encodeSeconds;
  timings["Store"] = t.sinkSeconds;
  // Encoding and storing overlap inference; this is what they add after it.
  timings["AfterInference"] = t.afterInferenceSeconds;
  state.Set("Timings", timings);
  state.Set("PrecomputedSlices", static_cast<Json::Int64>(t.precomputedSlices));
  state.Set("DerivedInstances", static_cast<Json::UInt64>(result.derivedInstances));
  if (result.hasUncertainty) {
    const UncertaintySummary& u = result.uncertainty;
    Json::Value figures;
    figures["Samples"] = u.samples;
    figures["Units"] = u.units;
    figures["Median"] = u.median;
    figures["Percentile99"] = u.percentile99;
    figures["Threshold"] = u.threshold;
    figures["FractionAbove"] = u.fractionAbove;
    figures["Instances"] = static_cast<Json::UInt64>(u.instances);
    state.Set("Uncertainty", figures);
  }
  plugin.metrics.slicesProcessed += static_cast<uint64_t>(result.sourceSlices);
  plugin.metrics.inferenceMilliseconds += static_cast<uint64_t>(t.inferenceSeconds * 1000);
}

}  // namespace

Json::Value DomainJson(const DomainScore& score, DomainAction action) {
  Json::Value domain;
  domain["Score"] = score.score;
  domain["Threshold"] = score.threshold;
  domain["Outside"] = score.outside;
  domain["Slices"] = static_cast<Json::Int64>(score.slices);
  domain["MedianLogReconstruction"] = score.logReconstruction;
  domain["MedianLogKL"] = score.logKl;
  domain["MedianLogResidual"] = score.logResidual;
  domain["MedianMeanIntensity"] = score.meanIntensity;
  domain["MedianResidualCorrelation"] = score.residualCorrelation;
  domain["TrainedOn"] = score.trainedOn;
  domain["Action"] = DomainActionName(action);
  if (score.outside) {
    domain["Warning"] =
        "outside the domain the model was trained on (" + DescribeDomainScore(score) + ")";
  }
  return domain;
}

Json::Value LearningJson(const LearningReport& r) {
  Json::Value learning;
  learning["Method"] = r.method;
  learning["Applied"] = r.applied;
  if (!r.fallback.empty()) learning["Fallback"] = r.fallback;
  learning["AnatomyToNoise"] = r.anatomyToNoise;
  if (r.blindSpotSide > 0) learning["BlindSpotPixels"] = r.blindSpotSide;
  if (r.plannedSteps > 0 && r.steps > 0) {
    learning["Device"] = r.device;
    learning["PlannedSteps"] = r.plannedSteps;
    learning["Steps"] = r.steps;
    learning["StoppedByTimeBudget"] = r.stoppedByTimeBudget;
    learning["TrainingSeconds"] = r.trainingSeconds;
    learning["FinalLoss"] = r.finalLoss;
    learning["HeldOutSlices"] = r.heldOutSlices;
    learning["HeldOutLoss"] = r.heldOutLoss;
    learning["HeldOutInputLoss"] = r.heldOutInputLoss;
    learning["HeldOutBaseline"] = r.heldOutBaseline;
    if (r.comparedWithBilateral) {
      learning["HeldOutNetworkError"] = r.heldOutNetworkError;
      learning["HeldOutBilateralError"] = r.heldOutBilateralError;
      learning["HeldOutNoise"] = r.heldOutNoiseSigma;
      learning["NetworkWeight"] = r.networkWeight;
      learning["HeldOutBlendError"] = std::sqrt(std::max(0.0, r.heldOutBlendMeanSquare));
      learning["RicianBiasRemoved"] = r.ricianBiasRemoved;
    }
    Json::Value curve(Json::arrayValue);
    for (const LearningReport::Point& p : r.curve) {
      Json::Value point(Json::arrayValue);
      point.append(p.step);
      point.append(p.loss);
      curve.append(point);
    }
    learning["Curve"] = curve;  // [step, mean training loss since the previous point]
  }
  return learning;
}

namespace {

struct StoredSeries {
  std::string id;                      // Orthanc ID of the derived series
  std::string uncertaintyId;           // of its uncertainty series, when there is one
  std::vector<std::string> instances;  // Orthanc IDs of both, for forwarding
};

// The UIDs of what a request makes: the derived series, and the uncertainty series when
// the model gives one and the request wants it (else "").
struct DerivedUids {
  std::string series;
  std::string uncertainty;
};

// Runs the model on the series and stores the derived series, all or nothing.
StoredSeries ProcessAndStore(PluginContext& plugin, const JobRequest& request, JobState& state,
                             const std::atomic<bool>& cancel, OrthancInstanceSource& source,
                             const Model& model, const std::string& sourceUid,
                             const DerivedUids& uids, Json::Value& timings) {
  SlotGuard slot(plugin.processingSlots, &cancel, "a processing slot");
  state.Set("Stage", "processing");
  OutputOptions output;
  output.seriesDescriptionSuffix = plugin.config.SuffixFor(request.task);
  output.seriesNumberOffset = plugin.config.SeriesNumberOffsetFor(request.task);
  output.uidRoot = plugin.config.uidRoot;
  output.seriesInstanceUid = uids.series;
  output.softwareVersion = kPluginVersion;
  output.uncertainty = !uids.uncertainty.empty();
  output.uncertaintySeriesInstanceUid = uids.uncertainty;
  output.uncertaintyThreshold = plugin.config.uncertaintyThreshold;
  output.domainAction = DomainActionWanted(request.options);
  RunContext context;
  context.cancelled = [&cancel] { return cancel.load(); };
  context.progress = [&](double f) { state.SetProgress(kProcessingShare * f); };
  context.warning = [&](const std::string& message) {
    state.Append("Warnings", message);
    plugin.api.LogWarning("series " + request.seriesId + ": " + message);
  };
  // Slices computed while the series arrived are taken; no more are computed ahead.
  if (plugin.earlySlices) plugin.earlySlices->MarkStarted(sourceUid);
  // Each derived instance is stored as soon as it is encoded; if the series cannot be
  // completed, the store removes what it stored.
  DerivedSeriesStore store(plugin, request, state);
  EnhancedSeries result;
  try {
    result = EnhanceSeries(
        source, model, output, context, plugin.earlySlices.get(),
        [&store](size_t index, size_t count, std::string file) { store.Store(index, count, file); },
        [&store] { store.Discard(); });
  } catch (const std::exception& e) {
    store.Fail(e);
  }
  if (result.hasDomainScore) state.Set("Domain", DomainJson(result.domain, output.domainAction));
  if (result.hasLearning) state.Set("Learning", LearningJson(result.learning));
  for (const auto& warning : result.warnings) context.Warn(warning);
  Record(plugin, result, state, timings);
  return {store.seriesId(), store.uncertaintySeriesId(), store.stored()};
}

// Sends the derived series to every destination of the request; every destination is
// tried. Returns what failed, "" when nothing did.
std::string ForwardToDestinations(PluginContext& plugin, const JobRequest& request, JobState& state,
                                  const std::atomic<bool>& cancel,
                                  const std::vector<std::string>& derivedInstances,
                                  Json::Value& timings) {
  if (request.destinations.empty()) return "";
  std::string failures;
  const auto forwardStart = std::chrono::steady_clock::now();
  for (size_t i = 0; i < request.destinations.size(); ++i) {
    state.Set("Stage", "forwarding to " + request.destinations[i]);
    const ForwardResult forwarded =
        ForwardSeries(plugin.api, plugin.forwarding, request.destinations[i], request.senderAet,
                      derivedInstances, plugin.config.forwarding, cancel);
    state.Append("Forwarding", forwarded.ToJson());
    if (!forwarded.success) {
      failures += (failures.empty() ? "" : "; ") + forwarded.destination + ": " +
                  forwarded.message + " (" + std::to_string(forwarded.attempts) + " attempt(s))";
    }
    state.SetProgress(kProcessingShare + (1 - kProcessingShare) * static_cast<double>(i + 1) /
                                             static_cast<double>(request.destinations.size()));
  }
  timings["Forward"] = Since(forwardStart);
  state.Set("Timings", timings);
  return failures;
}

// What an earlier run of this request made, when all of it is complete; otherwise what
// it left is removed (so that the series are made again together) and nothing returned.
StoredSeries FindEarlierRun(PluginContext& plugin, const JobRequest& request,
                            const DerivedUids& uids, size_t expected) {
  StoredSeries found;
  found.id = FindCompleteSeries(plugin, request, uids.series, expected);
  if (!found.id.empty() && !uids.uncertainty.empty()) {
    found.uncertaintyId = FindCompleteSeries(plugin, request, uids.uncertainty, expected);
    if (found.uncertaintyId.empty()) {
      plugin.api.LogWarning("series " + request.seriesId + ": the uncertainty series of " +
                            found.id + " is missing; making both again");
      plugin.api.Delete("/series/" + found.id);
      return {};
    }
  }
  if (found.id.empty() || request.destinations.empty()) return found;
  for (const std::string& series : {found.id, found.uncertaintyId}) {
    if (series.empty()) continue;
    for (const auto& id : plugin.api.GetJson("/series/" + series)["Instances"]) {
      found.instances.push_back(id.asString());
    }
  }
  return found;
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
  if (spec.isDiffusion) {
    // What the progress counts for a diffusion model: every step of every sample.
    Json::Value sampler;
    sampler["Samples"] = spec.sampler.samples;
    sampler["Steps"] = static_cast<Json::UInt64>(
        spec.sampler.timesteps.empty() ? spec.sampler.stepCount : spec.sampler.timesteps.size());
    sampler["Seed"] = static_cast<Json::UInt64>(spec.sampler.seed);
    state.Set("Sampler", sampler);
  }
  const std::string sourceUid = source.series()["MainDicomTags"]["SeriesInstanceUID"].asString();
  DerivedUids uids;
  uids.series = DerivedSeriesUid(request, sourceUid, spec.uid, plugin.config.uidRoot);
  if (model->ProducesUncertainty() && UncertaintyWanted(request.options)) {
    uids.uncertainty = UncertaintySeriesUid(uids.series, plugin.config.uidRoot);
  }
  const std::string& derivedUid = uids.series;
  // Another job making the same series (same request) finishes first; this one then
  // finds its series complete.
  if (plugin.derivedSeries.IsHeld(derivedUid)) {
    state.Set("Stage", "waiting for another job making the same derived series");
  }
  const KeyedLockGuard sameSeries(plugin.derivedSeries, derivedUid, &cancel);
  const size_t sourceCount = source.ListInstances().size();
  const size_t expected = spec.throughPlaneScale > 1 ? 2 * sourceCount - 1 : sourceCount;
  state.Set("SourceInstances", static_cast<Json::UInt64>(sourceCount));

  StoredSeries derived = FindEarlierRun(plugin, request, uids, expected);
  Json::Value timings(Json::objectValue);  // seconds per stage, in the job's content
  if (derived.id.empty()) {
    derived =
        ProcessAndStore(plugin, request, state, cancel, source, *model, sourceUid, uids, timings);
  } else {
    state.Set("AlreadyProcessed", true);
    plugin.api.LogInfo("series " + request.seriesId + ": already processed as series " +
                       derived.id);
  }
  state.Set("DerivedSeries", derived.id);
  if (!derived.uncertaintyId.empty()) state.Set("UncertaintySeries", derived.uncertaintyId);
  state.SetProgress(kProcessingShare);

  // Any forwarding failure fails the job, with the derived series kept in Orthanc.
  const std::string failures =
      ForwardToDestinations(plugin, request, state, cancel, derived.instances, timings);
  state.Set("Stage", failures.empty() ? "done" : "forwarding failed");
  state.Set("TotalSeconds", Since(start));
  if (!failures.empty()) {
    throw Error(ErrorKind::kInternal, "forwarding failed: " + failures + "; derived series " +
                                          derived.id + " stays in Orthanc");
  }
  state.SetProgress(1.0);
  plugin.api.LogWarning(
      "series " + request.seriesId + ": " + request.task + " with " + spec.name + " " +
      spec.version + " -> series " + derived.id +
      (derived.uncertaintyId.empty() ? "" : " and uncertainty series " + derived.uncertaintyId) +
      (request.destinations.empty() ? "" : ", forwarded"));
}

}  // namespace enhance::plugin
