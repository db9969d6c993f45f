// SPDX-License-Identifier: GPL-3.0-or-later
#include "WorkBroker.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace enhance::plugin {

struct WorkBroker::Connection {
  amqp_connection_state_t state = amqp_new_connection();
  bool open = false;    // logged in, channel 1 open
  bool broken = false;  // an I/O error or a close from the broker: do not talk to it again
  ~Connection() {
    if (open && !broken) {
      amqp_channel_close(state, 1, AMQP_REPLY_SUCCESS);
      amqp_connection_close(state, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(state);
  }
};

namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string Text(amqp_bytes_t bytes) {
  return std::string(static_cast<const char*>(bytes.bytes), bytes.len);
}

std::string ReplyError(const amqp_rpc_reply_t& reply) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "";
    case AMQP_RESPONSE_NONE:
      return "no reply from the broker";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(reply.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
        return "the broker closed the connection: " + Text(m->reply_text);
      }
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        return "the broker closed the channel: " + Text(m->reply_text);
      }
      return "the broker answered with an unexpected method";
  }
  return "unknown reply";
}

void Check(amqp_connection_state_t state, const std::string& what) {
  const std::string error = ReplyError(amqp_get_rpc_reply(state));
  if (!error.empty()) throw std::runtime_error(what + ": " + error);
}

amqp_table_entry_t Entry(const char* key, amqp_field_value_t value) {
  amqp_table_entry_t entry;
  entry.key = amqp_cstring_bytes(key);
  entry.value = value;
  return entry;
}

amqp_field_value_t TextValue(const std::string& text) {
  amqp_field_value_t v;
  v.kind = AMQP_FIELD_KIND_UTF8;
  v.value.bytes = amqp_cstring_bytes(text.c_str());
  return v;
}

amqp_field_value_t IntValue(int64_t value) {
  amqp_field_value_t v;
  v.kind = AMQP_FIELD_KIND_I64;
  v.value.i64 = value;
  return v;
}

}  // namespace

WorkBroker::WorkBroker(BrokerSettings settings, Handler onDelivery, Logger log)
    : settings_(std::move(settings)), onDelivery_(std::move(onDelivery)), log_(std::move(log)) {}

WorkBroker::~WorkBroker() { Stop(); }

std::string WorkBroker::Describe() const {
  return "amqp://" + settings_.host + ":" + std::to_string(settings_.port) + settings_.virtualHost +
         " queue " + settings_.queue;
}

void WorkBroker::SetError(const std::string& message) {
  std::lock_guard<std::mutex> lock(errorMutex_);
  lastError_ = message;
}

std::unique_ptr<WorkBroker::Connection> WorkBroker::Connect(bool consumer) {
  auto c = std::make_unique<Connection>();
  amqp_socket_t* socket = amqp_tcp_socket_new(c->state);
  if (!socket) throw std::runtime_error("cannot create a socket");
  timeval connectTimeout{5, 0};
  const int opened =
      amqp_socket_open_noblock(socket, settings_.host.c_str(), settings_.port, &connectTimeout);
  if (opened != AMQP_STATUS_OK) {
    throw std::runtime_error("cannot connect to " + Describe() + ": " + amqp_error_string2(opened));
  }
  timeval rpcTimeout{10, 0};
  amqp_set_rpc_timeout(c->state, &rpcTimeout);
  // The consuming connection sends heartbeats (it is read every 100 ms); the publishing
  // one is idle between messages and reconnects when it finds the connection gone.
  const amqp_rpc_reply_t login =
      amqp_login(c->state, settings_.virtualHost.c_str(), 0, 131072, consumer ? 10 : 0,
                 AMQP_SASL_METHOD_PLAIN, settings_.user.c_str(), settings_.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    c->broken = true;
    throw std::runtime_error("cannot log in to " + Describe() + " as " + settings_.user + ": " +
                             ReplyError(login));
  }
  amqp_channel_open(c->state, 1);
  Check(c->state, "open a channel");
  c->open = true;
  // Both queues, declared by every node with the same arguments (idempotent).
  const std::string dead = DeadLetterQueue();
  amqp_queue_declare(c->state, 1, amqp_cstring_bytes(dead.c_str()), 0, 1, 0, 0, amqp_empty_table);
  Check(c->state, "declare the queue " + dead);
  amqp_table_entry_t entries[] = {
      Entry("x-queue-type", TextValue("quorum")),
      Entry("x-delivery-limit", IntValue(settings_.maxDeliveries)),
      Entry("x-dead-letter-exchange", TextValue("")),
      Entry("x-dead-letter-routing-key", TextValue(dead)),
  };
  amqp_table_t arguments{static_cast<int>(std::size(entries)), entries};
  amqp_queue_declare(c->state, 1, amqp_cstring_bytes(settings_.queue.c_str()), 0, 1, 0, 0,
                     arguments);
  Check(c->state, "declare the queue " + settings_.queue +
                      " (a queue of that name declared with other arguments must be deleted)");
  if (consumer) {
    amqp_basic_qos(c->state, 1, 0, static_cast<uint16_t>(settings_.prefetch), 0);
    Check(c->state, "set the prefetch count");
    amqp_basic_consume(c->state, 1, amqp_cstring_bytes(settings_.queue.c_str()), amqp_empty_bytes,
                       0, 0, 0, amqp_empty_table);
    Check(c->state, "consume from " + settings_.queue);
  } else {
    amqp_confirm_select(c->state, 1);
    Check(c->state, "enable publisher confirms");
  }
  return c;
}

void WorkBroker::Start() {
  stopping_ = false;
  consumer_ = std::thread([this] { Consume(); });
}

void WorkBroker::Stop() {
  stopping_ = true;
  if (consumer_.joinable()) consumer_.join();
  std::lock_guard<std::mutex> lock(publishMutex_);
  publisher_.reset();
}

void WorkBroker::Consume() {
  double backoff = 1;
  while (!stopping_) {
    std::unique_ptr<Connection> c;
    try {
      c = Connect(true);
    } catch (const std::exception& e) {
      SetError(e.what());
      log_("cluster: " + std::string(e.what()) + "; retrying in " +
           std::to_string(static_cast<int>(backoff)) + " s");
      const double until = Now() + backoff;
      while (!stopping_ && Now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      backoff = std::min(backoff * 2, 30.0);
      continue;
    }
    backoff = 1;
    const uint64_t number = ++connectionNumber_;
    consuming_ = true;
    SetError("");
    log_("cluster: consuming from " + Describe());
    std::string lost;
    while (!stopping_ && lost.empty()) {
      std::deque<Delivery> acks;
      {
        std::lock_guard<std::mutex> lock(ackMutex_);
        acks.swap(acks_);
      }
      for (const auto& d : acks) {
        if (d.connection != number)
          continue;  // the broker put it back when that connection dropped
        const int sent = d.answer == Delivery::Answer::kAcknowledge
                             ? amqp_basic_ack(c->state, 1, d.tag, 0)
                             : amqp_basic_nack(c->state, 1, d.tag, 0,
                                               d.answer == Delivery::Answer::kRequeue ? 1 : 0);
        if (sent != AMQP_STATUS_OK) {
          lost = "cannot acknowledge a message";
          break;
        }
      }
      if (!lost.empty()) break;
      amqp_maybe_release_buffers(c->state);
      amqp_envelope_t envelope;
      timeval wait{0, 100000};
      const amqp_rpc_reply_t reply = amqp_consume_message(c->state, &envelope, &wait, 0);
      if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
        Delivery d;
        d.connection = number;
        d.tag = envelope.delivery_tag;
        d.redelivered = envelope.redelivered != 0;
        d.body = Text(envelope.message.body);
        amqp_destroy_envelope(&envelope);
        onDelivery_(std::move(d));
      } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                 reply.library_error == AMQP_STATUS_TIMEOUT) {
        continue;
      } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                 reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        amqp_frame_t frame;
        if (amqp_simple_wait_frame(c->state, &frame) != AMQP_STATUS_OK) {
          lost = "connection lost";
        } else if (frame.frame_type == AMQP_FRAME_METHOD &&
                   (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                    frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)) {
          lost = "the broker closed the connection";
        }
      } else {
        lost = ReplyError(reply);
      }
    }
    consuming_ = false;
    if (!lost.empty()) {
      c->broken = true;
      SetError("consuming: " + lost);
      log_("cluster: lost the broker (" + lost + "); unacknowledged messages go back to the queue");
    }
    c.reset();
  }
}

void WorkBroker::Acknowledge(const Delivery& delivery) {
  std::lock_guard<std::mutex> lock(ackMutex_);
  acks_.push_back(delivery);
}

void WorkBroker::Reject(const Delivery& delivery, bool deadLetter) {
  Delivery d = delivery;
  d.answer = deadLetter ? Delivery::Answer::kDeadLetter : Delivery::Answer::kRequeue;
  std::lock_guard<std::mutex> lock(ackMutex_);
  acks_.push_back(std::move(d));
}

bool WorkBroker::Publish(const std::string& body) {
  std::lock_guard<std::mutex> lock(publishMutex_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!publisher_) {
      if (Now() < nextPublisherAttempt_) return false;
      try {
        publisher_ = Connect(false);
      } catch (const std::exception& e) {
        SetError(std::string("publishing: ") + e.what());
        nextPublisherAttempt_ = Now() + 1;
        return false;
      }
    }
    amqp_basic_properties_t properties;
    properties._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    properties.delivery_mode = 2;  // persistent
    properties.content_type = amqp_cstring_bytes("application/json");
    amqp_bytes_t message{body.size(), const_cast<char*>(body.data())};
    std::string error;
    if (amqp_basic_publish(publisher_->state, 1, amqp_empty_bytes,
                           amqp_cstring_bytes(settings_.queue.c_str()), 0, 0, &properties,
                           message) != AMQP_STATUS_OK) {
      error = "cannot send";
    }
    const double deadline = Now() + 10;
    while (error.empty()) {
      const double left = deadline - Now();
      if (left <= 0) {
        error = "no confirm within 10 s";
        break;
      }
      timeval wait{static_cast<time_t>(left),
                   static_cast<suseconds_t>((left - static_cast<int>(left)) * 1e6)};
      amqp_frame_t frame;
      const int rc = amqp_simple_wait_frame_noblock(publisher_->state, &frame, &wait);
      if (rc != AMQP_STATUS_OK) {
        error = amqp_error_string2(rc);
      } else if (frame.frame_type == AMQP_FRAME_METHOD) {
        const amqp_method_number_t id = frame.payload.method.id;
        if (id == AMQP_BASIC_ACK_METHOD) return true;
        if (id == AMQP_BASIC_NACK_METHOD) error = "the broker refused the message";
        if (id == AMQP_CHANNEL_CLOSE_METHOD || id == AMQP_CONNECTION_CLOSE_METHOD)
          error = "the broker closed the connection";
      }
    }
    SetError("publishing: " + error);
    publisher_->broken = true;
    publisher_.reset();  // the second attempt reconnects at once (a restarted broker)
  }
  nextPublisherAttempt_ = Now() + 1;
  return false;
}

WorkBroker::Status WorkBroker::GetStatus() {
  Status status;
  status.consuming = consuming_;
  {
    std::lock_guard<std::mutex> lock(publishMutex_);
    try {
      if (!publisher_ && Now() >= nextPublisherAttempt_) publisher_ = Connect(false);
    } catch (const std::exception& e) {
      SetError(std::string("publishing: ") + e.what());
      nextPublisherAttempt_ = Now() + 1;
    }
    if (publisher_) {
      auto depth = [this](const std::string& name, int64_t& messages, int64_t* consumers) {
        amqp_queue_declare_ok_t* ok = amqp_queue_declare(
            publisher_->state, 1, amqp_cstring_bytes(name.c_str()), 1, 0, 0, 0, amqp_empty_table);
        if (!ok) {
          publisher_->broken = true;
          return false;
        }
        messages = ok->message_count;
        if (consumers) *consumers = ok->consumer_count;
        return true;
      };
      if (!depth(settings_.queue, status.queueDepth, &status.consumers) ||
          !depth(DeadLetterQueue(), status.deadLetters, nullptr)) {
        publisher_.reset();
      }
    }
    status.publishing = publisher_ != nullptr;
  }
  std::lock_guard<std::mutex> lock(errorMutex_);
  status.lastError = lastError_;
  return status;
}

}  // namespace enhance::plugin
