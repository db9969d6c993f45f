// SPDX-License-Identifier: GPL-3.0-or-later
#include "JobRequest.h"

#include <json/writer.h>

#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"

namespace enhance::plugin {
namespace {

std::string Required(const Json::Value& v, const char* key) {
  if (!v.isMember(key) || !v[key].isString() || v[key].asString().empty()) {
    throw Error(ErrorKind::kBadInput, std::string("job request: \"") + key + "\" is missing");
  }
  return v[key].asString();
}

std::string Optional(const Json::Value& v, const char* key) {
  return v.isMember(key) && v[key].isString() ? v[key].asString() : "";
}

}  // namespace

Json::Value JobRequest::ToJson() const {
  Json::Value v;
  v["Series"] = seriesId;
  v["Task"] = task;
  v["Model"] = model;
  v["Options"] = options;
  v["Destinations"] = Json::arrayValue;
  for (const auto& d : destinations) v["Destinations"].append(d);
  v["SenderAet"] = senderAet;
  v["Priority"] = priority;
  v["Force"] = force;
  v["Nonce"] = nonce;
  v["Origin"] = origin;
  if (cluster) v["Cluster"] = true;
  return v;
}

JobRequest JobRequest::FromJson(const Json::Value& v) {
  if (!v.isObject()) throw Error(ErrorKind::kBadInput, "job request: not a JSON object");
  JobRequest r;
  r.seriesId = Required(v, "Series");
  r.task = Required(v, "Task");
  r.model = Required(v, "Model");
  if (v.isMember("Options")) {
    if (!v["Options"].isObject())
      throw Error(ErrorKind::kBadInput, "job request: \"Options\" must be an object");
    r.options = v["Options"];
  }
  if (v.isMember("Destinations")) {
    if (!v["Destinations"].isArray()) {
      throw Error(ErrorKind::kBadInput, "job request: \"Destinations\" must be a list");
    }
    for (const auto& d : v["Destinations"]) {
      if (!d.isString() || d.asString().empty()) {
        throw Error(ErrorKind::kBadInput, "job request: \"Destinations\" must hold names");
      }
      r.destinations.push_back(d.asString());
    }
  }
  r.senderAet = Optional(v, "SenderAet");
  r.priority = v.isMember("Priority") && v["Priority"].isInt() ? v["Priority"].asInt() : 0;
  r.force = v.isMember("Force") && v["Force"].isBool() && v["Force"].asBool();
  r.nonce = Optional(v, "Nonce");
  r.origin = Optional(v, "Origin");
  r.cluster = v.isMember("Cluster") && v["Cluster"].isBool() && v["Cluster"].asBool();
  return r;
}

std::string DerivedSeriesUid(const JobRequest& request, const std::string& sourceSeriesUid,
                             const std::string& modelUid, const std::string& uidRoot) {
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "";
  const std::string options = Json::writeString(builder, request.options);
  return UidFromName("derived-series|" + sourceSeriesUid + "|" + request.task + "|" + modelUid +
                         "|" + options + "|" + request.nonce,
                     uidRoot);
}

bool UncertaintyWanted(const Json::Value& options) {
  if (!options.isObject() || !options.isMember("Uncertainty")) return true;
  if (!options["Uncertainty"].isBool()) {
    throw Error(ErrorKind::kBadInput, "Options.Uncertainty must be true or false");
  }
  return options["Uncertainty"].asBool();
}

DomainAction DomainActionWanted(const Json::Value& options) {
  if (!options.isObject() || !options.isMember("DomainCheck")) return DomainAction::kWarn;
  const Json::Value& value = options["DomainCheck"];
  const std::string name = value.isString() ? value.asString() : "";
  if (name == "warn") return DomainAction::kWarn;
  if (name == "refuse") return DomainAction::kRefuse;
  if (name == "off") return DomainAction::kOff;
  throw Error(ErrorKind::kBadInput,
              "Options.DomainCheck must be \"warn\" (process a series outside the model's "
              "domain with a warning), \"refuse\" or \"off\"");
}

const char* DomainActionName(DomainAction action) {
  switch (action) {
    case DomainAction::kOff:
      return "off";
    case DomainAction::kRefuse:
      return "refuse";
    case DomainAction::kWarn:
      break;
  }
  return "warn";
}

std::string UncertaintySeriesUid(const std::string& derivedSeriesUid, const std::string& uidRoot) {
  return UidFromName(derivedSeriesUid + "/uncertainty", uidRoot);
}

}  // namespace enhance::plugin
