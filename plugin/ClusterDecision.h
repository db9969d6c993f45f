// SPDX-License-Identifier: GPL-3.0-or-later
//
// What a cluster node does with a series taken from the queue, given what the shared
// index and the claims table say of it. Pure functions; no SDK, broker or database
// calls; thread-safe.
//
// The rules, which together make each stable state of a series processed once:
// - a series already processed (done, skipped or failed) in the state it is in now (the
//   same LastUpdate in the shared index) is not processed again;
// - a series that received an instance, at any node, within StableAge is waited for;
// - a series another node (or another worker of this one) holds a live claim on is the
//   holder's: a first delivery is a duplicate (the holder's own message stays
//   unacknowledged until it has finished), but a redelivery may be the holder's own
//   message, whose holder lost its broker connection or died, so it is kept until the
//   claim ends or its lease expires;
// - otherwise the node claims it (atomically, in PostgreSQL).
#pragma once

#include <optional>
#include <string>

namespace enhance::plugin {

// One row of the claims table, as read.
struct ClaimRow {
  bool exists = false;
  std::string state;            // "claimed", "released", "done", "skipped" or "failed"
  std::string owner;            // the node that claimed it last
  double leaseLeftSeconds = 0;  // by the database's clock; <= 0: expired
  std::string claimedUpdate;    // the series' LastUpdate when it was claimed
  std::string doneUpdate;       // the LastUpdate the finished processing was for
  int attempts = 0;
  std::string detail;  // why it failed or was skipped
};

struct DeliveryFacts {
  std::string lastUpdate;   // the series' LastUpdate in the shared index
  double quietSeconds = 0;  // seconds since then
  int stableAgeSeconds = 60;
  bool redelivered = false;
  std::string node;       // this node
  bool heldHere = false;  // this process is processing the series now
};

enum class ClusterAction {
  kAcknowledge,  // nothing to do: already processed, or a duplicate
  kWait,         // keep the message and look again in `waitSeconds`
  kClaim,        // claim the series, then process it
};

struct ClusterDecision {
  ClusterAction action = ClusterAction::kWait;
  double waitSeconds = 0;
  std::string reason;
};

ClusterDecision Decide(const ClaimRow& row, const DeliveryFacts& facts);

bool IsFinishedState(const std::string& state);

// Orthanc's LastUpdate ("20261203T143000", in UTC whatever the time zone) as seconds
// since the epoch; nullopt when it is not in that form.
std::optional<double> ParseOrthancTime(const std::string& text);

}  // namespace enhance::plugin
