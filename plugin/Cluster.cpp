// SPDX-License-Identifier: GPL-3.0-or-later
#include "Cluster.h"

#include <chrono>

#include "Jobs.h"
#include "OrthancApi.h"
#include "PluginContext.h"
#include "Router.h"
#include "SeriesRouting.h"
#include "enhance/base/Error.h"

namespace enhance::plugin {
namespace {

double WallClock() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double Monotonic() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string SeriesOf(const std::string& body) {
  try {
    const Json::Value message = ParseJson(body, "cluster message");
    if (message.isObject() && message["Series"].isString()) return message["Series"].asString();
  } catch (const std::exception&) {
  }
  return "";
}

}  // namespace

ClusterNode::ClusterNode(PluginContext& plugin)
    : plugin_(plugin),
      claims_(plugin.config.cluster.database, plugin.config.cluster.node,
              plugin.config.cluster.leaseSeconds),
      broker_(
          plugin.config.cluster.broker, [this](Delivery d) { OnDelivery(std::move(d)); },
          [this](const std::string& message) { plugin_.api.LogWarning(message); }) {}

ClusterNode::~ClusterNode() { Stop(); }

void ClusterNode::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (started_) return;
  started_ = true;
  stopping_ = false;
  try {
    claims_.EnsureSchema();
  } catch (const std::exception& e) {
    // Not fatal: the database may come up later; every claim retries.
    plugin_.api.LogError(e.what());
  }
  // Twice the prefetch: after a broker restart the broker hands out new messages while
  // the series of the old connection are still being processed.
  const int workers = 2 * plugin_.config.cluster.broker.prefetch;
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
  retrier_ = std::thread([this] { RetryUnpublished(); });
  broker_.Start();
  plugin_.api.LogWarning("cluster: node " + plugin_.config.cluster.node + ", broker " +
                         broker_.Describe() + ", claims in " + claims_.Describe() + ", lease " +
                         std::to_string(plugin_.config.cluster.leaseSeconds) + " s, stable after " +
                         std::to_string(plugin_.config.cluster.stableAgeSeconds) + " s");
}

void ClusterNode::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_) return;
    started_ = false;
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
  workers_.clear();
  if (retrier_.joinable()) retrier_.join();
  broker_.Stop();  // after the workers: what they left unacknowledged goes back to the queue
}

bool ClusterNode::Sleep(double seconds) {
  std::unique_lock<std::mutex> lock(mutex_);
  wake_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return stopping_.load(); });
  return !stopping_;
}

void ClusterNode::OnDelivery(Delivery delivery) {
  // A message that names no series goes to the dead letters as it arrives, not after the
  // series this node's workers are busy with (Reject only queues the answer).
  if (SeriesOf(delivery.body).empty()) {
    plugin_.api.LogError("cluster: a message that names no series goes to the dead letters (" +
                         broker_.DeadLetterQueue() + "): " + delivery.body.substr(0, 200));
    broker_.Reject(delivery, true);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    deliveries_.push_back(std::move(delivery));
  }
  wake_.notify_one();
}

void ClusterNode::Work() {
  while (true) {
    Delivery delivery;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !deliveries_.empty(); });
      if (stopping_) return;
      delivery = std::move(deliveries_.front());
      deliveries_.pop_front();
    }
    HandleWithRetries(delivery);
  }
}

void ClusterNode::HandleWithRetries(const Delivery& delivery) {
  // A failure that passes (Orthanc busy, a database or broker hiccup) is retried here, after
  // 2, 4 and 8 s, before the message goes back to the queue: each return counts towards
  // MaxDeliveries, after which the broker dead-letters it, and a series must not end there
  // for a few seconds' outage.
  constexpr int kRetriesHere = 3;
  for (int attempt = 0;; ++attempt) {
    std::string error;
    try {
      Handle(delivery);
      return;
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown error";
    }
    const double wait = 2 << attempt;
    if (attempt < kRetriesHere && !stopping_) {
      plugin_.api.LogWarning("cluster: message " + delivery.body + ": " + error + "; retrying in " +
                             std::to_string(static_cast<int>(wait)) + " s");
      if (Sleep(wait)) continue;
    }
    // Back to the queue (for any node), and to the dead letters after MaxDeliveries.
    plugin_.api.LogError("cluster: message " + delivery.body + ": " + error +
                         "; given back to the queue (dead-lettered after " +
                         std::to_string(plugin_.config.cluster.broker.maxDeliveries) +
                         " deliveries)");
    broker_.Reject(delivery);
    return;
  }
}

void ClusterNode::Handle(const Delivery& delivery) {
  const std::string seriesId = SeriesOf(delivery.body);  // not empty: OnDelivery saw to it
  std::string lastReason;
  while (!stopping_) {
    Json::Value series;
    try {
      series = plugin_.api.GetJson("/series/" + seriesId);
    } catch (const OrthancApiError& e) {
      if (e.code() != OrthancPluginErrorCode_UnknownResource) throw;
      plugin_.api.LogInfo("cluster: series " + seriesId + " was deleted; nothing to do");
      broker_.Acknowledge(delivery);
      return;
    }
    const DeliveryFacts facts = FactsOf(seriesId, series, delivery);
    ClaimRow row;
    try {
      row = claims_.Read(seriesId);
    } catch (const Error& e) {
      plugin_.api.LogWarning(std::string(e.what()) + "; series " + seriesId + " waits");
      if (!Sleep(2)) return;
      continue;
    }
    const ClusterDecision decision = Decide(row, facts);
    if (decision.reason != lastReason) {
      plugin_.api.LogInfo("cluster: series " + seriesId + ": " + decision.reason);
      lastReason = decision.reason;
    }
    if (decision.action == ClusterAction::kAcknowledge) {
      duplicates_++;
      broker_.Acknowledge(delivery);
      return;
    }
    if (decision.action == ClusterAction::kWait) {
      if (!Sleep(std::min(std::max(decision.waitSeconds, 0.2), 2.0))) return;
      continue;
    }
    if (ClaimAndProcess(seriesId, series, facts, row, decision.reason, delivery)) return;
  }
}

DeliveryFacts ClusterNode::FactsOf(const std::string& seriesId, const Json::Value& series,
                                   const Delivery& delivery) const {
  DeliveryFacts facts;
  facts.lastUpdate = series["LastUpdate"].asString();
  const auto updated = ParseOrthancTime(facts.lastUpdate);
  // LastUpdate has a resolution of one second: counted from the end of that second.
  facts.quietSeconds = updated ? WallClock() - *updated - 1 : 1e9;
  facts.stableAgeSeconds = plugin_.config.cluster.stableAgeSeconds;
  facts.redelivered = delivery.redelivered;
  facts.node = plugin_.config.cluster.node;
  facts.heldHere = Holds(seriesId);
  return facts;
}

bool ClusterNode::ClaimAndProcess(const std::string& seriesId, const Json::Value& series,
                                  const DeliveryFacts& facts, const ClaimRow& row,
                                  const std::string& reason, const Delivery& delivery) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!held_.insert(seriesId).second) return false;  // another worker here has just claimed it
  }
  // Whatever happens below, this process no longer holds the series afterwards.
  struct Unhold {
    ClusterNode& node;
    const std::string& id;
    ~Unhold() {
      std::lock_guard<std::mutex> lock(node.mutex_);
      node.held_.erase(id);
    }
  } unhold{*this, seriesId};
  std::optional<int> attempt;
  try {
    attempt = claims_.Claim(seriesId, facts.lastUpdate);
  } catch (const Error& e) {
    plugin_.api.LogWarning(std::string(e.what()) + "; series " + seriesId + " waits");
  }
  if (!attempt) {
    Sleep(0.5);
    return false;  // another node was faster, or the database is away: look again
  }
  if (row.exists && row.state == "claimed" && row.owner != facts.node) takenOver_++;
  plugin_.api.LogWarning("cluster: node " + facts.node + " claimed series " + seriesId +
                         " (attempt " + std::to_string(*attempt) + ": " + reason + ")");
  if (Process(seriesId, series, facts.lastUpdate)) broker_.Acknowledge(delivery);
  return true;
}

bool ClusterNode::Process(const std::string& seriesId, const Json::Value& series,
                          const std::string& lastUpdate) {
  Outcome outcome;
  const std::vector<std::string> jobs = SubmitJobs(seriesId, series, outcome);
  switch (WaitForJobs(seriesId, jobs, outcome)) {
    case Waited::kStopping:
      try {
        claims_.Release(seriesId);
      } catch (const std::exception& e) {
        plugin_.api.LogWarning(std::string(e.what()) + " (its lease expires in " +
                               std::to_string(plugin_.config.cluster.leaseSeconds) + " s)");
      }
      return false;
    case Waited::kLostClaim:
      return true;  // the node that took it over has its own message
    case Waited::kEnded:
      break;
  }
  // Record the outcome; a database that is away is waited for.
  while (true) {
    try {
      if (!claims_.Finish(seriesId, outcome.state, outcome.detail)) {
        lostClaims_++;
        plugin_.api.LogError("cluster: series " + seriesId +
                             ": finished, but another node had taken the claim over");
      }
      break;
    } catch (const Error& e) {
      plugin_.api.LogWarning(std::string(e.what()) + "; retrying");
      if (!Sleep(2)) return false;
    }
  }
  processed_++;
  plugin_.api.LogWarning("cluster: series " + seriesId + " " + outcome.state + " on node " +
                         plugin_.config.cluster.node +
                         (outcome.detail.empty() ? "" : ": " + outcome.detail));
  // Instances that arrived while it was processed: the series is processed again.
  try {
    const Json::Value now = plugin_.api.GetJson("/series/" + seriesId);
    if (now["LastUpdate"].asString() != lastUpdate) Announce(seriesId);
  } catch (const std::exception&) {
  }
  return true;
}

std::vector<std::string> ClusterNode::SubmitJobs(const std::string& seriesId,
                                                 const Json::Value& series, Outcome& outcome) {
  std::vector<std::string> jobs;
  try {
    const SeriesFacts facts = ReadSeriesFacts(plugin_, series, series["Instances"][0].asString());
    const RoutingDecision decision = Route(plugin_.config, facts);
    if (decision.rules.empty()) {
      outcome.state = "skipped";
      outcome.detail = decision.reason;
    }
    for (const RoutingRule* rule : decision.rules) {
      JobRequest request = RequestForRule(*rule, seriesId, facts);
      request.origin += " (cluster node " + plugin_.config.cluster.node + ")";
      request.cluster = true;
      jobs.push_back(SubmitSeriesJob(plugin_, request));
      plugin_.api.LogInfo("cluster: series " + seriesId + ": " + decision.reason + "; job " +
                          jobs.back() + " submitted");
    }
  } catch (const std::exception& e) {
    outcome.state = "failed";
    outcome.detail = e.what();
  }
  return jobs;
}

ClusterNode::Waited ClusterNode::WaitForJobs(const std::string& seriesId,
                                             const std::vector<std::string>& jobs,
                                             Outcome& outcome) {
  const double renewEvery = plugin_.config.cluster.leaseSeconds / 3.0;
  double lastRenewal = Monotonic();
  std::set<std::string> running(jobs.begin(), jobs.end());
  while (!running.empty()) {
    if (!Sleep(0.5)) return Waited::kStopping;
    if (Monotonic() - lastRenewal >= renewEvery) {
      try {
        if (!claims_.Renew(seriesId)) {
          lostClaims_++;
          plugin_.api.LogError("cluster: series " + seriesId +
                               ": another node took the claim over (this node could not renew "
                               "its lease in time); cancelling this node's jobs");
          for (const auto& job : running) {
            try {
              plugin_.api.Post("/jobs/" + job + "/cancel", "");
            } catch (const std::exception&) {
            }
          }
          return Waited::kLostClaim;
        }
        lastRenewal = Monotonic();
      } catch (const Error& e) {
        plugin_.api.LogWarning(std::string(e.what()) + "; the lease of series " + seriesId +
                               " is renewed as soon as the database answers");
      }
    }
    for (auto it = running.begin(); it != running.end();) {
      const Json::Value job = plugin_.api.GetJson("/jobs/" + *it);
      const std::string state = job["State"].asString();
      if (state == "Success") {
        it = running.erase(it);
      } else if (state == "Failure") {
        const Json::Value& content = job["Content"];
        outcome.state = "failed";
        outcome.detail = "job " + *it + ": " +
                         (content["ErrorMessage"].isString() ? content["ErrorMessage"].asString()
                                                             : job["ErrorDescription"].asString());
        it = running.erase(it);
      } else {
        ++it;  // Pending, Running, Paused (by someone) or Retry
      }
    }
  }
  return Waited::kEnded;
}

bool ClusterNode::Publish(const std::string& seriesId) {
  Json::Value message;
  message["Series"] = seriesId;
  message["From"] = plugin_.config.cluster.node;
  if (!broker_.Publish(WriteJson(message))) return false;
  published_++;
  return true;
}

void ClusterNode::Announce(const std::string& seriesId) {
  if (Publish(seriesId)) {
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    unpublished_.insert(seriesId);
  }
  plugin_.api.LogWarning("cluster: series " + seriesId +
                         " could not be published (broker unavailable); kept and retried");
}

size_t ClusterNode::Unpublished() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return unpublished_.size();
}

bool ClusterNode::Holds(const std::string& seriesId) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return held_.count(seriesId) > 0;
}

void ClusterNode::RetryUnpublished() {
  double backoff = 1;
  double lastMetrics = 0;
  while (Sleep(backoff)) {
    if (Monotonic() - lastMetrics >= 5) {  // keeps the cluster's Prometheus metrics fresh
      lastMetrics = Monotonic();
      try {
        Status();
      } catch (const std::exception&) {
      }
    }
    std::set<std::string> pending;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending.swap(unpublished_);
    }
    if (pending.empty()) {
      backoff = 1;
      continue;
    }
    size_t sent = 0;
    for (const auto& id : pending) {
      if (!stopping_ && Publish(id)) {
        sent++;
      } else {
        std::lock_guard<std::mutex> lock(mutex_);
        unpublished_.insert(id);
      }
    }
    if (sent > 0) {
      plugin_.api.LogWarning("cluster: published " + std::to_string(sent) +
                             " series kept while the broker was unavailable");
    }
    backoff = sent == pending.size() ? 1 : std::min(backoff * 2, 30.0);
  }
}

Json::Value ClusterNode::Status() {
  Json::Value s;
  s["Enabled"] = true;
  s["Node"] = plugin_.config.cluster.node;
  const WorkBroker::Status broker = broker_.GetStatus();
  Json::Value& b = s["Broker"];
  b["Address"] = broker_.Describe();
  b["Consuming"] = broker.consuming;
  b["Publishing"] = broker.publishing;
  b["LastError"] = broker.lastError;
  b["Queue"] = plugin_.config.cluster.broker.queue;
  b["QueueDepth"] = static_cast<Json::Int64>(broker.queueDepth);
  b["Consumers"] = static_cast<Json::Int64>(broker.consumers);
  b["DeadLetterQueue"] = broker_.DeadLetterQueue();
  b["DeadLetters"] = static_cast<Json::Int64>(broker.deadLetters);
  Json::Value& d = s["Database"];
  d["Address"] = claims_.Describe();
  try {
    Json::Value counts(Json::objectValue);
    for (const auto& [state, count] : claims_.CountByState())
      counts[state] = static_cast<Json::Int64>(count);
    d["SeriesByState"] = counts;
    Json::Value held(Json::arrayValue);
    for (const auto& id : claims_.HeldByThisNode()) held.append(id);
    s["ClaimsHeld"] = held;
    d["Connected"] = true;
  } catch (const std::exception& e) {
    d["Connected"] = false;
  }
  d["LastError"] = claims_.LastError();
  s["Unpublished"] = static_cast<Json::UInt64>(Unpublished());
  s["Published"] = static_cast<Json::UInt64>(published_);
  s["Processed"] = static_cast<Json::UInt64>(processed_);
  s["Duplicates"] = static_cast<Json::UInt64>(duplicates_);
  s["TakenOver"] = static_cast<Json::UInt64>(takenOver_);
  s["LostClaims"] = static_cast<Json::UInt64>(lostClaims_);
  s["LeaseSeconds"] = plugin_.config.cluster.leaseSeconds;
  s["StableAgeSeconds"] = plugin_.config.cluster.stableAgeSeconds;

  auto set = [this](const char* name, double value) {
    OrthancPluginSetMetricsValue(plugin_.api.context(), name, static_cast<float>(value),
                                 OrthancPluginMetricsType_Default);
  };
  set("orthanc_enhance_cluster_broker_connected", broker.consuming ? 1 : 0);
  set("orthanc_enhance_cluster_queue_depth", static_cast<double>(broker.queueDepth));
  set("orthanc_enhance_cluster_dead_letters", static_cast<double>(broker.deadLetters));
  set("orthanc_enhance_cluster_claims_held", s["ClaimsHeld"].size());
  set("orthanc_enhance_cluster_unpublished", static_cast<double>(Unpublished()));
  return s;
}

}  // namespace enhance::plugin
