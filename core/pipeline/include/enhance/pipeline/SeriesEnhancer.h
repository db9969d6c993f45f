// SPDX-License-Identifier: GPL-3.0-or-later
//
// The whole path for one series, without any server: fetch the instances from an
// InstanceSource, decode them as they come, run the model, and encode the derived
// series. Nothing is written anywhere: the caller decides where the files go (returned,
// or handed to its sink one by one), and undoes what it stored if this throws.
//
// Thread-safety: EnhanceSeries() is reentrant; the source is used from the calling
// thread; a sink may be called from a second thread (see EnhanceSeries).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "enhance/dicom/DerivedSeriesWriter.h"
#include "enhance/dicom/DicomSeriesReader.h"
#include "enhance/dicom/InstanceSource.h"
#include "enhance/inference/DomainCheck.h"
#include "enhance/inference/Model.h"
#include "enhance/pipeline/SliceCache.h"

namespace enhance {

struct StageTimings {
  double fetchSeconds = 0;
  double decodeSeconds = 0;
  double inferenceSeconds = 0;
  double domainSeconds = 0;  // the domain check, while decoding
  double encodeSeconds = 0;  // encoding the files, without the time spent in the sink
  double sinkSeconds = 0;    // in the caller's sink (EnhanceSeries with a sink)
  // From the end of inference to the last file written: what encoding and the sink add
  // to the latency when they overlap inference.
  double afterInferenceSeconds = 0;
  int64_t precomputedSlices = 0;  // taken from a SliceCache instead of computed
};

// What the uncertainty series holds, summed up: the per-voxel standard deviation across
// the model's samples inside the body (voxels of the derived series above -500 HU for CT,
// above 2% of its 99.5th percentile otherwise), in the output's units.
struct UncertaintySummary {
  size_t instances = 0;  // files of the uncertainty series written
  int samples = 0;
  std::string units;
  double median = 0;
  double percentile99 = 0;
  double threshold = 0;      // OutputOptions::uncertaintyThreshold
  double fractionAbove = 0;  // of the body's voxels, above the threshold
};

struct EnhancedSeries {
  std::vector<std::string> files;  // DICOM Part 10 files of the derived series (no sink)
  size_t derivedInstances = 0;     // files written, to `files` or to the sink
  // With OutputOptions::uncertainty and a model that produces one: the uncertainty series,
  // written after the derived series (to `uncertaintyFiles`, or to the sink).
  bool hasUncertainty = false;
  UncertaintySummary uncertainty;
  std::vector<std::string> uncertaintyFiles;
  // For a model with a domain check, unless OutputOptions::domainAction is kOff: the
  // series' score (the job then ran: within the domain, or outside it with kWarn).
  bool hasDomainScore = false;
  DomainScore domain;
  // For a model that learns from the series (Model::LearnsFromSeries): what it learned,
  // also in the derived series' DerivationDescription.
  bool hasLearning = false;
  LearningReport learning;
  std::string sourceModality;
  int64_t sourceSlices = 0;
  std::vector<std::string> warnings;  // irregularities of the source series worth logging
  StageTimings timings;
};

// What to do with a series that a model's domain check finds outside the domain the
// model was trained on: nothing (the check is not run), process it with a warning in the
// derived series and the result, or refuse it (EnhanceSeries throws, nothing written).
enum class DomainAction { kOff, kWarn, kRefuse };

// Output naming and numbering chosen by the deployment (see DerivationInfo).
struct OutputOptions {
  std::string seriesDescriptionSuffix = " [AI enhanced]";
  int seriesNumberOffset = 1000;
  std::string uidRoot;
  std::string seriesInstanceUid;  // see DerivationInfo::seriesInstanceUid
  std::string softwareVersion;
  // For a model that can tell how uncertain each voxel is (Model::ProducesUncertainty):
  // write an uncertainty series too, the standard deviation across its samples, numbered
  // after the derived series. Slices computed early carry none, so they are computed again.
  bool uncertainty = false;
  std::string uncertaintySuffix = " [AI uncertainty]";
  std::string uncertaintySeriesInstanceUid;
  double uncertaintyThreshold = 50.0;  // output units: the summary counts voxels above it
  DomainAction domainAction = DomainAction::kWarn;  // for a model with a domain check
};

// Fetches every instance of the source and decodes the series (see ReadSeries).
// Progress goes from 0 to `progressShare`; cancellation is honoured between instances.
// When `timings` is given, its fetch and decode durations are filled in. `decoded`, when
// given, is called with each instance as soon as its pixels are decoded (and may write
// over them, see SeriesReader::LastAdded).
DecodedSeries FetchSeries(InstanceSource& source, const RunContext& context,
                          double progressShare = 1.0, StageTimings* timings = nullptr,
                          const std::function<void(SeriesReader::Added&)>& decoded = {});

// A model with a domain check (Model::Domain) scores every source slice as it is decoded,
// before any slice is computed (and before a slice computed early is written over it); an
// outside series is then refused with Error(kBadInput) naming the score and the threshold,
// or processed with the warning in the derived series, as OutputOptions::domainAction says.
// Progress is reported in [0, 1] over the whole path; cancellation is honoured
// between instances and between batches of slices. With `early`, output slices computed
// ahead (PrecomputeInstance) are taken from it instead of being computed again; for a
// model writing over its input, each is taken as soon as its source slice is decoded and
// written over it, so that the cache and the volume do not both hold the series.
// With a `sink`, each derived file goes to it as soon as it is encoded and `files` stays
// empty: the caller stores them one by one, and undoes what it stored if this throws. The
// files of an uncertainty series (OutputOptions::uncertainty) follow those of the derived
// series, to the same sink, each series numbered from 0.
// With `discard` as well, and a model whose output is on the source's grid, files are
// encoded and handed to the sink on a second thread while the model computes later
// slices; `discard` is called (from the calling thread) when what was handed over must be
// dropped because the series is written again from its first file. The sink is then
// called from that second thread, one call at a time.
EnhancedSeries EnhanceSeries(InstanceSource& source, const Model& model,
                             const OutputOptions& output, const RunContext& context,
                             SliceCache* early = nullptr, const DerivedFileSink& sink = {},
                             const std::function<void()>& discard = {});

// Computes the model's output for one instance of a series that is still arriving and
// keeps it in `cache` for the series' job. Returns false, computing nothing, when the
// model cannot be served slice by slice (SlicesAreIndependent), the instance is not of
// one of the model's modalities, or its result is already there. Throws Error for an
// instance that cannot be decoded (its job will report it as well).
bool PrecomputeInstance(EncodedInstance instance, const std::string& description,
                        const FrameDecoder* decoder, const Model& model, SliceCache& cache,
                        const RunContext& context);

}  // namespace enhance
