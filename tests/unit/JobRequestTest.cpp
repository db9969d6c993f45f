// SPDX-License-Identifier: GPL-3.0-or-later
#include "JobRequest.h"

#include <gtest/gtest.h>

#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"

namespace enhance::plugin {

TEST(JobRequest, UncertaintyIsWantedUnlessTheOptionsSayNo) {
  EXPECT_TRUE(UncertaintyWanted(Json::Value(Json::objectValue)));
  Json::Value options;
  options["Uncertainty"] = false;
  EXPECT_FALSE(UncertaintyWanted(options));
  options["Uncertainty"] = true;
  EXPECT_TRUE(UncertaintyWanted(options));
  options["Uncertainty"] = "no";
  EXPECT_THROW(UncertaintyWanted(options), Error);
  // The uncertainty series' UID follows from the derived series' UID alone.
  EXPECT_EQ(UncertaintySeriesUid("1.2.3", ""), UncertaintySeriesUid("1.2.3", ""));
  EXPECT_NE(UncertaintySeriesUid("1.2.3", ""), UncertaintySeriesUid("1.2.4", ""));
  EXPECT_NE(UncertaintySeriesUid("1.2.3", ""), "1.2.3");
}

TEST(JobRequest, DomainCheckWarnsUnlessTheOptionsSayOtherwise) {
  EXPECT_EQ(DomainActionWanted(Json::Value(Json::objectValue)), DomainAction::kWarn);
  Json::Value options;
  options["DomainCheck"] = "refuse";
  EXPECT_EQ(DomainActionWanted(options), DomainAction::kRefuse);
  options["DomainCheck"] = "off";
  EXPECT_EQ(DomainActionWanted(options), DomainAction::kOff);
  EXPECT_STREQ(DomainActionName(DomainAction::kOff), "off");
  options["DomainCheck"] = "warn";
  EXPECT_EQ(DomainActionWanted(options), DomainAction::kWarn);
  for (const Json::Value& bad : {Json::Value("Refuse"), Json::Value(true), Json::Value(1)}) {
    options["DomainCheck"] = bad;
    try {
      DomainActionWanted(options);
      ADD_FAILURE() << "accepted " << bad.toStyledString();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("Options.DomainCheck must be"), std::string::npos);
    }
  }
}

TEST(JobRequest, RoundTripsThroughJson) {
  JobRequest r;
  r.seriesId = "s1";
  r.task = "denoise";
  r.model = "m";
  r.options["strength"] = 2;
  r.destinations = {"PACS", "$sender"};
  r.senderAet = "CT1";
  r.priority = 3;
  r.force = true;
  r.nonce = "2.25.9";
  r.origin = "REST";
  const JobRequest back = JobRequest::FromJson(r.ToJson());
  EXPECT_EQ(back.ToJson(), r.ToJson());
}

TEST(JobRequest, MissingFieldsAreNamed) {
  Json::Value v;
  v["Series"] = "s";
  v["Task"] = "denoise";
  try {
    JobRequest::FromJson(v);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "job request: \"Model\" is missing");
  }
}

TEST(JobRequest, DerivedSeriesUidIsStableAndChangesWithEveryInput) {
  JobRequest r;
  r.task = "denoise";
  const std::string a = DerivedSeriesUid(r, "1.2.3", "2.25.7", "");
  EXPECT_TRUE(IsValidUid(a));
  EXPECT_EQ(a, DerivedSeriesUid(r, "1.2.3", "2.25.7", ""));
  EXPECT_NE(a, DerivedSeriesUid(r, "1.2.4", "2.25.7", ""));  // another source
  EXPECT_NE(a, DerivedSeriesUid(r, "1.2.3", "2.25.8", ""));  // other weights
  JobRequest forced = r;
  forced.nonce = "2.25.99";
  EXPECT_NE(a, DerivedSeriesUid(forced, "1.2.3", "2.25.7", ""));
  JobRequest options = r;
  options.options["x"] = 1;
  EXPECT_NE(a, DerivedSeriesUid(options, "1.2.3", "2.25.7", ""));
  const std::string rooted = DerivedSeriesUid(r, "1.2.3", "2.25.7", "1.2.826.0.1.3680043.10.5");
  EXPECT_EQ(rooted.rfind("1.2.826.0.1.3680043.10.5.", 0), 0u);
  EXPECT_TRUE(IsValidUid(rooted)) << rooted;
}

}  // namespace enhance::plugin
