// SPDX-License-Identifier: GPL-3.0-or-later
#include "ChangeLog.h"

#include <gtest/gtest.h>

namespace enhance::plugin {
namespace {

Json::Value Change(int64_t seq, const std::string& type, const std::string& resource,
                   const std::string& id) {
  Json::Value c;
  c["Seq"] = static_cast<Json::Int64>(seq);
  c["ChangeType"] = type;
  c["ResourceType"] = resource;
  c["ID"] = id;
  return c;
}

}  // namespace

TEST(ChangeLog, RoutesAnnouncedSeriesAndStopsBeforeOnesStillArriving) {
  Json::Value changes(Json::arrayValue);
  changes.append(Change(11, "NewSeries", "Series", "a"));
  changes.append(Change(12, "NewInstance", "Instance", "i1"));
  changes.append(Change(13, "StableSeries", "Series", "a"));
  changes.append(Change(14, "NewSeries", "Series", "b"));     // never became stable
  changes.append(Change(15, "StableSeries", "Series", "c"));  // announced before the checkpoint
  const ChangeScan scan = ScanChanges(changes, 10, 16);
  EXPECT_EQ(scan.series, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(scan.safeCheckpoint, 13);  // not past b's announcement
}

TEST(ChangeLog, AdvancesToTheEndWhenEverythingIsStable) {
  Json::Value changes(Json::arrayValue);
  changes.append(Change(21, "NewSeries", "Series", "a"));
  changes.append(Change(22, "StableSeries", "Series", "a"));
  EXPECT_EQ(ScanChanges(changes, 20, 30).safeCheckpoint, 30);
  EXPECT_EQ(ScanChanges(Json::Value(Json::arrayValue), 30, 30).safeCheckpoint, 30);
}

TEST(ChangeLog, NeverMovesBackwards) {
  Json::Value changes(Json::arrayValue);
  changes.append(Change(41, "NewSeries", "Series", "x"));
  EXPECT_EQ(ScanChanges(changes, 40, 45).safeCheckpoint, 40);
}

}  // namespace enhance::plugin
