// SPDX-License-Identifier: GPL-3.0-or-later
//
// Everything the plugin holds between OrthancPluginInitialize and OrthancPluginFinalize.
// Created once in Initialize before any callback is registered and destroyed in
// Finalize after Orthanc stopped calling them, so callbacks may use it without locking;
// its members state their own thread-safety.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "Cluster.h"
#include "Forwarder.h"
#include "KeyedLock.h"
#include "OrthancApi.h"
#include "PluginConfiguration.h"
#include "ThreadCache.h"
#include "WorkQueue.h"
#include "enhance/base/Slots.h"
#include "enhance/inference/ModelRegistry.h"
#include "enhance/pipeline/SliceCache.h"

namespace enhance::plugin {

// Counters since start-up, published as Prometheus metrics by Orthanc
// (/tools/metrics-prometheus). Atomic.
struct PluginMetrics {
  std::atomic<uint64_t> jobsSubmitted{0};
  std::atomic<uint64_t> jobsRunning{0};
  std::atomic<uint64_t> jobsSucceeded{0};
  std::atomic<uint64_t> jobsFailed{0};
  std::atomic<uint64_t> jobsStopped{0};  // cancelled or paused before the end
  std::atomic<uint64_t> seriesSkipped{0};
  std::atomic<uint64_t> slicesProcessed{0};
  std::atomic<uint64_t> inferenceMilliseconds{0};
};

// The REST routes' kept threads: each keeps LibTorch's and oneDNN's per-thread state (and
// its own team of LibTorch's threads), so a few serve the requests an administrator or
// Orthanc Explorer makes at once.
inline constexpr size_t kRestThreads = 4;

struct PluginContext {
  PluginContext(OrthancPluginContext* context, PluginConfiguration configuration,
                ForwardingContext forwardingContext);

  // (Re)loads the models of Enhance.ModelsDirectories and logs what happened.
  // Serialised: two reloads never run at once; jobs keep the models they hold.
  ModelLoadReport ReloadModels();

  // Problems of the rules with the models now loaded, one message per rule at fault.
  std::vector<std::string> RuleProblems() const;

  // Pushes the counters to Orthanc's metrics.
  void PublishMetrics() const;

  // Trims the C library's heaps as files pass through `api` (declared first: `api` uses it).
  HeapTrimmer heap;
  OrthancApi api;
  const PluginConfiguration config;
  const ForwardingContext forwarding;  // our AET, DICOM timeout, Orthanc peers
  const InferenceOptions inference;
  ModelRegistry models;
  Slots processingSlots;  // Enhance.ConcurrentSeries
  PluginMetrics metrics;
  WorkQueue stableSeries;   // routing of stable series, off Orthanc's change thread
  KeyedLock derivedSeries;  // by derived SeriesInstanceUID: one job makes a series at a time
  // Early start (Enhance.EarlyStartMB; null when 0): slices computed while their series
  // arrives, and the queue of stored instances feeding it.
  std::unique_ptr<SliceCache> earlySlices;
  WorkQueue storedInstances;
  // Cluster mode (Enhance.Cluster.Enable; null otherwise): stable series go to the
  // cluster's queue and the node processes what it claims from it.
  std::unique_ptr<ClusterNode> cluster;
  // The threads the REST routes' work runs on, kept from one request to the next
  // (ThreadCache.h); requests running at once beyond kRestThreads each start a thread of
  // their own (RestSupport.cpp).
  ThreadCache restThreads{kRestThreads};
  // The threads the jobs' work runs on, kept from one job to the next (ThreadCache.h).
  // Declared last, with restThreads, so destroyed first: each waits for work still running
  // while the rest is still there.
  ThreadCache jobThreads;

 private:
  std::mutex reloadMutex_;
};

extern const char* const kPluginName;
extern const char* const kPluginVersion;

}  // namespace enhance::plugin
