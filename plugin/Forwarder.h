// SPDX-License-Identifier: GPL-3.0-or-later
//
// Sends a derived series to a destination: a DICOM modality by C-STORE (DCMTK, one
// association per attempt), an Orthanc peer over HTTP (POST {peer}/instances), or
// "$sender", the modality whose AET sent the source series. Retries with exponential
// backoff; a rejected association or a refused instance is a failure, never a success.
//
// Orthanc's own /modalities/{name}/store and /peers/{name}/store routes are not used:
// they run as Orthanc jobs, and waiting for one from inside a job can deadlock the job
// workers. Thread-safe (no shared state).
#pragma once

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "OrthancApi.h"
#include "PluginConfiguration.h"

namespace enhance::plugin {

// An Orthanc peer from the configuration's OrthancPeers.
struct PeerAddress {
  std::string url;  // without trailing slash
  std::string username;
  std::string password;
};

// What forwarding needs to know about this node.
struct ForwardingContext {
  std::string localAet;
  int timeoutSeconds = 10;
  std::map<std::string, PeerAddress> peers;
};

// Reads DicomAet, DicomScuTimeout and OrthancPeers from Orthanc's configuration.
ForwardingContext ReadForwardingContext(const Json::Value& orthancConfiguration);

struct ForwardResult {
  std::string destination;  // as configured ("PACS", "$sender")
  std::string target;       // the modality or peer it resolved to
  bool success = false;
  int attempts = 0;
  std::string message;

  Json::Value ToJson() const;
};

// Sends the Orthanc instances `instanceIds` (the derived series, in instance order),
// reading each file from Orthanc just before it is sent, so that one is held at a time.
ForwardResult ForwardSeries(const OrthancApi& api, const ForwardingContext& context,
                            const std::string& destination, const std::string& senderAet,
                            const std::vector<std::string>& instanceIds,
                            const ForwardingPolicy& policy, const std::atomic<bool>& cancel);

// The DICOM address of a modality known to Orthanc (GET /modalities?expand), by name.
// Throws Error(kBadInput) when there is no such modality.
struct ModalityAddress {
  std::string aet;
  std::string host;
  int port = 104;
};
ModalityAddress LookupModality(const OrthancApi& api, const std::string& name);

}  // namespace enhance::plugin
