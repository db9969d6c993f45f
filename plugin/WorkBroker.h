// SPDX-License-Identifier: GPL-3.0-or-later
//
// The cluster's work queue on an AMQP 0-9-1 broker (RabbitMQ), through rabbitmq-c.
//
// - The queue is a durable quorum queue with a delivery limit: a message delivered
//   MaxDeliveries times without an acknowledgement (its consumers died or lost their
//   connection each time) goes to the dead-letter queue QUEUE.dead, where an
//   administrator sees it (RabbitMQ's management tools, GET /enhance/system).
// - Publish() sends a persistent message and waits for the broker's confirm: true means
//   the broker has it on disk.
// - Messages are consumed with manual acknowledgement and a prefetch limit; each one is
//   handed to the delivery handler, and acknowledged by Acknowledge() once the work is
//   done. A message not acknowledged when the connection drops (the node died, the
//   broker restarted) is delivered again, to any node.
// - A broker that is down is retried with backoff (1 s, doubling, at most 30 s); its
//   state and last error are in GetStatus().
//
// rabbitmq-c connections are not thread-safe: one thread owns the consuming connection
// (and sends the acknowledgements queued for it), and the publishing connection is used
// under a mutex.
//
// Thread-safety: all public methods may be called from any thread. The handler runs on
// the consuming thread and must return at once (hand the delivery to a worker).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "BrokerSettings.h"

namespace enhance::plugin {

struct Delivery {
  uint64_t connection = 0;  // which consuming connection it came on
  uint64_t tag = 0;
  bool redelivered = false;
  std::string body;
  enum class Answer { kAcknowledge, kRequeue, kDeadLetter } answer = Answer::kAcknowledge;
};

class WorkBroker {
 public:
  using Handler = std::function<void(Delivery)>;
  using Logger = std::function<void(const std::string&)>;

  WorkBroker(BrokerSettings settings, Handler onDelivery, Logger log);
  ~WorkBroker();
  WorkBroker(const WorkBroker&) = delete;
  WorkBroker& operator=(const WorkBroker&) = delete;

  void Start();
  // Stops consuming and closes both connections; unacknowledged messages go back to the
  // queue for other nodes.
  void Stop();

  // True once the broker has confirmed the message (persistent, on the queue).
  bool Publish(const std::string& body);
  // Acknowledges a delivery (from any thread). A delivery from a connection that has
  // since dropped is not acknowledged: the broker has already put it back.
  void Acknowledge(const Delivery& delivery);
  // Gives a delivery back to the queue, whose delivery count it raises: after
  // MaxDeliveries the broker moves it to the dead-letter queue. With `deadLetter`, moves it
  // there at once (a message no node can ever handle).
  void Reject(const Delivery& delivery, bool deadLetter = false);

  struct Status {
    bool consuming = false;
    bool publishing = false;
    std::string lastError;
    int64_t queueDepth = -1;  // ready messages; -1: unknown
    int64_t consumers = -1;
    int64_t deadLetters = -1;  // messages in the dead-letter queue
  };
  // Asks the broker for the queues' depths (over the publishing connection).
  Status GetStatus();
  std::string Describe() const;  // "amqp://HOST:PORT/VHOST queue NAME"
  std::string DeadLetterQueue() const { return settings_.queue + ".dead"; }

 private:
  struct Connection;
  void Consume();
  std::unique_ptr<Connection> Connect(bool consumer);
  void SetError(const std::string& message);

  const BrokerSettings settings_;
  const Handler onDelivery_;
  const Logger log_;

  std::atomic<bool> stopping_{false};
  std::thread consumer_;
  std::atomic<bool> consuming_{false};
  std::atomic<uint64_t> connectionNumber_{0};
  std::mutex ackMutex_;
  std::deque<Delivery> acks_;

  std::mutex publishMutex_;  // guards publisher_
  std::unique_ptr<Connection> publisher_;
  double nextPublisherAttempt_ = 0;

  mutable std::mutex errorMutex_;
  std::string lastError_;
};

}  // namespace enhance::plugin
