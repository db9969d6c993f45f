// SPDX-License-Identifier: GPL-3.0-or-later
//
// Series that arrived while the plugin could not route them. Orthanc does not announce
// StableSeries again after a restart for a series that was still arriving when it
// stopped, and a series queued for routing is lost when Orthanc stops. The plugin keeps a
// checkpoint in Orthanc's changes log (a global property) that never passes a series
// still waiting to be stable; at start-up it routes every series announced after the
// checkpoint. Routing twice is harmless: a job finds the derived series of the first.
// Pure functions; no SDK calls; thread-safe.
#pragma once

#include <json/value.h>

#include <cstdint>
#include <string>
#include <vector>

namespace enhance::plugin {

struct ChangeScan {
  std::vector<std::string> series;  // series with NewSeries or StableSeries after the checkpoint
  int64_t safeCheckpoint = 0;       // advance the checkpoint to here
};

// `changes` are the "Changes" entries of GET /changes?since=checkpoint, in order; `last`
// is the log's last sequence number.
ChangeScan ScanChanges(const Json::Value& changes, int64_t checkpoint, int64_t last);

}  // namespace enhance::plugin
