// SPDX-License-Identifier: GPL-3.0-or-later
#include "Forwarder.h"

#include <chrono>
#include <set>
#include <thread>

#include "enhance/base/Error.h"
#include "enhance/dicom/DicomNetwork.h"

namespace enhance::plugin {
namespace {

// Sleeps in small steps so that a cancelled job does not wait out its backoff.
void Wait(double seconds, const std::atomic<bool>& cancel) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!cancel && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string ReadFile(const OrthancApi& api, const std::string& instanceId) {
  try {
    return api.Get("/instances/" + instanceId + "/file");
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kInternal,
                "cannot read derived instance " + instanceId + " from Orthanc: " + e.what());
  }
}

// The SOP classes of the instances, from the metadata Orthanc keeps for each.
std::set<std::string> SopClasses(const OrthancApi& api, const std::vector<std::string>& ids) {
  std::set<std::string> classes;
  for (const auto& id : ids) classes.insert(api.Get("/instances/" + id + "/metadata/SopClassUid"));
  return classes;
}

// One attempt at a modality: "" on success, else what went wrong.
std::string StoreToModality(const OrthancApi& api, const ForwardingContext& context,
                            const ModalityAddress& address, const std::set<std::string>& sopClasses,
                            const std::vector<std::string>& ids, const std::atomic<bool>& cancel) {
  DicomPeer peer{context.localAet, address.aet, address.host, address.port, context.timeoutSeconds};
  const StoreResult result = StoreFiles(
      peer, sopClasses, ids.size(), [&](size_t i) { return ReadFile(api, ids[i]); },
      [&cancel] { return cancel.load(); });
  if (result.refusals.empty()) return "";
  std::string message = std::to_string(result.refusals.size()) + " of " +
                        std::to_string(ids.size()) + " instance(s) not stored by " +
                        peer.Describe() + ": " + result.refusals.front();
  return message;
}

std::string StoreToPeer(const OrthancApi& api, const PeerAddress& peer,
                        const std::vector<std::string>& ids, const std::atomic<bool>& cancel) {
  for (const auto& id : ids) {
    if (cancel) return "cancelled";
    const std::string file = ReadFile(api, id);
    OrthancPluginMemoryBuffer answer{nullptr, 0};
    const OrthancPluginErrorCode code = OrthancPluginHttpPost(
        api.context(), &answer, (peer.url + "/instances").c_str(), file.data(),
        static_cast<uint32_t>(file.size()), peer.username.empty() ? nullptr : peer.username.c_str(),
        peer.password.empty() ? nullptr : peer.password.c_str());
    if (answer.data != nullptr) OrthancPluginFreeMemoryBuffer(api.context(), &answer);
    if (code != OrthancPluginErrorCode_Success) {
      return std::string("HTTP POST to ") + peer.url +
             "/instances failed: " + OrthancPluginGetErrorDescription(api.context(), code);
    }
  }
  return "";
}

}  // namespace

ForwardingContext ReadForwardingContext(const Json::Value& config) {
  ForwardingContext context;
  context.localAet = config["DicomAet"].isString() ? config["DicomAet"].asString() : "ORTHANC";
  context.timeoutSeconds =
      config["DicomScuTimeout"].isInt() ? config["DicomScuTimeout"].asInt() : 10;
  const Json::Value& peers = config["OrthancPeers"];
  if (peers.isObject()) {
    for (const auto& name : peers.getMemberNames()) {
      const Json::Value& p = peers[name];
      PeerAddress address;
      if (p.isArray() && p.size() >= 1) {
        address.url = p[0].asString();
        if (p.size() >= 3) {
          address.username = p[1].asString();
          address.password = p[2].asString();
        }
      } else if (p.isObject()) {
        address.url = p["Url"].asString();
        address.username = p["Username"].asString();
        address.password = p["Password"].asString();
      }
      while (!address.url.empty() && address.url.back() == '/') address.url.pop_back();
      context.peers[name] = address;
    }
  }
  return context;
}

ModalityAddress LookupModality(const OrthancApi& api, const std::string& name) {
  const Json::Value modalities = api.GetJson("/modalities?expand");
  if (!modalities.isMember(name)) {
    throw Error(ErrorKind::kBadInput, "'" + name + "' is not a DICOM modality of this node");
  }
  const Json::Value& m = modalities[name];
  return {m["AET"].asString(), m["Host"].asString(), m["Port"].asInt()};
}

Json::Value ForwardResult::ToJson() const {
  Json::Value v;
  v["Destination"] = destination;
  v["Target"] = target;
  v["Status"] = success ? "Success" : "Failure";
  v["Attempts"] = attempts;
  v["Message"] = message;
  return v;
}

ForwardResult ForwardSeries(const OrthancApi& api, const ForwardingContext& context,
                            const std::string& destination, const std::string& senderAet,
                            const std::vector<std::string>& instanceIds,
                            const ForwardingPolicy& policy, const std::atomic<bool>& cancel) {
  ForwardResult result;
  result.destination = destination;
  ModalityAddress modality;
  std::set<std::string> sopClasses;
  const PeerAddress* peer = nullptr;
  try {
    const Json::Value modalities = api.GetJson("/modalities?expand");
    if (destination == "$sender") {
      for (const auto& name : modalities.getMemberNames()) {
        if (modalities[name]["AET"].asString() == senderAet) result.target = name;
      }
      if (result.target.empty()) {
        result.message = "the sender AET '" + senderAet +
                         "' is not a known DICOM modality; add it to DicomModalities";
        return result;
      }
    } else if (modalities.isMember(destination)) {
      result.target = destination;
    } else if (context.peers.count(destination) > 0) {
      result.target = destination;
      peer = &context.peers.at(destination);
    } else {
      result.message = "'" + destination + "' is neither a DICOM modality nor an Orthanc peer";
      return result;
    }
    if (peer == nullptr) {
      modality = LookupModality(api, result.target);
      sopClasses = SopClasses(api, instanceIds);
    }
  } catch (const std::exception& e) {
    result.message = std::string("cannot resolve the destination: ") + e.what();
    return result;
  }

  double delay = policy.firstDelaySeconds;
  const int attempts = std::max(1, policy.attempts);
  for (int attempt = 1; attempt <= attempts && !cancel; ++attempt) {
    result.attempts = attempt;
    try {
      result.message =
          peer ? StoreToPeer(api, *peer, instanceIds, cancel)
               : StoreToModality(api, context, modality, sopClasses, instanceIds, cancel);
    } catch (const std::exception& e) {
      result.message = e.what();
    }
    if (result.message.empty()) {
      result.success = true;
      result.message = "sent " + std::to_string(instanceIds.size()) + " instance(s)";
      return result;
    }
    if (attempt < attempts) Wait(delay, cancel);
    delay *= 2;
  }
  if (cancel) result.message = "cancelled; last error: " + result.message;
  return result;
}

}  // namespace enhance::plugin
