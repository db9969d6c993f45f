// SPDX-License-Identifier: GPL-3.0-or-later
#include "SeriesRouting.h"

#include <gtest/gtest.h>

namespace enhance::plugin {
namespace {

PluginConfiguration TwoRules() {
  PluginConfiguration c;
  c.rules.push_back({"ct", {"CT"}, "denoise", "classical-bilateral"});
  c.rules.push_back({"any", {}, "denoise", "other"});
  return c;
}

Json::Value Series(const std::string& modality, int instances) {
  Json::Value s;
  s["MainDicomTags"]["Modality"] = modality;
  s["Instances"] = Json::arrayValue;
  for (int i = 0; i < instances; ++i) s["Instances"].append("id" + std::to_string(i));
  return s;
}

}  // namespace

TEST(SeriesRouting, ExtractsFactsFromOrthancJson) {
  Json::Value tags;
  tags["ImageType"] = "ORIGINAL\\PRIMARY\\AXIAL";
  const SeriesFacts f = ExtractSeriesFacts(Series("CT", 3), tags);
  EXPECT_EQ(f.modality, "CT");
  EXPECT_EQ(f.instanceCount, 3u);
  EXPECT_EQ(f.imageType, (std::vector<std::string>{"ORIGINAL", "PRIMARY", "AXIAL"}));
  EXPECT_FALSE(f.producedByThisPlugin);
}

TEST(SeriesRouting, RecognisesItsOwnOutput) {
  Json::Value tags;
  tags["ContributingEquipmentSequence"][0]["Manufacturer"] = "Scanner Inc";
  tags["ContributingEquipmentSequence"][1]["Manufacturer"] = "Orthanc Enhance";
  const SeriesFacts f = ExtractSeriesFacts(Series("CT", 1), tags);
  EXPECT_TRUE(f.producedByThisPlugin);
  PluginConfiguration c = TwoRules();
  c.processDerivedSeries = true;  // even then, never our own output
  const RoutingDecision d = Route(c, f);
  EXPECT_EQ(d.rule, nullptr);
  EXPECT_NE(d.reason.find("produced by Orthanc Enhance"), std::string::npos);
}

TEST(SeriesRouting, FirstMatchingRuleWins) {
  const PluginConfiguration c = TwoRules();
  SeriesFacts ct;
  ct.modality = "CT";
  EXPECT_EQ(Route(c, ct).rule, &c.rules[0]);
  SeriesFacts mr;
  mr.modality = "MR";
  EXPECT_EQ(Route(c, mr).rule, &c.rules[1]);
}

TEST(SeriesRouting, DerivedSeriesAreSkippedUnlessAllowed) {
  PluginConfiguration c = TwoRules();
  SeriesFacts f;
  f.modality = "CT";
  f.imageType = {"DERIVED", "SECONDARY"};
  EXPECT_EQ(Route(c, f).rule, nullptr);
  EXPECT_NE(Route(c, f).reason.find("ProcessDerivedSeries"), std::string::npos);
  c.processDerivedSeries = true;
  EXPECT_EQ(Route(c, f).rule, &c.rules[0]);
}

TEST(SeriesRouting, NoRuleNoProcessing) {
  PluginConfiguration c;
  SeriesFacts f;
  f.modality = "CT";
  EXPECT_EQ(Route(c, f).rule, nullptr);
  EXPECT_EQ(Route(c, f).reason, "no routing rule is configured");
  c.rules.push_back({"mr", {"MR"}, "denoise", "m"});
  EXPECT_EQ(Route(c, f).reason, "no routing rule matches modality 'CT'");
}

}  // namespace enhance::plugin
