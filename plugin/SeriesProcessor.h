// SPDX-License-Identifier: GPL-3.0-or-later
//
// Processes one stable series inside Orthanc: routing decision, fetch through the REST
// API, enhancement in core/, and publication of the derived series into the same study.
// Publication is all or nothing: if any derived instance cannot be stored, the ones
// already stored are deleted again, so a half series is never left behind. Source
// instances are only ever read.
//
// Thread-safety: Process() may run concurrently for different series; the counters are
// atomic. The configuration and the registry must outlive the processor.
#pragma once

#include <atomic>
#include <string>

#include "OrthancApi.h"
#include "PluginConfiguration.h"
#include "enhance/ModelRegistry.h"

namespace enhance::plugin {

struct ProcessingCounters {
  std::atomic<uint64_t> succeeded{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<uint64_t> skipped{0};
};

class SeriesProcessor {
 public:
  SeriesProcessor(const OrthancApi& api, const PluginConfiguration& config,
                  const ModelRegistry& registry, std::string softwareVersion);

  // Never throws: every outcome is logged and counted.
  void Process(const std::string& seriesId, const std::atomic<bool>& stopping);

  const ProcessingCounters& counters() const { return counters_; }

 private:
  void ProcessOrThrow(const std::string& seriesId, const std::atomic<bool>& stopping);

  const OrthancApi& api_;
  const PluginConfiguration& config_;
  const ModelRegistry& registry_;
  const std::string softwareVersion_;
  ProcessingCounters counters_;
};

}  // namespace enhance::plugin
