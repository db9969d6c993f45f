// SPDX-License-Identifier: GPL-3.0-or-later
#include "SeriesRouting.h"

#include <algorithm>
#include <sstream>

#include "enhance/dicom/DerivedSeriesWriter.h"

namespace enhance::plugin {
namespace {

std::vector<std::string> SplitBackslash(const std::string& value) {
  std::vector<std::string> parts;
  std::stringstream stream(value);
  std::string part;
  while (std::getline(stream, part, '\\')) parts.push_back(part);
  return parts;
}

std::string Text(const Json::Value& object, const char* key) {
  return object.isObject() && object[key].isString() ? object[key].asString() : "";
}

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Image storage SOP classes whose pixels a model can process: CT, MR and their
// enhanced variants; anything else (SR, SEG, RT, PDF, presentation states) is skipped.
bool IsImageStorage(const std::string& sopClassUid) {
  static const std::vector<std::string> kImages{
      "1.2.840.10008.5.1.4.1.1.2",    // CT Image Storage
      "1.2.840.10008.5.1.4.1.1.2.1",  // Enhanced CT Image Storage
      "1.2.840.10008.5.1.4.1.1.4",    // MR Image Storage
      "1.2.840.10008.5.1.4.1.1.4.1",  // Enhanced MR Image Storage
      "1.2.840.10008.5.1.4.1.1.7",    // Secondary Capture Image Storage
      "1.2.840.10008.5.1.4.1.1.128",  // PET Image Storage
      "1.2.840.10008.5.1.4.1.1.20",   // Nuclear Medicine Image Storage
      "1.2.840.10008.5.1.4.1.1.1",    // Computed Radiography Image Storage
      "1.2.840.10008.5.1.4.1.1.1.1",  // Digital X-Ray Image Storage - For Presentation
      "1.2.840.10008.5.1.4.1.1.6.1",  // Ultrasound Image Storage
  };
  return sopClassUid.empty() || Contains(kImages, sopClassUid);
}

bool Search(const std::optional<Pattern>& pattern, const std::string& value) {
  if (!pattern) return true;
  return value.size() <= Pattern::kMaxValueLength && std::regex_search(value, *pattern->regex);
}

std::string Differs(const char* attribute, const std::string& value) {
  if (value.size() <= Pattern::kMaxValueLength) return std::string(attribute) + " differs";
  return std::string(attribute) + " is " + std::to_string(value.size()) +
         " characters long, more than the " + std::to_string(Pattern::kMaxValueLength) +
         " a pattern is matched against";
}

}  // namespace

SeriesFacts ExtractSeriesFacts(const Json::Value& series, const Json::Value& instanceTags,
                               const Json::Value& instanceMetadata) {
  SeriesFacts facts;
  const Json::Value& main = series["MainDicomTags"];
  facts.modality = Text(main, "Modality");
  facts.seriesDescription = Text(main, "SeriesDescription");
  facts.protocolName = Text(main, "ProtocolName");
  facts.bodyPartExamined = Text(main, "BodyPartExamined");
  if (series["Instances"].isArray()) facts.instanceCount = series["Instances"].size();
  if (instanceTags.isObject()) {
    if (facts.modality.empty()) facts.modality = Text(instanceTags, "Modality");
    if (facts.seriesDescription.empty())
      facts.seriesDescription = Text(instanceTags, "SeriesDescription");
    if (facts.protocolName.empty()) facts.protocolName = Text(instanceTags, "ProtocolName");
    if (facts.bodyPartExamined.empty())
      facts.bodyPartExamined = Text(instanceTags, "BodyPartExamined");
    facts.imageType = SplitBackslash(Text(instanceTags, "ImageType"));
    facts.sopClassUid = Text(instanceTags, "SOPClassUID");
    const Json::Value& equipment = instanceTags["ContributingEquipmentSequence"];
    if (equipment.isArray()) {
      for (const auto& item : equipment) {
        if (Text(item, "Manufacturer") == kEquipmentManufacturer) facts.producedByThisPlugin = true;
      }
    }
  }
  facts.callingAet = Text(instanceMetadata, "RemoteAET");
  facts.calledAet = Text(instanceMetadata, "CalledAET");
  return facts;
}

bool RuleMatches(const RoutingRule& rule, const SeriesFacts& facts, std::string* why) {
  auto fail = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  if (!rule.modalities.empty() && !Contains(rule.modalities, facts.modality)) {
    return fail("modality '" + facts.modality + "' is not listed");
  }
  if (!Search(rule.seriesDescription, facts.seriesDescription))
    return fail(Differs("SeriesDescription", facts.seriesDescription));
  if (!Search(rule.protocolName, facts.protocolName))
    return fail(Differs("ProtocolName", facts.protocolName));
  if (!Search(rule.bodyPartExamined, facts.bodyPartExamined))
    return fail(Differs("BodyPartExamined", facts.bodyPartExamined));
  for (const auto& value : rule.imageType) {
    if (!Contains(facts.imageType, value)) return fail("ImageType lacks " + value);
  }
  const auto slices = static_cast<int>(facts.instanceCount);
  if (slices < rule.minSlices)
    return fail("fewer than " + std::to_string(rule.minSlices) + " slices");
  if (rule.maxSlices > 0 && slices > rule.maxSlices) {
    return fail("more than " + std::to_string(rule.maxSlices) + " slices");
  }
  if (!rule.callingAets.empty() && !Contains(rule.callingAets, facts.callingAet)) {
    return fail("sent by '" + facts.callingAet + "'");
  }
  if (!rule.calledAets.empty() && !Contains(rule.calledAets, facts.calledAet)) {
    return fail("sent to '" + facts.calledAet + "'");
  }
  return true;
}

RoutingDecision Route(const PluginConfiguration& config, const SeriesFacts& facts) {
  RoutingDecision decision;
  if (facts.producedByThisPlugin) {
    decision.reason = "the series was produced by Orthanc Enhance";
    return decision;
  }
  if (!IsImageStorage(facts.sopClassUid)) {
    decision.reason = "SOP class " + facts.sopClassUid + " holds no image to enhance";
    return decision;
  }
  if (facts.imageType.size() >= 3 && facts.imageType[2] == "LOCALIZER") {
    decision.reason = "the series is a localizer";
    return decision;
  }
  if (!facts.imageType.empty() && facts.imageType[0] == "DERIVED" && !config.processDerivedSeries) {
    decision.reason = "the series is DERIVED and Enhance.ProcessDerivedSeries is false";
    return decision;
  }
  std::string names;
  for (const auto& rule : config.rules) {
    if (!RuleMatches(rule, facts)) continue;
    decision.rules.push_back(&rule);
    names += (names.empty() ? "'" : ", '") + rule.name + "'";
    if (config.ruleEvaluation == RuleEvaluation::kFirstMatch) break;
  }
  if (!decision.rules.empty()) {
    decision.reason = (decision.rules.size() == 1 ? "rule " : "rules ") + names + " match";
  } else {
    decision.reason = config.rules.empty()
                          ? "no routing rule is configured"
                          : "no routing rule matches (modality '" + facts.modality + "')";
  }
  return decision;
}

}  // namespace enhance::plugin
