// SPDX-License-Identifier: GPL-3.0-or-later
//
// The plugin's work as Orthanc jobs: visible in /jobs and Orthanc Explorer's Jobs page,
// with progress, content, priority, cancel/pause/resubmit, and saved in Orthanc's
// database so that a job pending or running when Orthanc stops runs again after it
// starts.
//
// Each job runs its work on a thread of its own; Orthanc's Step() only waits a moment
// for it and reports, so a cancel or pause (which Orthanc applies between steps) reaches
// the work within a fraction of a second and is honoured between slices.
//
// Job types: "EnhanceSeries" (one series: RunSeriesPipeline) and "EnhanceRetrieve"
// (C-MOVE from a remote modality, then one EnhanceSeries job per series received).
#pragma once

#include <string>

#include "JobRequest.h"

namespace enhance::plugin {

struct PluginContext;

// What POST /enhance/retrieve asks for.
struct RetrieveRequest {
  std::string modality;  // Orthanc's name of the remote modality
  std::string level;     // "Study" or "Series"
  std::string studyInstanceUid;
  std::string seriesInstanceUid;
  JobRequest processing;  // task, model, options, destinations for each series
  Json::Value ToJson() const;
  static RetrieveRequest FromJson(const Json::Value& value);
};

// Submits a job and returns its Orthanc ID. Thread-safe.
std::string SubmitSeriesJob(PluginContext& plugin, const JobRequest& request);
std::string SubmitRetrieveJob(PluginContext& plugin, const RetrieveRequest& request);

// Registers the unserializer that recreates saved jobs at start-up. Call from
// OrthancPluginInitialize.
void RegisterJobsUnserializer(PluginContext& plugin);

}  // namespace enhance::plugin
