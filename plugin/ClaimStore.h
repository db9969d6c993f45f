// SPDX-License-Identifier: GPL-3.0-or-later
//
// The cluster's claims on series, in one table of the PostgreSQL database the nodes
// share (enhance_series_claims). A claim is a lease: the node renews it while it works,
// and another node may take the series over once it has expired. Every time is the
// database server's clock, so the nodes' clocks need not agree.
//
// Claim() is one INSERT ... ON CONFLICT DO UPDATE ... WHERE statement: PostgreSQL locks the
// row, so of two nodes claiming at once exactly one gets it.
//
// Failures (the database unreachable, refusing connections) throw enhance::Error
// (kInternal) naming the database and the operation; the next call reconnects.
//
// Thread-safety: all methods may be called from any thread (one connection, serialised).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ClusterDecision.h"

namespace enhance::plugin {

class ClaimStore {
 public:
  // `keywords`: libpq connection keywords (host, port, dbname, user, password).
  ClaimStore(std::map<std::string, std::string> keywords, std::string node, int leaseSeconds);
  ~ClaimStore();
  ClaimStore(const ClaimStore&) = delete;
  ClaimStore& operator=(const ClaimStore&) = delete;

  // Creates the table when it does not exist (several nodes may start at once).
  void EnsureSchema();

  ClaimRow Read(const std::string& series);
  // Claims `series` for this node, recording the LastUpdate it is processed in, unless
  // another node holds a live claim. Returns the attempt number, or nullopt.
  std::optional<int> Claim(const std::string& series, const std::string& lastUpdate);
  // Extends this node's lease; false when the claim is no longer this node's.
  bool Renew(const std::string& series);
  // Ends this node's claim: `state` is "done", "skipped" or "failed". False when the
  // claim was no longer this node's.
  bool Finish(const std::string& series, const std::string& state, const std::string& detail);
  // Gives this node's live claim back at once (the node is stopping).
  void Release(const std::string& series);

  // Rows per state, and the series this node holds live claims on.
  std::map<std::string, int64_t> CountByState();
  std::vector<std::string> HeldByThisNode();

  bool Connected() const;
  std::string LastError() const;
  std::string Describe() const;  // "database NAME on HOST:PORT"

 private:
  struct Result;
  Result Exec(const char* what, const char* sql, const std::vector<std::string>& params);

  const std::map<std::string, std::string> keywords_;
  const std::string node_;
  const int leaseSeconds_;
  mutable std::mutex mutex_;
  struct Connection;
  std::unique_ptr<Connection> connection_;
  std::string lastError_;
};

}  // namespace enhance::plugin
