// SPDX-License-Identifier: GPL-3.0-or-later
#include "SeriesRouting.h"

#include <algorithm>
#include <sstream>

#include "enhance/DerivedSeriesWriter.h"

namespace enhance::plugin {
namespace {

std::vector<std::string> SplitBackslash(const std::string& value) {
  std::vector<std::string> parts;
  std::stringstream stream(value);
  std::string part;
  while (std::getline(stream, part, '\\')) parts.push_back(part);
  return parts;
}

}  // namespace

SeriesFacts ExtractSeriesFacts(const Json::Value& series, const Json::Value& instanceTags) {
  SeriesFacts facts;
  const Json::Value& main = series["MainDicomTags"];
  if (main.isObject() && main["Modality"].isString()) facts.modality = main["Modality"].asString();
  if (series["Instances"].isArray()) facts.instanceCount = series["Instances"].size();
  if (instanceTags.isObject()) {
    if (facts.modality.empty() && instanceTags["Modality"].isString()) {
      facts.modality = instanceTags["Modality"].asString();
    }
    if (instanceTags["ImageType"].isString()) {
      facts.imageType = SplitBackslash(instanceTags["ImageType"].asString());
    }
    const Json::Value& equipment = instanceTags["ContributingEquipmentSequence"];
    if (equipment.isArray()) {
      for (const auto& item : equipment) {
        if (item.isObject() && item["Manufacturer"].isString() &&
            item["Manufacturer"].asString() == kEquipmentManufacturer) {
          facts.producedByThisPlugin = true;
        }
      }
    }
  }
  return facts;
}

RoutingDecision Route(const PluginConfiguration& config, const SeriesFacts& facts) {
  RoutingDecision decision;
  if (facts.producedByThisPlugin) {
    decision.reason = "the series was produced by Orthanc Enhance";
    return decision;
  }
  if (!facts.imageType.empty() && facts.imageType[0] == "DERIVED" && !config.processDerivedSeries) {
    decision.reason = "the series is DERIVED and Enhance.ProcessDerivedSeries is false";
    return decision;
  }
  for (const auto& rule : config.rules) {
    const bool modalityMatches =
        rule.modalities.empty() || std::find(rule.modalities.begin(), rule.modalities.end(),
                                             facts.modality) != rule.modalities.end();
    if (modalityMatches) {
      decision.rule = &rule;
      decision.reason = "rule '" + rule.name + "' matches";
      return decision;
    }
  }
  decision.reason = config.rules.empty()
                        ? "no routing rule is configured"
                        : "no routing rule matches modality '" + facts.modality + "'";
  return decision;
}

}  // namespace enhance::plugin
