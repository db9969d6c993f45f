// SPDX-License-Identifier: GPL-3.0-or-later
//
// Sends a stored series to a destination through Orthanc: a DICOM modality by C-STORE
// (/modalities/{name}/store), an Orthanc peer (/peers/{name}/store), or "$sender", the
// modality whose AET sent the source series. Retries with exponential backoff; a
// rejected association or a refused instance is a failure, never a success.
// Thread-safe (stateless apart from the API it calls).
#pragma once

#include <atomic>
#include <string>

#include "OrthancApi.h"
#include "PluginConfiguration.h"

namespace enhance::plugin {

struct ForwardResult {
  std::string destination;  // as configured ("PACS", "$sender")
  std::string target;       // the modality or peer it resolved to
  bool success = false;
  int attempts = 0;
  std::string message;

  Json::Value ToJson() const;
};

ForwardResult ForwardSeries(const OrthancApi& api, const std::string& destination,
                            const std::string& senderAet, const std::string& seriesId,
                            const ForwardingPolicy& policy, const std::atomic<bool>& cancel);

}  // namespace enhance::plugin
