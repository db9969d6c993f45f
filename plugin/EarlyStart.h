// SPDX-License-Identifier: GPL-3.0-or-later
//
// The early start (Enhance.EarlyStartMB): each instance Orthanc stores is queued by the
// stored-instance callback (which only enqueues) and, on a worker thread, routed as its
// series will be; when a rule's model computes slices independently, the instance's
// output slice is computed at once and kept in PluginContext::earlySlices. When the
// series becomes stable its job finds those slices there, so that little is left but
// the slices that arrived last. Results are keyed by model, instance and decoded pixels,
// so the derived series is the same as without the early start.
//
// Thread-safety: called from the early-start WorkQueue's single worker.
#pragma once

#include <atomic>
#include <string>

namespace enhance::plugin {

struct PluginContext;

// Never throws: an instance that cannot be computed ahead is left to its job.
void PrecomputeStoredInstance(PluginContext& plugin, const std::string& instanceId,
                              const std::atomic<bool>& stopping);

}  // namespace enhance::plugin
