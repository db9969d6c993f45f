// SPDX-License-Identifier: GPL-3.0-or-later
//
// Cluster mode (Enhance.Cluster.Enable): several Orthanc nodes on one PostgreSQL index
// share the work. A node that sees a series become stable publishes it to the RabbitMQ
// queue (WorkBroker) instead of routing it itself; any node consumes, waits until the
// series is stable for the whole cluster (its LastUpdate in the shared index), claims it
// in PostgreSQL (ClaimStore, a lease it renews), routes it with the same rules and runs
// the same jobs as a single node, records the outcome, and only then acknowledges the
// message. ClusterDecision says what a node does with each message.
//
// Failures: a node that dies leaves its message unacknowledged (the broker gives it to
// another node) and its claim unrenewed (taken over when the lease expires); the derived
// series' UIDs are a function of the request, so the next job finds and completes a
// partial result. A broker that is down is retried with backoff; series that could not be
// published are kept and published again, and the changes-log checkpoint does not pass
// them, so a node restarted meanwhile publishes them again from Orthanc's /changes. A
// database that refuses connections delays claims and renewals; they are retried.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <json/value.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ClaimStore.h"
#include "WorkBroker.h"

namespace enhance::plugin {

struct PluginContext;

class ClusterNode {
 public:
  explicit ClusterNode(PluginContext& plugin);
  ~ClusterNode();
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  // Call once Orthanc's REST API answers (OrthancStarted).
  void Start();
  // Stops consuming; claims this node holds are released for other nodes at once, and
  // their messages go back to the queue.
  void Stop();

  // A series became stable here, or the changes log names it: publish it for the cluster.
  void Announce(const std::string& seriesId);
  // Series that could not be published yet (the broker is down); retried with backoff.
  size_t Unpublished() const;
  // Whether this process is processing the series under its claim now.
  bool Holds(const std::string& seriesId) const;

  // For GET /enhance/system; also sets the cluster's Prometheus metrics (refreshed every
  // 5 s while the node runs).
  Json::Value Status();

 private:
  void OnDelivery(Delivery delivery);
  void Work();
  void HandleWithRetries(const Delivery& delivery);
  void Handle(const Delivery& delivery);
  DeliveryFacts FactsOf(const std::string& seriesId, const Json::Value& series,
                        const Delivery& delivery) const;
  // Claims the series and processes it; false when it must be looked at again (another
  // node or worker was faster, or the database is away).
  bool ClaimAndProcess(const std::string& seriesId, const Json::Value& series,
                       const DeliveryFacts& facts, const ClaimRow& row, const std::string& reason,
                       const Delivery& delivery);
  // Runs the claimed series' jobs to their end and records the outcome. False when the
  // node is stopping (the claim was released and the message is left for another node).
  bool Process(const std::string& seriesId, const Json::Value& series,
               const std::string& lastUpdate);
  struct Outcome {
    std::string state = "done";  // "done", "skipped" or "failed"
    std::string detail;
  };
  enum class Waited { kEnded, kStopping, kLostClaim };
  std::vector<std::string> SubmitJobs(const std::string& seriesId, const Json::Value& series,
                                      Outcome& outcome);
  Waited WaitForJobs(const std::string& seriesId, const std::vector<std::string>& jobs,
                     Outcome& outcome);
  // Sends {"Series": ID, "From": this node}; true once the broker confirmed it.
  bool Publish(const std::string& seriesId);
  void RetryUnpublished();
  bool Sleep(double seconds);  // false when stopping

  PluginContext& plugin_;
  ClaimStore claims_;
  WorkBroker broker_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Delivery> deliveries_;
  std::set<std::string> held_;         // series this process works on under its claim
  std::set<std::string> unpublished_;  // series waiting for the broker
  std::vector<std::thread> workers_;
  std::thread retrier_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;

  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> processed_{0};
  std::atomic<uint64_t> duplicates_{0};
  std::atomic<uint64_t> takenOver_{0};
  std::atomic<uint64_t> lostClaims_{0};
};

}  // namespace enhance::plugin
