// SPDX-License-Identifier: GPL-3.0-or-later
//
// The `Enhance` section of Orthanc's configuration, parsed and validated. Built once at
// start-up and read-only afterwards, so it may be shared between threads freely.
// Parsing never depends on the Orthanc SDK (unit-testable without a server).
//
// Errors throw enhance::Error(kBadInput) naming the full dotted key, e.g.
// "Enhance.Rules[1].Task: 'denoize' is not a task; use one of denoise, superres, mr2ct".
#pragma once

#include <json/value.h>

#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "BrokerSettings.h"
#include "enhance/inference/SelfSupervisedDenoiser.h"

namespace enhance::plugin {

// A regular expression with the text it was written as (for messages and the API).
// Matching searches anywhere in the value, ignoring case; anchor with ^ and $.
// The standard library matches by recursion, one level per character tried, so both the
// pattern and the values it is matched against are bounded (deep enough recursion ends
// the process, and DICOM values come from whoever sends a series).
struct Pattern {
  static constexpr size_t kMaxLength = 256;        // characters of a pattern
  static constexpr size_t kMaxValueLength = 1024;  // longer values never match
  std::string text;
  std::shared_ptr<const std::regex> regex;
};

// Which series a rule applies to and what to do with them. Every condition that is
// set must hold; unset conditions match anything.
struct RoutingRule {
  std::string name;
  // Conditions.
  std::vector<std::string> modalities;
  std::optional<Pattern> seriesDescription;
  std::optional<Pattern> protocolName;
  std::optional<Pattern> bodyPartExamined;
  std::vector<std::string> imageType;  // each value must be present in ImageType
  int minSlices = 0;
  int maxSlices = 0;                     // 0: no maximum
  std::vector<std::string> callingAets;  // the sender (Orthanc's RemoteAET metadata)
  std::vector<std::string> calledAets;   // the AET the sender called (CalledAET metadata)
  // Action.
  std::string task;
  std::string model;
  Json::Value options = Json::objectValue;  // task options, passed through to the job
  std::vector<std::string> destinations;    // modality or peer names, or "$sender"
  int priority = 0;                         // Orthanc job priority
};

enum class RuleEvaluation { kFirstMatch, kAllMatches };

struct ForwardingPolicy {
  int attempts = 3;              // tries per destination
  double firstDelaySeconds = 2;  // doubled after each failed try
};

// Cluster mode (Enhance.Cluster): several nodes on one PostgreSQL index share a RabbitMQ
// queue of stable series and claim each series in PostgreSQL before processing it.
struct ClusterSettings {
  bool enabled = false;
  std::string node;       // this node's name, unique in the cluster
  BrokerSettings broker;  // the AMQP broker and its queues
  // The PostgreSQL database holding the claims (by default the index's): libpq keywords
  // (host, port, dbname, user, password).
  std::map<std::string, std::string> database;
  int leaseSeconds = 30;      // a claim not renewed for this long can be taken over
  int stableAgeSeconds = 60;  // Orthanc's StableAge: quiet time before a series is processed
};

struct PluginConfiguration {
  bool enabled = true;
  int threads = 0;           // LibTorch intra-op threads; 0 = all hardware threads
  int concurrentSeries = 1;  // series processed at the same time
  bool processDerivedSeries = false;
  std::string uidRoot;  // empty: 2.25 UUID-derived UIDs
  // Per task, so that derived series of different tasks get different numbers.
  std::map<std::string, int> seriesNumberOffset{
      {"denoise", 1000}, {"superres", 2000}, {"mr2ct", 3000}};
  std::map<std::string, std::string> seriesDescriptionSuffix{
      {"denoise", " [AI denoised]"},
      {"superres", " [AI super-resolution]"},
      {"mr2ct", " [AI synthetic CT]"},
  };
  std::vector<RoutingRule> rules;
  RuleEvaluation ruleEvaluation = RuleEvaluation::kFirstMatch;
  ForwardingPolicy forwarding;

  // Models.
  std::vector<std::string> modelsDirectories;  // each sub-folder with a manifest.json is a model
  std::string device = "auto";                 // "auto", "cpu", "cuda", "cuda:N"
  int memoryBudgetMb = 1024;                   // activations in flight per inference
  // Slices of series still arriving are computed ahead, up to this many MiB of results
  // (models whose slices are independent only); 0 disables the early start.
  int earlyStartMb = 512;
  int concurrentInferences = 1;  // per model
  bool optimizeForCpu = true;
  // "auto": a model whose manifest allows bf16 runs in it where the processor has bf16
  // instructions, its output stays within the manifest's tolerance and it is faster;
  // "float": every model in float.
  std::string cpuPrecision = "auto";
  int simulatedDeviceMemoryMb = 0;  // > 0: rehearse out-of-memory fallbacks (testing only)
  // The built-in self-supervised denoiser ("SelfSupervised": TimeBudgetSeconds, Steps,
  // Seed, Augmentations); it runs on `device`.
  SelfSupervisedParameters selfSupervised;
  // Uncertainty maps: the share of body voxels whose standard deviation across a model's
  // samples is above this (output units: HU for CT) is reported with each series.
  double uncertaintyThreshold = 50.0;
  ClusterSettings cluster;

  const std::string& SuffixFor(const std::string& task) const;
  int SeriesNumberOffsetFor(const std::string& task) const;
};

// The tasks this version knows.
const std::vector<std::string>& KnownTasks();

// Parses the "Enhance" member of the whole Orthanc configuration; defaults apply when
// it is absent. Rule destinations are checked against the DicomModalities and
// OrthancPeers of the same configuration (unless DicomModalitiesInDatabase is true).
PluginConfiguration ParseConfiguration(const Json::Value& orthancConfiguration);

}  // namespace enhance::plugin
