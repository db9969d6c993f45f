// SPDX-License-Identifier: GPL-3.0-or-later
//
// Decides whether a stable series is processed and by which rule, from what Orthanc
// knows of it. Pure functions over JSON; no SDK calls; thread-safe.
#pragma once

#include <json/value.h>

#include <string>
#include <vector>

#include "PluginConfiguration.h"

namespace enhance::plugin {

// What routing looks at, extracted from Orthanc's /series/{id} answer and the
// simplified tags of one of its instances.
struct SeriesFacts {
  std::string modality;
  std::vector<std::string> imageType;
  bool producedByThisPlugin = false;  // our contributing-equipment entry is present
  size_t instanceCount = 0;
};

SeriesFacts ExtractSeriesFacts(const Json::Value& series, const Json::Value& instanceTags);

struct RoutingDecision {
  const RoutingRule* rule = nullptr;  // null: do not process
  std::string reason;                 // why, for the log and the API
};

RoutingDecision Route(const PluginConfiguration& config, const SeriesFacts& facts);

}  // namespace enhance::plugin
