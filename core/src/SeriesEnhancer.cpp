// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/SeriesEnhancer.h"

#include <algorithm>
#include <chrono>

#include "enhance/DicomSeriesReader.h"
#include "enhance/Error.h"

namespace enhance {
namespace {

// Share of the progress bar given to each stage; inference dominates.
constexpr double kFetchShare = 0.15;
constexpr double kDecodeShare = 0.05;
constexpr double kInferenceShare = 0.70;

class Stopwatch {
 public:
  double Lap() {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return seconds;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace

DecodedSeries FetchSeries(InstanceSource& source, const RunContext& context, double progressShare,
                          StageTimings* timings) {
  Stopwatch clock;
  const std::string description = source.Describe();
  const std::vector<std::string> ids = source.ListInstances();
  if (ids.empty()) throw Error(ErrorKind::kBadInput, description + ": the series has no instances");
  // Each instance is decoded as soon as it is fetched, so that only one encoded file is
  // held at a time.
  SeriesReader reader(description, ids.size(), source.Decoder());
  double fetchSeconds = 0;
  double decodeSeconds = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    context.ThrowIfCancelled();
    std::string bytes = source.FetchInstance(ids[i]);
    fetchSeconds += clock.Lap();
    reader.Add({ids[i], std::move(bytes)});
    decodeSeconds += clock.Lap();
    context.Report(progressShare * static_cast<double>(i + 1) / static_cast<double>(ids.size()));
  }
  DecodedSeries decoded = reader.Finish();
  decodeSeconds += clock.Lap();
  if (timings) {
    timings->fetchSeconds = fetchSeconds;
    timings->decodeSeconds = decodeSeconds;
  }
  return decoded;
}

EnhancedSeries EnhanceSeries(InstanceSource& source, const Model& model,
                             const OutputOptions& output, const RunContext& context,
                             SliceCache* early, const DerivedFileSink& sink) {
  const std::string description = source.Describe();
  EnhancedSeries result;
  DecodedSeries decoded = FetchSeries(source, context, kFetchShare, &result.timings);
  result.warnings = decoded.warnings;
  Stopwatch clock;
  result.sourceModality = decoded.modality;
  result.sourceSlices = decoded.volume.slices;
  const ModelInfo& info = model.Info();
  if (std::find(info.modalities.begin(), info.modalities.end(), decoded.modality) ==
      info.modalities.end()) {
    std::string accepted;
    for (const auto& m : info.modalities) accepted += (accepted.empty() ? "" : ", ") + m;
    throw Error(ErrorKind::kBadInput, description + ": model '" + info.name + "' accepts " +
                                          accepted + " series, not modality '" + decoded.modality +
                                          "'; choose a model for " + decoded.modality);
  }
  context.Report(kFetchShare + kDecodeShare);

  RunContext inferenceContext;
  inferenceContext.cancelled = context.cancelled;
  inferenceContext.warning = context.warning;  // fallbacks taken (out of memory) reach the job
  inferenceContext.progress = [&](double fraction) {
    context.Report(kFetchShare + kDecodeShare + kInferenceShare * fraction);
  };
  // The model may write its output over the decoded pixels (Model::RunReusing), so that
  // memory holds one volume; the writer needs the source's sizes, geometry and headers,
  // not its pixels, which stay in `decoded.volume`.
  Volume pixels;
  pixels.voxels.swap(decoded.volume.voxels);
  pixels.slices = decoded.volume.slices;
  pixels.rows = decoded.volume.rows;
  pixels.columns = decoded.volume.columns;
  pixels.geometry = decoded.volume.geometry;
  pixels.units = decoded.volume.units;
  if (early) {
    // Consulted before any slice is computed, while `pixels` still holds the input.
    inferenceContext.precomputed = [&](int64_t slice) {
      std::vector<float> values = early->Take(
          SliceCache::Key(info.uid, decoded.instances.at(static_cast<size_t>(slice)).sopInstanceUid,
                          pixels, slice));
      if (!values.empty()) ++result.timings.precomputedSlices;
      return values;
    };
  }
  const Volume enhanced = model.RunReusing(pixels, inferenceContext);
  std::vector<float>().swap(pixels.voxels);
  result.timings.inferenceSeconds = clock.Lap();
  context.ThrowIfCancelled();

  DerivationInfo derivation;
  derivation.task = info.task;
  derivation.modelName = info.name;
  derivation.modelVersion = info.version;
  derivation.modelUid = info.uid;
  derivation.parameters = model.Parameters();
  derivation.derivationCode = info.derivationCode;
  derivation.softwareVersion = output.softwareVersion;
  derivation.seriesDescriptionSuffix = output.seriesDescriptionSuffix;
  derivation.seriesNumberOffset = output.seriesNumberOffset;
  derivation.uidRoot = output.uidRoot;
  derivation.seriesInstanceUid = output.seriesInstanceUid;
  derivation.outputKind = OutputKindForTask(info.task);
  if (sink) {
    WriteDerivedSeries(
        decoded, enhanced, derivation, [&](size_t index, size_t count, std::string file) {
          context.ThrowIfCancelled();
          const auto handedOver = std::chrono::steady_clock::now();
          sink(index, count, std::move(file));
          result.timings.sinkSeconds +=
              std::chrono::duration<double>(std::chrono::steady_clock::now() - handedOver).count();
          ++result.derivedInstances;
          context.Report(kFetchShare + kDecodeShare + kInferenceShare +
                         (1 - kFetchShare - kDecodeShare - kInferenceShare) *
                             static_cast<double>(index + 1) / static_cast<double>(count));
        });
  } else {
    result.files = WriteDerivedSeries(decoded, enhanced, derivation);
    result.derivedInstances = result.files.size();
  }
  result.timings.encodeSeconds = clock.Lap() - result.timings.sinkSeconds;
  context.Report(1.0);
  return result;
}

bool PrecomputeInstance(EncodedInstance instance, const std::string& description,
                        const FrameDecoder* decoder, const Model& model, SliceCache& cache,
                        const RunContext& context) {
  const ModelInfo& info = model.Info();
  if (!SlicesAreIndependent(info)) return false;
  std::vector<EncodedInstance> one;
  one.push_back(std::move(instance));
  const DecodedSeries decoded = ReadSeries(std::move(one), description, decoder);
  if (std::find(info.modalities.begin(), info.modalities.end(), decoded.modality) ==
      info.modalities.end()) {
    return false;
  }
  const std::string key =
      SliceCache::Key(info.uid, decoded.instances.front().sopInstanceUid, decoded.volume, 0);
  if (cache.Contains(key)) return false;
  Volume output = model.Run(decoded.volume, context);
  cache.Put(key, std::move(output.voxels));
  return true;
}

}  // namespace enhance
