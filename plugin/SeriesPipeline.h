// SPDX-License-Identifier: GPL-3.0-or-later
//
// What one processing job does inside Orthanc, start to end: check the request, skip
// what was already done, fetch and enhance the series in core/, publish the derived
// series all or nothing into the same study, then forward it.
//
// Idempotent: the derived series' UIDs are a function of the request (JobRequest.h), so
// a job run again after a restart finds the series of its first run. A complete one is
// not made again (only forwarded); a partial one, left by a crash, is deleted and made
// again. Two jobs for the same derived series never run this at the same time in one
// Orthanc: the second waits for the first (PluginContext::derivedSeries). Source instances
// are only ever read; the only instances deleted are those of the derived series.
//
// Thread-safety: RunSeriesPipeline() may execute for several jobs at once.
#pragma once

#include <atomic>

#include "JobRequest.h"
#include "JobState.h"

namespace enhance::plugin {

struct PluginContext;

// A domain check's score as the job's content and GET /enhance/series/{id}/domain show it:
// Score, Threshold, Outside, Slices, the two medians, TrainedOn, Action, and the Warning of
// a series outside the domain.
Json::Value DomainJson(const DomainScore& score, DomainAction action);

// What a model that learns from the series learned there, for the job's content ("Learning"):
// method, steps, time, losses and the training curve, or what ran instead.
Json::Value LearningJson(const LearningReport& report);

// Throws enhance::Error with the reason when the job fails (the derived series, once
// stored, stays even when forwarding fails).
void RunSeriesPipeline(PluginContext& plugin, const JobRequest& request, JobState& state,
                       const std::atomic<bool>& cancel);

}  // namespace enhance::plugin
