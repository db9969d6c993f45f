// SPDX-License-Identifier: GPL-3.0-or-later
//
// The whole path for one series, without any server: fetch the instances from an
// InstanceSource, decode them into a volume, run the model, and encode the derived
// series. Nothing is written anywhere: the caller decides where the result goes, so
// a failure at any stage leaves nothing behind.
//
// Thread-safety: EnhanceSeries() is reentrant; the source is used from the calling thread.
#pragma once

#include <string>
#include <vector>

#include "enhance/DerivedSeriesWriter.h"
#include "enhance/DicomSeriesReader.h"
#include "enhance/InstanceSource.h"
#include "enhance/Model.h"
#include "enhance/SliceCache.h"

namespace enhance {

struct StageTimings {
  double fetchSeconds = 0;
  double decodeSeconds = 0;
  double inferenceSeconds = 0;
  double encodeSeconds = 0;       // without the time spent in the caller's sink
  double sinkSeconds = 0;         // in the caller's sink (EnhanceSeries with a sink)
  int64_t precomputedSlices = 0;  // taken from a SliceCache instead of computed
};

struct EnhancedSeries {
  std::vector<std::string> files;  // DICOM Part 10 files of the derived series (no sink)
  size_t derivedInstances = 0;     // files written, to `files` or to the sink
  std::string sourceModality;
  int64_t sourceSlices = 0;
  std::vector<std::string> warnings;  // irregularities of the source series worth logging
  StageTimings timings;
};

// Output naming and numbering chosen by the deployment (see DerivationInfo).
struct OutputOptions {
  std::string seriesDescriptionSuffix = " [AI enhanced]";
  int seriesNumberOffset = 1000;
  std::string uidRoot;
  std::string seriesInstanceUid;  // see DerivationInfo::seriesInstanceUid
  std::string softwareVersion;
};

// Fetches every instance of the source and decodes the series (see ReadSeries).
// Progress goes from 0 to `progressShare`; cancellation is honoured between instances.
// When `timings` is given, its fetch and decode durations are filled in.
DecodedSeries FetchSeries(InstanceSource& source, const RunContext& context,
                          double progressShare = 1.0, StageTimings* timings = nullptr);

// Progress is reported in [0, 1] over the whole path; cancellation is honoured
// between instances and between batches of slices. With `early`, output slices computed
// ahead (PrecomputeInstance) are taken from it instead of being computed again.
// With a `sink`, each derived file goes to it as soon as it is encoded and `files` stays
// empty: the caller stores them one by one, and undoes what it stored if this throws.
EnhancedSeries EnhanceSeries(InstanceSource& source, const Model& model,
                             const OutputOptions& output, const RunContext& context,
                             SliceCache* early = nullptr, const DerivedFileSink& sink = {});

// Computes the model's output for one instance of a series that is still arriving and
// keeps it in `cache` for the series' job. Returns false, computing nothing, when the
// model cannot be served slice by slice (SlicesAreIndependent), the instance is not of
// one of the model's modalities, or its result is already there. Throws Error for an
// instance that cannot be decoded (its job will report it as well).
bool PrecomputeInstance(EncodedInstance instance, const std::string& description,
                        const FrameDecoder* decoder, const Model& model, SliceCache& cache,
                        const RunContext& context);

}  // namespace enhance
