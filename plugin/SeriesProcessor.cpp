// SPDX-License-Identifier: GPL-3.0-or-later
#include "SeriesProcessor.h"

#include <chrono>
#include <cstdio>

#include "OrthancFrameDecoder.h"
#include "SeriesRouting.h"
#include "enhance/Error.h"
#include "enhance/SeriesEnhancer.h"

namespace enhance::plugin {
namespace {

// The instances of one Orthanc series, read through the REST API.
class OrthancInstanceSource : public InstanceSource {
 public:
  OrthancInstanceSource(const OrthancApi& api, std::string seriesId, std::string modality,
                        std::vector<std::string> instances)
      : api_(api),
        decoder_(api.context()),
        seriesId_(std::move(seriesId)),
        modality_(std::move(modality)),
        instances_(std::move(instances)) {}

  std::string Describe() const override {
    return "series " + seriesId_ + " (" + (modality_.empty() ? "no modality" : modality_) + ")";
  }

  std::vector<std::string> ListInstances() override { return instances_; }

  std::string FetchInstance(const std::string& instanceId) override {
    try {
      return api_.Get("/instances/" + instanceId + "/file");
    } catch (const OrthancApiError& e) {
      throw Error(ErrorKind::kNotFound, Describe() + ", instance " + instanceId +
                                            ": cannot be read from Orthanc (" + e.what() +
                                            "); it may have been deleted during processing");
    }
  }

  // Orthanc's decoders, for transfer syntaxes DCMTK cannot decode in core/.
  const FrameDecoder* Decoder() const override { return &decoder_; }

 private:
  const OrthancApi& api_;
  OrthancFrameDecoder decoder_;
  std::string seriesId_;
  std::string modality_;
  std::vector<std::string> instances_;
};

std::string Seconds(double s) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.2f s", s);
  return buffer;
}

}  // namespace

SeriesProcessor::SeriesProcessor(const OrthancApi& api, const PluginConfiguration& config,
                                 const ModelRegistry& registry, std::string softwareVersion)
    : api_(api),
      config_(config),
      registry_(registry),
      softwareVersion_(std::move(softwareVersion)) {}

void SeriesProcessor::Process(const std::string& seriesId, const std::atomic<bool>& stopping) {
  try {
    ProcessOrThrow(seriesId, stopping);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kCancelled) {
      api_.LogWarning("series " + seriesId +
                      ": processing stopped before completion; nothing was stored");
    } else {
      counters_.failed++;
      api_.LogError("series " + seriesId + ": not enhanced: " + e.what());
    }
  } catch (const std::exception& e) {
    counters_.failed++;
    api_.LogError("series " + seriesId + ": not enhanced: " + e.what());
  } catch (...) {
    counters_.failed++;
    api_.LogError("series " + seriesId + ": not enhanced: unknown error");
  }
}

void SeriesProcessor::ProcessOrThrow(const std::string& seriesId,
                                     const std::atomic<bool>& stopping) {
  Json::Value series;
  try {
    series = api_.GetJson("/series/" + seriesId);
  } catch (const OrthancApiError& e) {
    if (e.code() == OrthancPluginErrorCode_UnknownResource) {
      api_.LogInfo("series " + seriesId + " was deleted before it could be processed");
      counters_.skipped++;
      return;
    }
    throw;
  }
  std::vector<std::string> instances;
  for (const auto& id : series["Instances"]) instances.push_back(id.asString());
  if (instances.empty()) {
    counters_.skipped++;
    return;
  }
  const Json::Value tags = api_.GetJson("/instances/" + instances.front() + "/simplified-tags");
  const SeriesFacts facts = ExtractSeriesFacts(series, tags);
  const RoutingDecision decision = Route(config_, facts);
  if (decision.rule == nullptr) {
    api_.LogInfo("series " + seriesId + " not processed: " + decision.reason);
    counters_.skipped++;
    return;
  }
  const RoutingRule& rule = *decision.rule;
  const auto model = registry_.Get(rule.model);
  api_.LogInfo("series " + seriesId + ": " + decision.reason + ", running " + rule.task + " with " +
               model->Info().name + " on " + std::to_string(instances.size()) + " instances");

  OrthancInstanceSource source(api_, seriesId, facts.modality, instances);
  OutputOptions output;
  output.seriesDescriptionSuffix = config_.SuffixFor(rule.task);
  output.seriesNumberOffset = config_.seriesNumberOffset;
  output.uidRoot = config_.uidRoot;
  output.softwareVersion = softwareVersion_;
  RunContext context;
  context.cancelled = [&stopping] { return stopping.load(); };
  const EnhancedSeries result = EnhanceSeries(source, *model, output, context);
  for (const auto& warning : result.warnings) api_.LogWarning(warning);

  // Publish all or nothing.
  const auto storeStart = std::chrono::steady_clock::now();
  std::vector<std::string> stored;
  std::string derivedSeriesId;
  try {
    for (const auto& file : result.files) {
      if (stopping) throw Error(ErrorKind::kCancelled, "Orthanc is stopping");
      const Json::Value answer = api_.PostJson("/instances", file);
      if (!answer["ID"].isString()) {
        throw Error(ErrorKind::kInternal, "Orthanc did not return an ID for a stored instance");
      }
      stored.push_back(answer["ID"].asString());
      if (answer["ParentSeries"].isString()) derivedSeriesId = answer["ParentSeries"].asString();
    }
  } catch (...) {
    for (const auto& id : stored) {
      try {
        api_.Delete("/instances/" + id);
      } catch (const std::exception& e) {
        api_.LogError("series " + seriesId + ": could not remove partial derived instance " + id +
                      ": " + e.what());
      }
    }
    throw;
  }
  const double storeSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - storeStart).count();
  counters_.succeeded++;
  const StageTimings& t = result.timings;
  api_.LogWarning("series " + seriesId + ": " + rule.task + " with " + model->Info().name + " " +
                  model->Info().version + " produced series " + derivedSeriesId + " (" +
                  std::to_string(stored.size()) + " instances); fetch " + Seconds(t.fetchSeconds) +
                  ", decode " + Seconds(t.decodeSeconds) + ", inference " +
                  Seconds(t.inferenceSeconds) + ", encode " + Seconds(t.encodeSeconds) +
                  ", store " + Seconds(storeSeconds));
}

}  // namespace enhance::plugin
