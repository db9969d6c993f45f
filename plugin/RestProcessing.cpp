// SPDX-License-Identifier: GPL-3.0-or-later
//
// Routes that start processing: POST /enhance/series/{id}, POST /enhance/studies/{id},
// POST /enhance/retrieve; and GET /enhance/rules.
#include <algorithm>

#include "Jobs.h"
#include "RestApi.h"
#include "RestSupport.h"
#include "SeriesRouting.h"
#include "enhance/base/Error.h"

namespace enhance::plugin {
namespace {

using namespace rest;

const std::vector<std::string> kProcessingKeys{"Task",         "Model",    "Options",
                                               "Destinations", "Priority", "Force"};

std::string PatternText(const std::optional<Pattern>& p) { return p ? p->text : ""; }

// Task, model, options, destinations, priority and force from a request body; the model
// defaults to the first one for the task that accepts `modality`.
JobRequest ParseProcessing(const Json::Value& body, const std::string& modality) {
  JobRequest r;
  if (!body["Task"].isString()) {
    throw Error(ErrorKind::kBadInput, "\"Task\" is required: one of denoise, superres, mr2ct");
  }
  r.task = body["Task"].asString();
  const auto& tasks = KnownTasks();
  if (std::find(tasks.begin(), tasks.end(), r.task) == tasks.end()) {
    throw Error(ErrorKind::kBadInput,
                "unknown task '" + r.task + "'; use denoise, superres or mr2ct");
  }
  if (body.isMember("Model")) {
    if (!body["Model"].isString())
      throw Error(ErrorKind::kBadInput, "\"Model\" must be a model name");
    r.model = body["Model"].asString();
    const auto model = Plugin().models.Get(r.model);  // 404 listing the models when unknown
    if (model->Info().task != r.task) {
      throw Error(ErrorKind::kBadInput,
                  "model '" + r.model + "' performs " + model->Info().task + ", not " + r.task);
    }
  } else {
    for (const auto& model : Plugin().models.List()) {
      const auto& m = model->Info();
      if (m.task == r.task &&
          (modality.empty() || std::count(m.modalities.begin(), m.modalities.end(), modality))) {
        r.model = m.name;
        break;
      }
    }
    if (r.model.empty())
      throw Error(ErrorKind::kBadInput, "no model performs " + r.task + " for " + modality);
  }
  if (body.isMember("Options")) {
    if (!body["Options"].isObject())
      throw Error(ErrorKind::kBadInput, "\"Options\" must be an object");
    r.options = body["Options"];
    UncertaintyWanted(r.options);  // checks its type
    DomainActionWanted(r.options);
  }
  if (body.isMember("Destinations")) {
    if (!body["Destinations"].isArray())
      throw Error(ErrorKind::kBadInput, "\"Destinations\" must be a list");
    const Json::Value modalities = Plugin().api.GetJson("/modalities");
    const Json::Value peers = Plugin().api.GetJson("/peers");
    for (const auto& d : body["Destinations"]) {
      const std::string name = d.isString() ? d.asString() : "";
      auto listed = [&](const Json::Value& list) {
        for (const auto& item : list) {
          if (item.asString() == name) return true;
        }
        return false;
      };
      if (name != "$sender" && !listed(modalities) && !listed(peers)) {
        throw Error(ErrorKind::kBadInput,
                    "destination '" + name +
                        "' is neither a DICOM modality nor an Orthanc peer of this node");
      }
      r.destinations.push_back(name);
    }
  }
  if (body.isMember("Priority")) {
    if (!body["Priority"].isInt())
      throw Error(ErrorKind::kBadInput, "\"Priority\" must be an integer");
    r.priority = body["Priority"].asInt();
  }
  if (body.isMember("Force")) {
    if (!body["Force"].isBool())
      throw Error(ErrorKind::kBadInput, "\"Force\" must be true or false");
    r.force = body["Force"].asBool();
  }
  r.origin = "REST";
  return r;
}

// Facts of a series for the eligibility checks of manual requests.
SeriesFacts Facts(const Json::Value& series) {
  const std::string first = series["Instances"][0].asString();
  return ExtractSeriesFacts(series,
                            Plugin().api.GetJson("/instances/" + first + "/simplified-tags"),
                            Plugin().api.GetJson("/instances/" + first + "/metadata?expand"));
}

// Why a series cannot be processed with this request, or "".
std::string Ineligible(const SeriesFacts& facts, const JobRequest& r) {
  PluginConfiguration onlyThis = Plugin().config;
  RoutingRule everything;
  everything.name = "request";
  everything.task = r.task;
  everything.model = r.model;
  onlyThis.rules = {everything};
  onlyThis.processDerivedSeries = true;  // an explicit request may process DERIVED series
  const RoutingDecision decision = Route(onlyThis, facts);
  if (decision.rules.empty()) return decision.reason;
  const auto& m = Plugin().models.Get(r.model)->Info();
  if (std::find(m.modalities.begin(), m.modalities.end(), facts.modality) == m.modalities.end()) {
    std::string accepted;
    for (const auto& x : m.modalities) accepted += (accepted.empty() ? "" : ", ") + x;
    return "model '" + m.name + "' accepts " + accepted + ", not modality '" + facts.modality + "'";
  }
  return "";
}

Json::Value SeriesOrNotFound(const std::string& id) {
  try {
    return Plugin().api.GetJson("/series/" + id);
  } catch (const OrthancApiError& e) {
    if (e.code() == OrthancPluginErrorCode_UnknownResource) {
      throw Error(ErrorKind::kNotFound, "series " + id + " does not exist");
    }
    throw;
  }
}

Json::Value JobAnswer(const std::string& jobId) {
  Json::Value v;
  v["ID"] = jobId;
  v["Path"] = "/jobs/" + jobId;
  return v;
}

void PostSeries(OrthancPluginRestOutput* output, const char*,
                const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Post, "POST")) return;
  const std::string id = request->groups[0];
  const Json::Value body = RequestBody(request);
  CheckKeys(body, kProcessingKeys);
  const Json::Value series = SeriesOrNotFound(id);
  if (series["Instances"].empty())
    throw Error(ErrorKind::kBadInput, "series " + id + " has no instances");
  const SeriesFacts facts = Facts(series);
  JobRequest r = ParseProcessing(body, facts.modality);
  r.seriesId = id;
  r.senderAet = facts.callingAet;
  const std::string why = Ineligible(facts, r);
  if (!why.empty())
    throw Error(ErrorKind::kBadInput, "series " + id + " cannot be processed: " + why);
  SendJson(output, JobAnswer(SubmitSeriesJob(Plugin(), r)));
}

void PostStudy(OrthancPluginRestOutput* output, const char*,
               const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Post, "POST")) return;
  const std::string id = request->groups[0];
  const Json::Value body = RequestBody(request);
  CheckKeys(body, kProcessingKeys);
  Json::Value study;
  try {
    study = Plugin().api.GetJson("/studies/" + id);
  } catch (const OrthancApiError& e) {
    if (e.code() == OrthancPluginErrorCode_UnknownResource) {
      throw Error(ErrorKind::kNotFound, "study " + id + " does not exist");
    }
    throw;
  }
  Json::Value answer;
  answer["Jobs"] = Json::arrayValue;
  answer["Skipped"] = Json::arrayValue;
  const JobRequest base = ParseProcessing(body, "");  // validates task, model and destinations once
  for (const auto& s : study["Series"]) {
    const std::string seriesId = s.asString();
    const Json::Value series = Plugin().api.GetJson("/series/" + seriesId);
    std::string why = series["Instances"].empty() ? "no instances" : "";
    SeriesFacts facts;
    JobRequest r = base;
    if (why.empty()) {
      facts = Facts(series);
      // A series no model of the task accepts (a report next to the images, say) is
      // skipped with the reason, not a failure of the whole study.
      if (!body.isMember("Model")) {
        try {
          r = ParseProcessing(body, facts.modality);
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::kBadInput) throw;
          why = e.what();
        }
      }
      if (why.empty()) why = Ineligible(facts, r);
    }
    // Unlike a request for one series, a study request skips derived series.
    if (why.empty() && !facts.imageType.empty() && facts.imageType[0] == "DERIVED")
      why = "the series is DERIVED";
    if (!why.empty()) {
      Json::Value skipped;
      skipped["Series"] = seriesId;
      skipped["Reason"] = why;
      answer["Skipped"].append(skipped);
      continue;
    }
    r.seriesId = seriesId;
    r.senderAet = facts.callingAet;
    Json::Value job = JobAnswer(SubmitSeriesJob(Plugin(), r));
    job["Series"] = seriesId;
    job["Model"] = r.model;
    answer["Jobs"].append(job);
  }
  SendJson(output, answer);
}

void PostRetrieve(OrthancPluginRestOutput* output, const char*,
                  const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Post, "POST")) return;
  const Json::Value body = RequestBody(request);
  std::vector<std::string> keys = kProcessingKeys;
  keys.insert(keys.end(), {"Modality", "StudyInstanceUID", "SeriesInstanceUID"});
  CheckKeys(body, keys);
  RetrieveRequest r;
  r.modality = body["Modality"].isString() ? body["Modality"].asString() : "";
  bool known = false;
  for (const auto& m : Plugin().api.GetJson("/modalities"))
    known = known || m.asString() == r.modality;
  if (!known) {
    throw Error(ErrorKind::kBadInput,
                "\"Modality\" must name a DICOM modality of this node (GET /modalities)");
  }
  r.studyInstanceUid =
      body["StudyInstanceUID"].isString() ? body["StudyInstanceUID"].asString() : "";
  r.seriesInstanceUid =
      body["SeriesInstanceUID"].isString() ? body["SeriesInstanceUID"].asString() : "";
  if (r.studyInstanceUid.empty()) {
    throw Error(ErrorKind::kBadInput,
                "\"StudyInstanceUID\" is required (with \"SeriesInstanceUID\" for one series)");
  }
  r.level = r.seriesInstanceUid.empty() ? "Study" : "Series";
  r.processing = ParseProcessing(body, "");
  r.processing.seriesId = "(retrieved)";
  SendJson(output, JobAnswer(SubmitRetrieveJob(Plugin(), r)));
}

void GetRules(OrthancPluginRestOutput* output, const char*,
              const OrthancPluginHttpRequest* request) {
  if (!AllowOnly(output, request, OrthancPluginHttpMethod_Get, "GET")) return;
  const auto problems = Plugin().RuleProblems();
  Json::Value answer;
  answer["Evaluation"] =
      Plugin().config.ruleEvaluation == RuleEvaluation::kFirstMatch ? "FirstMatch" : "AllMatches";
  answer["Enabled"] = Plugin().config.enabled;
  answer["Rules"] = Json::arrayValue;
  for (const auto& rule : Plugin().config.rules) {
    Json::Value r;
    r["Name"] = rule.name;
    r["Modalities"] = Strings(rule.modalities);
    r["SeriesDescription"] = PatternText(rule.seriesDescription);
    r["ProtocolName"] = PatternText(rule.protocolName);
    r["BodyPartExamined"] = PatternText(rule.bodyPartExamined);
    r["ImageType"] = Strings(rule.imageType);
    r["MinSlices"] = rule.minSlices;
    r["MaxSlices"] = rule.maxSlices;
    r["CallingAETs"] = Strings(rule.callingAets);
    r["CalledAETs"] = Strings(rule.calledAets);
    r["Task"] = rule.task;
    r["Model"] = rule.model;
    r["Options"] = rule.options;
    r["Destinations"] = Strings(rule.destinations);
    r["Priority"] = rule.priority;
    std::string status = "ok";
    for (const auto& p : problems) {
      if (p.rfind("rule '" + rule.name + "': ", 0) == 0) status = p;
    }
    r["Status"] = status;
    answer["Rules"].append(r);
  }
  SendJson(output, answer);
}

}  // namespace

void RegisterProcessingRoutes(PluginContext& plugin) {
  OrthancPluginContext* context = plugin.api.context();
  OrthancPluginRegisterRestCallback(context, "/enhance/series/([^/]+)", Protected<PostSeries>);
  OrthancPluginRegisterRestCallback(context, "/enhance/studies/([^/]+)", Protected<PostStudy>);
  OrthancPluginRegisterRestCallback(context, "/enhance/retrieve", Protected<PostRetrieve>);
  OrthancPluginRegisterRestCallbackNoLock(context, "/enhance/rules", Protected<GetRules>);
}

}  // namespace enhance::plugin
