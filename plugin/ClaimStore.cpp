// SPDX-License-Identifier: GPL-3.0-or-later
#include "ClaimStore.h"

#include <libpq-fe.h>

#include "enhance/base/Error.h"

namespace enhance::plugin {

struct ClaimStore::Connection {
  PGconn* pg = nullptr;
  ~Connection() {
    if (pg) PQfinish(pg);
  }
};

// The rows of one statement's answer (as text), and how many rows it changed.
struct ClaimStore::Result {
  std::vector<std::vector<std::string>> rows;
  int64_t affected = 0;
};

namespace {

constexpr const char* kCreateTable = R"SQL(
CREATE TABLE IF NOT EXISTS enhance_series_claims (
  series_id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  owner TEXT NOT NULL,
  lease_until TIMESTAMPTZ NOT NULL,
  claimed_update TEXT NOT NULL,
  done_update TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  detail TEXT NOT NULL DEFAULT '',
  updated TIMESTAMPTZ NOT NULL DEFAULT now())
)SQL";

// One transaction-scoped advisory lock serialises the nodes creating the table at once
// (CREATE TABLE IF NOT EXISTS alone can fail on a concurrent create).
constexpr const char* kSchema = "BEGIN; SELECT pg_advisory_xact_lock(5601); %CREATE%; COMMIT;";

constexpr const char* kRead =
    "SELECT state, owner, EXTRACT(EPOCH FROM (lease_until - now())), claimed_update, "
    "done_update, attempts, detail FROM enhance_series_claims WHERE series_id = $1";

constexpr const char* kClaim =
    "INSERT INTO enhance_series_claims AS c (series_id, state, owner, lease_until, "
    "claimed_update, attempts, detail, updated) "
    "VALUES ($1, 'claimed', $2, now() + make_interval(secs => $3::int), $4, 1, '', now()) "
    "ON CONFLICT (series_id) DO UPDATE SET state = 'claimed', owner = EXCLUDED.owner, "
    "lease_until = EXCLUDED.lease_until, claimed_update = EXCLUDED.claimed_update, "
    "attempts = c.attempts + 1, detail = '', updated = now() "
    "WHERE c.state <> 'claimed' OR c.lease_until < now() OR c.owner = EXCLUDED.owner "
    "RETURNING attempts";

constexpr const char* kRenew =
    "UPDATE enhance_series_claims SET lease_until = now() + make_interval(secs => $3::int), "
    "updated = now() WHERE series_id = $1 AND owner = $2 AND state = 'claimed'";

constexpr const char* kFinish =
    "UPDATE enhance_series_claims SET state = $3, done_update = claimed_update, detail = $4, "
    "lease_until = now(), updated = now() "
    "WHERE series_id = $1 AND owner = $2 AND state = 'claimed'";

constexpr const char* kRelease =
    "UPDATE enhance_series_claims SET state = 'released', lease_until = now(), updated = now() "
    "WHERE series_id = $1 AND owner = $2 AND state = 'claimed'";

constexpr const char* kCount = "SELECT state, count(*) FROM enhance_series_claims GROUP BY state";

constexpr const char* kHeld =
    "SELECT series_id FROM enhance_series_claims WHERE owner = $1 AND state = 'claimed' "
    "AND lease_until > now() ORDER BY series_id";

}  // namespace

ClaimStore::ClaimStore(std::map<std::string, std::string> keywords, std::string node,
                       int leaseSeconds)
    : keywords_(std::move(keywords)), node_(std::move(node)), leaseSeconds_(leaseSeconds) {}

ClaimStore::~ClaimStore() = default;

std::string ClaimStore::Describe() const {
  auto get = [this](const char* key) {
    const auto it = keywords_.find(key);
    return it == keywords_.end() ? std::string() : it->second;
  };
  return "database " + get("dbname") + " on " + get("host") + ":" + get("port");
}

ClaimStore::Result ClaimStore::Exec(const char* what, const char* sql,
                                    const std::vector<std::string>& params) {
  // Called with mutex_ held.
  auto fail = [&](const std::string& message) -> Error {
    lastError_ = message;
    connection_.reset();  // the next call connects again
    return Error(ErrorKind::kInternal,
                 "cluster claims (" + Describe() + "): " + what + ": " + message);
  };
  if (!connection_) {
    std::vector<const char*> keys;
    std::vector<const char*> values;
    for (const auto& [key, value] : keywords_) {
      keys.push_back(key.c_str());
      values.push_back(value.c_str());
    }
    keys.push_back("connect_timeout");
    values.push_back("5");
    keys.push_back("application_name");
    values.push_back("orthanc-enhance");
    keys.push_back(nullptr);
    values.push_back(nullptr);
    auto connection = std::make_unique<Connection>();
    connection->pg = PQconnectdbParams(keys.data(), values.data(), 0);
    if (!connection->pg || PQstatus(connection->pg) != CONNECTION_OK) {
      throw fail(std::string("cannot connect: ") +
                 (connection->pg ? PQerrorMessage(connection->pg) : "out of memory"));
    }
    // A statement never waits for long: a lock held by a node that hangs must not hang us.
    PGresult* set = PQexec(connection->pg, "SET statement_timeout = 10000");
    PQclear(set);
    connection_ = std::move(connection);
  }
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PGresult* result = params.empty() && std::string(sql).find("$1") == std::string::npos
                         ? PQexec(connection_->pg, sql)
                         : PQexecParams(connection_->pg, sql, static_cast<int>(values.size()),
                                        nullptr, values.data(), nullptr, nullptr, 0);
  const ExecStatusType status = result ? PQresultStatus(result) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    std::string message = result ? PQresultErrorMessage(result) : PQerrorMessage(connection_->pg);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' '))
      message.pop_back();
    PQclear(result);
    throw fail(message);
  }
  Result out;
  for (int r = 0; r < PQntuples(result); ++r) {
    std::vector<std::string> row;
    for (int c = 0; c < PQnfields(result); ++c) row.emplace_back(PQgetvalue(result, r, c));
    out.rows.push_back(std::move(row));
  }
  const char* affected = PQcmdTuples(result);
  if (affected && *affected) out.affected = std::stoll(affected);
  PQclear(result);
  lastError_.clear();
  return out;
}

void ClaimStore::EnsureSchema() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string sql = kSchema;
  sql.replace(sql.find("%CREATE%"), 8, kCreateTable);
  Exec("create the claims table", sql.c_str(), {});
}

ClaimRow ClaimStore::Read(const std::string& series) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Result result = Exec("read the claim", kRead, {series});
  ClaimRow row;
  if (result.rows.empty()) return row;
  const auto& r = result.rows[0];
  row.exists = true;
  row.state = r[0];
  row.owner = r[1];
  row.leaseLeftSeconds = std::stod(r[2]);
  row.claimedUpdate = r[3];
  row.doneUpdate = r[4];
  row.attempts = std::stoi(r[5]);
  row.detail = r[6];
  return row;
}

std::optional<int> ClaimStore::Claim(const std::string& series, const std::string& lastUpdate) {
  std::lock_guard<std::mutex> lock(mutex_);
  const Result result =
      Exec("claim", kClaim, {series, node_, std::to_string(leaseSeconds_), lastUpdate});
  if (result.rows.empty()) return std::nullopt;
  return std::stoi(result.rows[0][0]);
}

bool ClaimStore::Renew(const std::string& series) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Exec("renew the lease", kRenew, {series, node_, std::to_string(leaseSeconds_)}).affected ==
         1;
}

bool ClaimStore::Finish(const std::string& series, const std::string& state,
                        const std::string& detail) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Exec("finish", kFinish, {series, node_, state, detail}).affected == 1;
}

void ClaimStore::Release(const std::string& series) {
  std::lock_guard<std::mutex> lock(mutex_);
  Exec("release", kRelease, {series, node_});
}

std::map<std::string, int64_t> ClaimStore::CountByState() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, int64_t> counts;
  for (const auto& row : Exec("count the claims", kCount, {}).rows)
    counts[row[0]] = std::stoll(row[1]);
  return counts;
}

std::vector<std::string> ClaimStore::HeldByThisNode() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> series;
  for (const auto& row : Exec("list this node's claims", kHeld, {node_}).rows)
    series.push_back(row[0]);
  return series;
}

bool ClaimStore::Connected() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return connection_ != nullptr && PQstatus(connection_->pg) == CONNECTION_OK;
}

std::string ClaimStore::LastError() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lastError_;
}

}  // namespace enhance::plugin
