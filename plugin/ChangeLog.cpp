// SPDX-License-Identifier: GPL-3.0-or-later
#include "ChangeLog.h"

#include <algorithm>
#include <map>

namespace enhance::plugin {

ChangeScan ScanChanges(const Json::Value& changes, int64_t checkpoint, int64_t last) {
  ChangeScan scan;
  std::map<std::string, int64_t> waiting;  // series announced but not yet stable -> first seq
  for (const auto& change : changes) {
    const std::string type = change["ChangeType"].asString();
    if (change["ResourceType"].asString() != "Series") continue;
    const std::string id = change["ID"].asString();
    const int64_t seq = change["Seq"].asInt64();
    if (type == "NewSeries") {
      waiting.emplace(id, seq);
    } else if (type == "StableSeries") {
      waiting.erase(id);
    } else {
      continue;
    }
    if (std::find(scan.series.begin(), scan.series.end(), id) == scan.series.end()) {
      scan.series.push_back(id);
    }
  }
  scan.safeCheckpoint = last;
  for (const auto& [id, seq] : waiting)
    scan.safeCheckpoint = std::min(scan.safeCheckpoint, seq - 1);
  scan.safeCheckpoint = std::max(scan.safeCheckpoint, checkpoint);
  return scan;
}

}  // namespace enhance::plugin
