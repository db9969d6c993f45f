// SPDX-License-Identifier: GPL-3.0-or-later
//
// What one processing job does: which series, task, model, options and destinations.
// It is all a job needs to run again after Orthanc restarts, so it is what the job
// serialises. SDK-free value type; not synchronised.
#pragma once

#include <json/value.h>

#include <string>
#include <vector>

#include "enhance/pipeline/SeriesEnhancer.h"

namespace enhance::plugin {

struct JobRequest {
  std::string seriesId;  // Orthanc ID of the source series
  std::string task;
  std::string model;
  Json::Value options = Json::objectValue;
  std::vector<std::string> destinations;  // modality or peer names, or "$sender"
  std::string senderAet;                  // who sent the series, for "$sender"
  int priority = 0;
  bool force = false;  // process even if the same series, task and model were processed
  std::string nonce;   // set when forced: gives the derived series new UIDs
  std::string origin;  // "rule 'ct-denoise'", "REST", "retrieve"
  // Submitted by the cluster for a series this node claimed: the job runs only while the
  // node holds that claim (a job saved before a restart does not run again: the queue
  // hands the series to whichever node claims it).
  bool cluster = false;

  Json::Value ToJson() const;
  // Throws enhance::Error(kBadInput) naming the key that is missing or wrong.
  static JobRequest FromJson(const Json::Value& value);
};

// Whether the request's options ask for an uncertainty series ("Uncertainty": true or
// false; default true) from a model that can give one. Throws Error(kBadInput) naming
// Options.Uncertainty when it is not a boolean.
bool UncertaintyWanted(const Json::Value& options);

// What the request's options ask of a model's domain check ("DomainCheck": "warn",
// "refuse" or "off"; default "warn"). Throws Error(kBadInput) naming Options.DomainCheck
// for any other value.
DomainAction DomainActionWanted(const Json::Value& options);
const char* DomainActionName(DomainAction action);

// The derived series' SeriesInstanceUID for this request: a function of the source
// series, the task, the model's UID, the options and the nonce, so that running the
// same request twice finds the series of the first run instead of making a second.
std::string DerivedSeriesUid(const JobRequest& request, const std::string& sourceSeriesUid,
                             const std::string& modelUid, const std::string& uidRoot);

// The SeriesInstanceUID of the uncertainty series that goes with the derived series.
std::string UncertaintySeriesUid(const std::string& derivedSeriesUid, const std::string& uidRoot);

}  // namespace enhance::plugin
