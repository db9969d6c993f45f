// SPDX-License-Identifier: GPL-3.0-or-later
#include "JsonText.h"
#include "SeriesRouting.h"

#include <gtest/gtest.h>
#include <json/reader.h>

#include "enhance/base/Error.h"

namespace enhance::plugin {
namespace {

RoutingRule Rule(const std::string& name, std::vector<std::string> modalities,
                 const std::string& model = "classical-bilateral") {
  RoutingRule r;
  r.name = name;
  r.modalities = std::move(modalities);
  r.task = "denoise";
  r.model = model;
  return r;
}

PluginConfiguration TwoRules() {
  PluginConfiguration c;
  c.rules.push_back(Rule("ct", {"CT"}));
  c.rules.push_back(Rule("any", {}, "other"));
  return c;
}

SeriesFacts Ct() {
  SeriesFacts f;
  f.modality = "CT";
  f.sopClassUid = "1.2.840.10008.5.1.4.1.1.2";
  f.imageType = {"ORIGINAL", "PRIMARY", "AXIAL"};
  f.instanceCount = 100;
  return f;
}

Json::Value Parse(const std::string& text) { return testing::ParseJsonText(text); }

}  // namespace

TEST(SeriesRouting, ExtractsFactsFromOrthancJson) {
  const Json::Value series = Parse(R"json({"MainDicomTags": {"Modality": "CT",
      "SeriesDescription": "Thorax LD 1.0", "ProtocolName": "LDCT", "BodyPartExamined": "CHEST"},
      "Instances": ["a", "b", "c"]})json");
  const Json::Value tags = Parse(R"json({"ImageType": "ORIGINAL\\PRIMARY\\AXIAL",
      "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"})json");
  const Json::Value metadata = Parse(R"json({"RemoteAET": "CT1", "CalledAET": "ENHANCE"})json");
  const SeriesFacts f = ExtractSeriesFacts(series, tags, metadata);
  EXPECT_EQ(f.modality, "CT");
  EXPECT_EQ(f.seriesDescription, "Thorax LD 1.0");
  EXPECT_EQ(f.protocolName, "LDCT");
  EXPECT_EQ(f.bodyPartExamined, "CHEST");
  EXPECT_EQ(f.instanceCount, 3u);
  EXPECT_EQ(f.imageType, (std::vector<std::string>{"ORIGINAL", "PRIMARY", "AXIAL"}));
  EXPECT_EQ(f.callingAet, "CT1");
  EXPECT_EQ(f.calledAet, "ENHANCE");
  EXPECT_FALSE(f.producedByThisPlugin);
}

TEST(SeriesRouting, RecognisesItsOwnOutputEvenWhenDerivedSeriesAreAllowed) {
  const Json::Value tags = Parse(R"json({"ContributingEquipmentSequence": [
      {"Manufacturer": "Scanner Inc"}, {"Manufacturer": "Orthanc Enhance"}]})json");
  const SeriesFacts f = ExtractSeriesFacts(
      Parse(R"json({"MainDicomTags": {"Modality": "CT"}})json"), tags, Json::Value());
  EXPECT_TRUE(f.producedByThisPlugin);
  PluginConfiguration c = TwoRules();
  c.processDerivedSeries = true;
  const RoutingDecision d = Route(c, f);
  EXPECT_TRUE(d.rules.empty());
  EXPECT_NE(d.reason.find("produced by Orthanc Enhance"), std::string::npos);
}

TEST(SeriesRouting, FirstMatchOrAllMatches) {
  PluginConfiguration c = TwoRules();
  SeriesFacts ct = Ct();
  ASSERT_EQ(Route(c, ct).rules.size(), 1u);
  EXPECT_EQ(Route(c, ct).rules[0], &c.rules[0]);
  SeriesFacts mr = Ct();
  mr.modality = "MR";
  EXPECT_EQ(Route(c, mr).rules[0], &c.rules[1]);
  c.ruleEvaluation = RuleEvaluation::kAllMatches;
  const RoutingDecision all = Route(c, ct);
  ASSERT_EQ(all.rules.size(), 2u);
  EXPECT_EQ(all.reason, "rules 'ct', 'any' match");
}

TEST(SeriesRouting, DerivedLocalizerAndNonImageSeriesAreSkippedWithAReason) {
  PluginConfiguration c = TwoRules();
  SeriesFacts derived = Ct();
  derived.imageType = {"DERIVED", "SECONDARY"};
  EXPECT_TRUE(Route(c, derived).rules.empty());
  EXPECT_NE(Route(c, derived).reason.find("ProcessDerivedSeries"), std::string::npos);
  c.processDerivedSeries = true;
  EXPECT_EQ(Route(c, derived).rules.size(), 1u);

  SeriesFacts scout = Ct();
  scout.imageType = {"ORIGINAL", "PRIMARY", "LOCALIZER"};
  EXPECT_EQ(Route(c, scout).reason, "the series is a localizer");

  SeriesFacts report = Ct();
  report.sopClassUid = "1.2.840.10008.5.1.4.1.1.88.22";  // Enhanced SR
  EXPECT_NE(Route(c, report).reason.find("holds no image"), std::string::npos);
}

TEST(SeriesRouting, EveryConditionIsChecked) {
  RoutingRule rule = Rule("r", {"CT"});
  rule.seriesDescription =
      Pattern{"low.?dose", std::make_shared<std::regex>("low.?dose", std::regex::icase)};
  rule.bodyPartExamined =
      Pattern{"^chest$", std::make_shared<std::regex>("^chest$", std::regex::icase)};
  rule.imageType = {"AXIAL"};
  rule.minSlices = 10;
  rule.maxSlices = 600;
  rule.callingAets = {"CT1", "CT2"};
  rule.calledAets = {"ENHANCE"};
  SeriesFacts f = Ct();
  f.seriesDescription = "Thorax Low Dose 1mm";
  f.bodyPartExamined = "CHEST";
  f.callingAet = "CT2";
  f.calledAet = "ENHANCE";
  std::string why;
  EXPECT_TRUE(RuleMatches(rule, f, &why)) << why;

  auto fails = [&](SeriesFacts g, const std::string& reason) {
    std::string w;
    EXPECT_FALSE(RuleMatches(rule, g, &w));
    EXPECT_EQ(w, reason);
  };
  SeriesFacts g = f;
  g.seriesDescription = "Thorax standard";
  fails(g, "SeriesDescription differs");
  g = f;
  g.bodyPartExamined = "ABDOMEN CHEST";  // anchored pattern
  fails(g, "BodyPartExamined differs");
  g = f;
  g.imageType = {"ORIGINAL", "PRIMARY"};
  fails(g, "ImageType lacks AXIAL");
  g = f;
  g.instanceCount = 5;
  fails(g, "fewer than 10 slices");
  g = f;
  g.instanceCount = 700;
  fails(g, "more than 600 slices");
  g = f;
  g.callingAet = "MR1";
  fails(g, "sent by 'MR1'");
  g = f;
  g.calledAet = "OTHER";
  fails(g, "sent to 'OTHER'");
  g = f;
  g.modality = "MR";
  fails(g, "modality 'MR' is not listed");
}

TEST(SeriesRouting, NoRuleNoProcessing) {
  PluginConfiguration c;
  EXPECT_TRUE(Route(c, Ct()).rules.empty());
  EXPECT_EQ(Route(c, Ct()).reason, "no routing rule is configured");
  c.rules.push_back(Rule("mr", {"MR"}));
  EXPECT_EQ(Route(c, Ct()).reason, "no routing rule matches (modality 'CT')");
}

TEST(RulesConfiguration, ParsesConditionsDestinationsAndEvaluation) {
  const PluginConfiguration c = ParseConfiguration(Parse(R"json({
    "DicomModalities": {"PACS": ["PACS", "127.0.0.1", 104]},
    "OrthancPeers": {"archive": ["http://127.0.0.1:8043/"]},
    "Enhance": {"RuleEvaluation": "AllMatches", "ForwardAttempts": 5, "ForwardRetryDelaySeconds": 0.5,
      "Rules": [{"Name": "ld", "Modalities": ["CT"], "SeriesDescription": "low.?dose",
                 "ImageType": ["AXIAL"], "MinSlices": 20, "CallingAETs": ["CT1"],
                 "Task": "denoise", "Model": "m", "Options": {"strength": 1},
                 "Destinations": ["PACS", "archive", "$sender"], "Priority": 5}]}})json"));
  EXPECT_EQ(c.ruleEvaluation, RuleEvaluation::kAllMatches);
  EXPECT_EQ(c.forwarding.attempts, 5);
  EXPECT_DOUBLE_EQ(c.forwarding.firstDelaySeconds, 0.5);
  const RoutingRule& r = c.rules.at(0);
  EXPECT_EQ(r.seriesDescription->text, "low.?dose");
  EXPECT_EQ(r.destinations, (std::vector<std::string>{"PACS", "archive", "$sender"}));
  EXPECT_EQ(r.options["strength"].asInt(), 1);
  EXPECT_EQ(r.priority, 5);
}

TEST(RulesConfiguration, BadRegexUnknownDestinationAndEvaluationAreNamed) {
  auto error = [](const std::string& text) {
    try {
      ParseConfiguration(Parse(text));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(
      error(
          R"json({"Enhance": {"Rules": [{"Task": "denoise", "Model": "m", "SeriesDescription": "(("}]}})json")
          .find("Enhance.Rules[0].SeriesDescription: '((' is not a valid regular expression"),
      std::string::npos);
  EXPECT_NE(
      error(
          R"json({"Enhance": {"Rules": [{"Task": "denoise", "Model": "m", "Destinations": ["PAC"]}]}})json")
          .find("Enhance.Rules[0].Destinations[0]: 'PAC' is neither in DicomModalities nor in "
                "OrthancPeers"),
      std::string::npos);
  EXPECT_NE(
      error(R"json({"Enhance": {"RuleEvaluation": "Best"}})json").find("Enhance.RuleEvaluation"),
      std::string::npos);
  EXPECT_NE(
      error(
          R"json({"Enhance": {"Rules": [{"Task": "denoise", "Model": "m", "MinSlices": 9, "MaxSlices": 3}]}})json")
          .find("Enhance.Rules[0].MaxSlices"),
      std::string::npos);
  // Modalities kept in the database cannot be checked at start-up.
  EXPECT_EQ(error(R"json({"DicomModalitiesInDatabase": true,
      "Enhance": {"Rules": [{"Task": "denoise", "Model": "m", "Destinations": ["PAC"]}]}})json"),
            "no error");
}

TEST(SeriesRouting, AHugeValueFailsThePatternInsteadOfExhaustingTheStack) {
  // The standard library matches ".*" by recursion, one level per character: a value of
  // 200000 characters against "^a.*b" used to overflow the routing thread's stack.
  PluginConfiguration c = ParseConfiguration(Parse(R"json({"Enhance": {"Rules": [
      {"Task": "denoise", "Model": "m", "SeriesDescription": "^a.*b"}]}})json"));
  SeriesFacts f = Ct();
  f.seriesDescription = std::string(200000, 'a');
  std::string why;
  EXPECT_FALSE(RuleMatches(c.rules[0], f, &why));
  EXPECT_EQ(why,
            "SeriesDescription is 200000 characters long, more than the 1024 a pattern is "
            "matched against");
  EXPECT_TRUE(Route(c, f).rules.empty());
  f.seriesDescription = std::string(1000, 'a') + "b";
  EXPECT_TRUE(RuleMatches(c.rules[0], f, &why)) << why;
}

}  // namespace enhance::plugin
