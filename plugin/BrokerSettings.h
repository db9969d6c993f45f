// SPDX-License-Identifier: GPL-3.0-or-later
//
// Where the cluster's work queue lives (Enhance.Cluster.Broker and the queue's options,
// docs/cluster.md): read by PluginConfiguration, used by WorkBroker. A plain value.
#pragma once

#include <string>

namespace enhance::plugin {

struct BrokerSettings {
  // The AMQP 0-9-1 broker (RabbitMQ).
  std::string host = "127.0.0.1";
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string virtualHost = "/";
  std::string queue = "orthanc-enhance.series";  // the dead-letter queue is queue + ".dead"
  int maxDeliveries = 5;  // deliveries of one message before it goes to the dead letters
  int prefetch = 2;       // series a node takes at once (the configuration: ConcurrentSeries + 1)
};

}  // namespace enhance::plugin
