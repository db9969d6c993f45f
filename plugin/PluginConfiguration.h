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
#include <string>
#include <vector>

namespace enhance::plugin {

// Which series a rule applies to and what to do with them. Rules are evaluated in
// order and the first matching rule wins.
struct RoutingRule {
  std::string name;
  std::vector<std::string> modalities;  // empty: any modality
  std::string task;
  std::string model;
};

struct PluginConfiguration {
  bool enabled = true;
  int threads = 0;           // LibTorch intra-op threads; 0 = all hardware threads
  int concurrentSeries = 1;  // series processed at the same time
  bool processDerivedSeries = false;
  std::string uidRoot;  // empty: 2.25 UUID-derived UIDs
  int seriesNumberOffset = 1000;
  std::map<std::string, std::string> seriesDescriptionSuffix{
      {"denoise", " [AI denoised]"},
      {"superres", " [AI super-resolution]"},
      {"mr2ct", " [AI synthetic CT]"},
  };
  std::vector<RoutingRule> rules;

  // Models.
  std::vector<std::string> modelsDirectories;  // each sub-folder with a manifest.json is a model
  std::string device = "auto";                 // "auto", "cpu", "cuda", "cuda:N"
  int memoryBudgetMb = 1024;                   // activations in flight per inference
  int concurrentInferences = 1;                // per model
  bool optimizeForCpu = true;

  const std::string& SuffixFor(const std::string& task) const;
};

// The tasks this version knows.
const std::vector<std::string>& KnownTasks();

// Parses the "Enhance" member of the whole Orthanc configuration; defaults apply when
// it is absent.
PluginConfiguration ParseConfiguration(const Json::Value& orthancConfiguration);

}  // namespace enhance::plugin
