// SPDX-License-Identifier: GPL-3.0-or-later
//
// Decides whether a stable series is processed and by which rules, from what Orthanc
// knows of it. Pure functions over JSON; no SDK calls; thread-safe.
#pragma once

#include <json/value.h>

#include <string>
#include <vector>

#include "PluginConfiguration.h"

namespace enhance::plugin {

// What routing looks at, extracted from Orthanc's /series/{id} answer, the simplified
// tags of one of its instances and that instance's metadata.
struct SeriesFacts {
  std::string modality;
  std::string seriesDescription;
  std::string protocolName;
  std::string bodyPartExamined;
  std::vector<std::string> imageType;
  std::string sopClassUid;
  std::string callingAet;             // RemoteAET: who sent it
  std::string calledAet;              // CalledAET: which of our AETs it was sent to
  bool producedByThisPlugin = false;  // our contributing-equipment entry is present
  size_t instanceCount = 0;
};

SeriesFacts ExtractSeriesFacts(const Json::Value& series, const Json::Value& instanceTags,
                               const Json::Value& instanceMetadata);

struct RoutingDecision {
  std::vector<const RoutingRule*> rules;  // empty: do not process
  std::string reason;                     // why, for the log and the API
};

// Never routes this plugin's own output, derived series (unless
// Enhance.ProcessDerivedSeries), non-image SOP classes or localizers.
RoutingDecision Route(const PluginConfiguration& config, const SeriesFacts& facts);

// Whether one rule's conditions hold; when not, `why` says which condition failed.
bool RuleMatches(const RoutingRule& rule, const SeriesFacts& facts, std::string* why = nullptr);

}  // namespace enhance::plugin
