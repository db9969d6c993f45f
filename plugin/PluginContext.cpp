// SPDX-License-Identifier: GPL-3.0-or-later
#include "PluginContext.h"

#include "EarlyStart.h"
#include "Router.h"

namespace enhance::plugin {
namespace {

// 8 MiB of files: sixteen 512x512 16-bit slices.
constexpr size_t kHeapTrimBytes = size_t{8} << 20;

InferenceOptions ToInferenceOptions(const PluginConfiguration& config) {
  InferenceOptions options;
  options.device = config.device;
  options.memoryBudgetBytes = static_cast<size_t>(config.memoryBudgetMb) << 20;
  options.maxConcurrentRuns = config.concurrentInferences;
  options.optimizeForCpu = config.optimizeForCpu;
  options.precision = config.cpuPrecision;
  options.simulatedDeviceMemoryBytes = static_cast<size_t>(config.simulatedDeviceMemoryMb) << 20;
  return options;
}

}  // namespace

PluginContext::PluginContext(OrthancPluginContext* context, PluginConfiguration configuration,
                             ForwardingContext forwardingContext)
    : heap(kHeapTrimBytes),
      api(context, &heap),
      config(std::move(configuration)),
      forwarding(std::move(forwardingContext)),
      inference(ToInferenceOptions(config)),
      processingSlots(config.concurrentSeries),
      stableSeries(1, [this](const std::string& id,
                             const std::atomic<bool>&) { RouteStableSeries(*this, id); }),
      earlySlices(config.earlyStartMb > 0
                      ? std::make_unique<SliceCache>(static_cast<size_t>(config.earlyStartMb) << 20)
                      : nullptr),
      storedInstances(1, [this](const std::string& id, const std::atomic<bool>& stopping) {
        PrecomputeStoredInstance(*this, id, stopping);
      }) {
  if (config.cluster.enabled) cluster = std::make_unique<ClusterNode>(*this);
}

void PluginContext::PublishMetrics() const {
  auto set = [this](const char* name, double value) {
    OrthancPluginSetMetricsValue(api.context(), name, static_cast<float>(value),
                                 OrthancPluginMetricsType_Default);
  };
  set("orthanc_enhance_jobs_submitted", static_cast<double>(metrics.jobsSubmitted));
  set("orthanc_enhance_jobs_running", static_cast<double>(metrics.jobsRunning));
  set("orthanc_enhance_jobs_succeeded", static_cast<double>(metrics.jobsSucceeded));
  set("orthanc_enhance_jobs_failed", static_cast<double>(metrics.jobsFailed));
  set("orthanc_enhance_jobs_stopped", static_cast<double>(metrics.jobsStopped));
  set("orthanc_enhance_series_skipped", static_cast<double>(metrics.seriesSkipped));
  set("orthanc_enhance_slices_processed", static_cast<double>(metrics.slicesProcessed));
  set("orthanc_enhance_inference_seconds",
      static_cast<double>(metrics.inferenceMilliseconds) / 1000.0);
}

ModelLoadReport PluginContext::ReloadModels() {
  std::lock_guard<std::mutex> lock(reloadMutex_);
  std::vector<std::filesystem::path> directories(config.modelsDirectories.begin(),
                                                 config.modelsDirectories.end());
  models.ReplaceBuiltin(std::make_shared<SelfSupervisedDenoiser>(config.selfSupervised));
  ModelLoadReport report = models.LoadDirectories(directories, inference);
  for (const auto& name : report.loaded) {
    const auto model = models.Find(name);
    std::string precision;
    if (const LowPrecisionReport* low = model->LowPrecision()) {
      precision = "; " + low->runs;
      const auto trial = [&](const char* which, bool compared, double mean, double p999,
                             const std::string& note) {
        if (compared) {
          precision += std::string("; ") + which + " deviates from float by " +
                       std::to_string(mean) + " mean, " + std::to_string(p999) +
                       " 99.9th percentile, in normalised output units";
        }
        if (!note.empty()) precision += "; " + note;
      };
      trial("bf16", low->compared, low->meanDeviation, low->p999Deviation, low->note);
      trial("int8", low->int8.compared, low->int8.meanDeviation, low->int8.p999Deviation,
            low->int8.note);
    }
    api.LogWarning("model " + name + " " + model->Info().version + " (" + model->Info().task +
                   ") loaded: " + model->Parameters() + precision);
  }
  for (const auto& problem : report.problems) {
    api.LogError("model not available: " + problem.message);
  }
  for (const auto& problem : RuleProblems()) api.LogError(problem);
  return report;
}

std::vector<std::string> PluginContext::RuleProblems() const {
  std::vector<std::string> problems;
  for (const auto& rule : config.rules) {
    const auto model = models.Find(rule.model);
    const std::string prefix = "rule '" + rule.name + "': ";
    if (!model) {
      std::string reason = "model '" + rule.model + "' is not available";
      for (const auto& problem : models.Problems()) {
        if (problem.name == rule.model) reason += " (" + problem.message + ")";
      }
      problems.push_back(prefix + reason +
                         "; series matching this rule fail until it is fixed "
                         "and POST /enhance/models/reload is called");
    } else if (model->Info().task != rule.task) {
      problems.push_back(prefix + "model '" + rule.model + "' performs " + model->Info().task +
                         ", not " + rule.task);
    }
  }
  return problems;
}

}  // namespace enhance::plugin
