// SPDX-License-Identifier: GPL-3.0-or-later
#include "ClusterDecision.h"

#include <algorithm>
#include <cctype>
#include <ctime>

namespace enhance::plugin {

bool IsFinishedState(const std::string& state) {
  return state == "done" || state == "skipped" || state == "failed";
}

ClusterDecision Decide(const ClaimRow& row, const DeliveryFacts& facts) {
  ClusterDecision d;
  if (row.exists && IsFinishedState(row.state) && row.doneUpdate == facts.lastUpdate) {
    d.action = ClusterAction::kAcknowledge;
    d.reason = "already " + row.state + " by " + row.owner + " in this state of the series";
    return d;
  }
  if (facts.quietSeconds < facts.stableAgeSeconds) {
    d.action = ClusterAction::kWait;
    d.waitSeconds = facts.stableAgeSeconds - facts.quietSeconds;
    d.reason = "an instance arrived " + std::to_string(static_cast<int>(facts.quietSeconds)) +
               " s ago; waiting until the series is stable for the cluster";
    return d;
  }
  const bool live = row.exists && row.state == "claimed" && row.leaseLeftSeconds > 0;
  const bool ours = row.owner == facts.node;
  if (live && (!ours || facts.heldHere)) {
    if (facts.redelivered) {
      d.action = ClusterAction::kWait;
      d.waitSeconds = std::min(row.leaseLeftSeconds, 1.0);
      d.reason = "redelivered while " + row.owner +
                 " holds the claim: kept until it finishes or its lease expires";
    } else {
      d.action = ClusterAction::kAcknowledge;
      d.reason = "a duplicate: " + row.owner + " is processing the series";
    }
    return d;
  }
  d.action = ClusterAction::kClaim;
  if (!row.exists) {
    d.reason = "first claim";
  } else if (row.state == "claimed" && !ours) {
    d.reason = "the lease of " + row.owner + " expired: taking the series over";
  } else if (row.state == "claimed") {
    d.reason = "this node's own claim from before it restarted";
  } else if (row.state == "released") {
    d.reason = row.owner + " released it";
  } else {
    d.reason = "the series changed since it was " + row.state;
  }
  return d;
}

std::optional<double> ParseOrthancTime(const std::string& text) {
  if (text.size() != 15 || text[8] != 'T') return std::nullopt;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i != 8 && !std::isdigit(static_cast<unsigned char>(text[i]))) return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = std::stoi(text.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(text.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(text.substr(6, 2));
  tm.tm_hour = std::stoi(text.substr(9, 2));
  tm.tm_min = std::stoi(text.substr(11, 2));
  tm.tm_sec = std::stoi(text.substr(13, 2));
  const std::time_t t = timegm(&tm);  // Orthanc writes LastUpdate in UTC
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<double>(t);
}

}  // namespace enhance::plugin
