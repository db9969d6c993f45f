// SPDX-License-Identifier: GPL-3.0-or-later
#include "ClusterDecision.h"

#include <gtest/gtest.h>

namespace enhance::plugin {
namespace {

DeliveryFacts Stable(bool redelivered = false) {
  DeliveryFacts f;
  f.lastUpdate = "20261203T100000";
  f.quietSeconds = 100;
  f.stableAgeSeconds = 60;
  f.redelivered = redelivered;
  f.node = "a";
  return f;
}

ClaimRow Row(const std::string& state, const std::string& owner, double leaseLeft,
             const std::string& doneUpdate = "") {
  ClaimRow row;
  row.exists = true;
  row.state = state;
  row.owner = owner;
  row.leaseLeftSeconds = leaseLeft;
  row.doneUpdate = doneUpdate;
  return row;
}

TEST(ClusterDecision, ANewStableSeriesIsClaimed) {
  EXPECT_EQ(Decide(ClaimRow{}, Stable()).action, ClusterAction::kClaim);
}

TEST(ClusterDecision, ASeriesStillArrivingAnywhereIsWaitedFor) {
  DeliveryFacts f = Stable();
  f.quietSeconds = 45;
  const ClusterDecision d = Decide(ClaimRow{}, f);
  EXPECT_EQ(d.action, ClusterAction::kWait);
  EXPECT_DOUBLE_EQ(d.waitSeconds, 15);
}

TEST(ClusterDecision, ASeriesFinishedInThisStateIsNotProcessedAgain) {
  for (const char* state : {"done", "skipped", "failed"}) {
    const ClusterDecision d = Decide(Row(state, "b", -5, "20261203T100000"), Stable(true));
    EXPECT_EQ(d.action, ClusterAction::kAcknowledge) << state;
  }
  // Instances arrived since: processed again.
  EXPECT_EQ(Decide(Row("done", "b", -5, "20261203T090000"), Stable()).action,
            ClusterAction::kClaim);
}

TEST(ClusterDecision, AFirstDeliveryOfASeriesAnotherNodeHoldsIsADuplicate) {
  const ClusterDecision d = Decide(Row("claimed", "b", 20), Stable(false));
  EXPECT_EQ(d.action, ClusterAction::kAcknowledge);
  EXPECT_NE(d.reason.find("duplicate"), std::string::npos);
}

TEST(ClusterDecision, ARedeliveryIsKeptUntilTheHoldersLeaseExpires) {
  EXPECT_EQ(Decide(Row("claimed", "b", 20), Stable(true)).action, ClusterAction::kWait);
  const ClusterDecision expired = Decide(Row("claimed", "b", -0.1), Stable(true));
  EXPECT_EQ(expired.action, ClusterAction::kClaim);
  EXPECT_NE(expired.reason.find("expired"), std::string::npos);
}

TEST(ClusterDecision, ARedeliveryOfASeriesThisProcessIsWorkingOnIsKept) {
  // The broker restarted: the message of the series being processed came back; acking it
  // now would lose the series if this node died before finishing.
  DeliveryFacts f = Stable(true);
  f.heldHere = true;
  EXPECT_EQ(Decide(Row("claimed", "a", 20), f).action, ClusterAction::kWait);
  f.redelivered = false;
  EXPECT_EQ(Decide(Row("claimed", "a", 20), f).action, ClusterAction::kAcknowledge);
}

TEST(ClusterDecision, ARestartedNodeTakesItsOwnClaimBackAtOnce) {
  EXPECT_EQ(Decide(Row("claimed", "a", 20), Stable(true)).action, ClusterAction::kClaim);
}

TEST(ClusterDecision, AReleasedSeriesIsClaimedAtOnce) {
  EXPECT_EQ(Decide(Row("released", "b", 0), Stable(true)).action, ClusterAction::kClaim);
}

TEST(ClusterDecision, OrthancTimesAreUtc) {
  EXPECT_EQ(ParseOrthancTime("19700101T000100"), 60.0);
  EXPECT_EQ(ParseOrthancTime("20261203T143000"), 1796308200.0);
  EXPECT_FALSE(ParseOrthancTime("2026-12-03T14:30:00"));
  EXPECT_FALSE(ParseOrthancTime(""));
  EXPECT_FALSE(ParseOrthancTime("20261203X143000"));
}

}  // namespace
}  // namespace enhance::plugin
