// SPDX-License-Identifier: GPL-3.0-or-later
#include "Forwarder.h"

#include <chrono>
#include <thread>

namespace enhance::plugin {
namespace {

bool Contains(const Json::Value& list, const std::string& name) {
  if (!list.isArray()) return false;
  for (const auto& item : list) {
    if (item.isString() && item.asString() == name) return true;
  }
  return false;
}

// Sleeps in small steps so that a cancelled job does not wait out its backoff.
void Wait(double seconds, const std::atomic<bool>& cancel) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!cancel && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace

Json::Value ForwardResult::ToJson() const {
  Json::Value v;
  v["Destination"] = destination;
  v["Target"] = target;
  v["Status"] = success ? "Success" : "Failure";
  v["Attempts"] = attempts;
  v["Message"] = message;
  return v;
}

ForwardResult ForwardSeries(const OrthancApi& api, const std::string& destination,
                            const std::string& senderAet, const std::string& seriesId,
                            const ForwardingPolicy& policy, const std::atomic<bool>& cancel) {
  ForwardResult result;
  result.destination = destination;
  std::string uri;
  try {
    if (destination == "$sender") {
      const Json::Value modalities = api.GetJson("/modalities?expand");
      for (const auto& name : modalities.getMemberNames()) {
        if (modalities[name]["AET"].isString() && modalities[name]["AET"].asString() == senderAet) {
          result.target = name;
        }
      }
      if (result.target.empty()) {
        result.message = "the sender AET '" + senderAet +
                         "' is not a known DICOM modality; add it to DicomModalities";
        return result;
      }
      uri = "/modalities/" + result.target + "/store";
    } else if (Contains(api.GetJson("/modalities"), destination)) {
      result.target = destination;
      uri = "/modalities/" + destination + "/store";
    } else if (Contains(api.GetJson("/peers"), destination)) {
      result.target = destination;
      uri = "/peers/" + destination + "/store";
    } else {
      result.message = "'" + destination + "' is neither a DICOM modality nor an Orthanc peer";
      return result;
    }
  } catch (const std::exception& e) {
    result.message = std::string("cannot resolve the destination: ") + e.what();
    return result;
  }

  Json::Value body;
  body["Resources"].append(seriesId);
  body["Synchronous"] = true;
  double delay = policy.firstDelaySeconds;
  for (int attempt = 1; attempt <= std::max(1, policy.attempts) && !cancel; ++attempt) {
    result.attempts = attempt;
    try {
      const Json::Value answer = api.PostJson(uri, WriteJson(body));
      // Orthanc reports instances the remote refused; any such refusal is a failure.
      if (answer.isObject() && answer["FailedInstancesCount"].isNumeric() &&
          answer["FailedInstancesCount"].asInt() > 0) {
        result.message = std::to_string(answer["FailedInstancesCount"].asInt()) +
                         " instance(s) refused by " + result.target;
      } else {
        result.success = true;
        result.message = "sent";
        return result;
      }
    } catch (const std::exception& e) {
      result.message = e.what();
    }
    if (attempt < policy.attempts) Wait(delay, cancel);
    delay *= 2;
  }
  if (cancel) result.message = "cancelled; last error: " + result.message;
  return result;
}

}  // namespace enhance::plugin
