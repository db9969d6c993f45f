// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/SeriesEnhancer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_set>

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

// The volume's size, geometry and units, without its voxels.
Volume Header(const Volume& volume) {
  Volume header;
  header.slices = volume.slices;
  header.rows = volume.rows;
  header.columns = volume.columns;
  header.geometry = volume.geometry;
  header.units = volume.units;
  return header;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Encodes output slices and hands the files over on its own thread while the model
// computes later slices: slice k is encoded once the model reports it final (or once
// every slice is, after the run), in instance order. It stops, without handing a slice
// over, at the first slice whose values the series' encoding cannot store (the caller
// then writes the series again with an encoding chosen from all values).
// Thread-safety: Ready(), AllReady() and Failed() may be called from any thread.
class OverlappedWriter {
 public:
  using HandOver = std::function<void(size_t index, size_t count, std::string file)>;

  OverlappedWriter(const DerivedSeriesWriter& writer, const float* voxels, size_t perSlice,
                   HandOver handOver)
      : writer_(writer),
        voxels_(voxels),
        perSlice_(perSlice),
        handOver_(std::move(handOver)),
        ready_(writer.Count(), false),
        thread_([this] { Loop(); }) {}

  ~OverlappedWriter() { Stop(); }
  OverlappedWriter(const OverlappedWriter&) = delete;
  OverlappedWriter& operator=(const OverlappedWriter&) = delete;

  void Ready(int64_t slice) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.at(static_cast<size_t>(slice)) = true;
    }
    changed_.notify_all();
  }

  // Every slice is final, in `voxels` (the run's result: the same memory when the model
  // wrote over its input, else the volume it returned).
  void AllReady(const float* voxels) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (voxels != voxels_ && written_ > 0) {
        throw Error(ErrorKind::kInternal, "output slices were reported in a volume not returned");
      }
      voxels_ = voxels;
      std::fill(ready_.begin(), ready_.end(), true);
    }
    changed_.notify_all();
  }

  // Waits for the thread; rethrows its error. False when it stopped at a slice the
  // encoding cannot store.
  bool Finish() {
    if (thread_.joinable()) thread_.join();
    if (error_) std::rethrow_exception(error_);
    return !outOfRange_;
  }

  // Abandons the remaining slices: the thread stops after the current one.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  bool Failed() const { return failed_; }
  std::exception_ptr Failure() const { return error_; }
  double EncodeSeconds() const { return encodeSeconds_; }  // after Finish() or Stop()

 private:
  void Loop() {
    const size_t count = ready_.size();
    for (size_t k = 0; k < count; ++k) {
      const float* values = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || ready_[k]; });
        if (stop_) return;
        values = voxels_ + k * perSlice_;
      }
      const auto [lo, hi] = std::minmax_element(values, values + perSlice_);
      if (!writer_.Holds(*lo, *hi)) {
        outOfRange_ = true;
        return;
      }
      try {
        const auto start = std::chrono::steady_clock::now();
        std::string file = writer_.Write(k, values);
        encodeSeconds_ += SecondsSince(start);
        handOver_(k, count, std::move(file));
      } catch (...) {
        error_ = std::current_exception();
        failed_ = true;
        return;
      }
      std::lock_guard<std::mutex> lock(mutex_);
      ++written_;
    }
  }

  const DerivedSeriesWriter& writer_;
  const float* voxels_;
  const size_t perSlice_;
  const HandOver handOver_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<bool> ready_;
  bool stop_ = false;
  size_t written_ = 0;
  bool outOfRange_ = false;
  double encodeSeconds_ = 0;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
  std::thread thread_;  // last: starts once everything above is initialised
};

}  // namespace

DecodedSeries FetchSeries(InstanceSource& source, const RunContext& context, double progressShare,
                          StageTimings* timings,
                          const std::function<void(SeriesReader::Added&)>& decoded) {
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
    if (decoded) {
      SeriesReader::Added added = reader.LastAdded();
      decoded(added);
    }
    decodeSeconds += clock.Lap();
    context.Report(progressShare * static_cast<double>(i + 1) / static_cast<double>(ids.size()));
  }
  DecodedSeries series = reader.Finish();
  decodeSeconds += clock.Lap();
  if (timings) {
    timings->fetchSeconds = fetchSeconds;
    timings->decodeSeconds = decodeSeconds;
  }
  return series;
}

EnhancedSeries EnhanceSeries(InstanceSource& source, const Model& model,
                             const OutputOptions& output, const RunContext& context,
                             SliceCache* early, const DerivedFileSink& sink,
                             const std::function<void()>& discard) {
  const std::string description = source.Describe();
  EnhancedSeries result;
  const ModelInfo& info = model.Info();
  // For a model that writes each output slice over its input slice, the slices computed
  // ahead are taken as their source slices are decoded: the cache gives up each one as
  // the volume grows, instead of holding the series while the volume is read again.
  std::unordered_set<std::string> takenEarly;  // the source's instance identifiers
  std::function<void(SeriesReader::Added&)> takeEarly;
  if (early && model.TakesPrecomputedSlices() && info.inPlaneScale == 1) {
    takeEarly = [&](SeriesReader::Added& slice) {
      const std::vector<float> values = early->Take(
          SliceCache::Key(info.uid, slice.sopInstanceUid, slice.values, slice.rows, slice.columns));
      if (values.size() != static_cast<size_t>(slice.rows * slice.columns)) return;
      std::copy(values.begin(), values.end(), slice.values);
      takenEarly.insert(slice.id);
    };
  }
  DecodedSeries decoded = FetchSeries(source, context, kFetchShare, &result.timings, takeEarly);
  result.warnings = decoded.warnings;
  Stopwatch clock;
  result.sourceModality = decoded.modality;
  result.sourceSlices = decoded.volume.slices;
  if (std::find(info.modalities.begin(), info.modalities.end(), decoded.modality) ==
      info.modalities.end()) {
    std::string accepted;
    for (const auto& m : info.modalities) accepted += (accepted.empty() ? "" : ", ") + m;
    throw Error(ErrorKind::kBadInput, description + ": model '" + info.name + "' accepts " +
                                          accepted + " series, not modality '" + decoded.modality +
                                          "'; choose a model for " + decoded.modality);
  }
  context.Report(kFetchShare + kDecodeShare);

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

  // The model may write its output over the decoded pixels (Model::RunReusing), so that
  // memory holds one volume; the writer needs the source's sizes, geometry and headers,
  // not its pixels, which stay in `decoded.volume`.
  Volume pixels = Header(decoded.volume);
  pixels.voxels.swap(decoded.volume.voxels);

  // Files handed to the sink, timed apart from the encoding.
  std::atomic<bool> inferenceDone{false};
  const auto handOver = [&](size_t index, size_t count, std::string file) {
    context.ThrowIfCancelled();
    const auto handedOver = std::chrono::steady_clock::now();
    sink(index, count, std::move(file));
    result.timings.sinkSeconds += SecondsSince(handedOver);
    ++result.derivedInstances;
    if (inferenceDone) {
      context.Report(kFetchShare + kDecodeShare + kInferenceShare +
                     (1 - kFetchShare - kDecodeShare - kInferenceShare) *
                         static_cast<double>(index + 1) / static_cast<double>(count));
    }
  };

  // With a sink that can start over (`discard`) and output on the source's grid, slices
  // are encoded and handed over while the model computes the next ones. The encoding is
  // chosen before the output exists, from the source's values widened by a quarter of
  // their span on each side; should an output slice fall outside it, what was handed over
  // is discarded and the series written again after the run.
  Volume header;  // the output's size, grid and units, without voxels
  std::unique_ptr<DerivedSeriesWriter> streamed;
  std::unique_ptr<OverlappedWriter> overlapped;
  const auto perSlice = static_cast<size_t>(pixels.VoxelsPerSlice());
  if (sink && discard && info.inPlaneScale == 1 && info.throughPlaneScale == 1 &&
      !pixels.voxels.empty()) {
    header = Header(pixels);
    if (!info.outputUnits.empty()) header.units = info.outputUnits;
    // The source's range as decoded: slices taken early already hold output.
    const float margin = 0.25f * (decoded.highest - decoded.lowest) + 1.0f;
    streamed = std::make_unique<DerivedSeriesWriter>(
        decoded, header, derivation, decoded.lowest - margin, decoded.highest + margin);
    overlapped =
        std::make_unique<OverlappedWriter>(*streamed, pixels.voxels.data(), perSlice, handOver);
  }

  RunContext inferenceContext;
  inferenceContext.cancelled = [&] {
    return (context.cancelled && context.cancelled()) || (overlapped && overlapped->Failed());
  };
  inferenceContext.warning = context.warning;  // fallbacks taken (out of memory) reach the job
  inferenceContext.progress = [&](double fraction) {
    context.Report(kFetchShare + kDecodeShare + kInferenceShare * fraction);
  };
  if (overlapped) {
    inferenceContext.outputReady = [&](int64_t slice) { overlapped->Ready(slice); };
  }
  if (early) {
    // Consulted before any slice is computed: `pixels` holds the input, except for the
    // slices taken while decoding, which hold their output already.
    inferenceContext.precomputed = [&](int64_t slice) {
      const SourceInstance& instance = decoded.instances.at(static_cast<size_t>(slice));
      if (takenEarly.count(instance.id) != 0) {  // already written over its input
        ++result.timings.precomputedSlices;
        return std::vector<float>(pixels.Slice(slice), pixels.Slice(slice + 1));
      }
      std::vector<float> values =
          early->Take(SliceCache::Key(info.uid, instance.sopInstanceUid, pixels, slice));
      if (!values.empty()) ++result.timings.precomputedSlices;
      return values;
    };
  }

  Volume enhanced;
  try {
    enhanced = model.RunReusing(pixels, inferenceContext);
  } catch (...) {
    if (overlapped) {
      overlapped->Stop();
      // A failure to hand a file over stopped the run: it is the cause to report.
      if (overlapped->Failure()) std::rethrow_exception(overlapped->Failure());
    }
    throw;
  }
  std::vector<float>().swap(pixels.voxels);
  result.timings.inferenceSeconds = clock.Lap();
  inferenceDone = true;
  context.ThrowIfCancelled();

  const auto encodeStart = std::chrono::steady_clock::now();
  bool written = false;
  double encodeSeconds = 0;
  if (overlapped) {
    const bool sameGrid = enhanced.slices == header.slices && enhanced.rows == header.rows &&
                          enhanced.columns == header.columns && enhanced.units == header.units;
    if (sameGrid) {
      overlapped->AllReady(enhanced.voxels.data());
      written = overlapped->Finish();
    } else {
      overlapped->Stop();
    }
    encodeSeconds = overlapped->EncodeSeconds();
    overlapped.reset();
    if (!written) {
      // Out of the chosen encoding's range (or not the expected grid): start over with an
      // encoding chosen from every output value.
      discard();
      result.derivedInstances = 0;
    }
  }
  if (!written) {
    const double sinkBefore = result.timings.sinkSeconds;
    const auto start = std::chrono::steady_clock::now();
    if (sink) {
      WriteDerivedSeries(decoded, enhanced, derivation, handOver);
    } else {
      result.files = WriteDerivedSeries(decoded, enhanced, derivation);
      result.derivedInstances = result.files.size();
    }
    encodeSeconds += SecondsSince(start) - (result.timings.sinkSeconds - sinkBefore);
  }
  result.timings.afterInferenceSeconds = SecondsSince(encodeStart);
  result.timings.encodeSeconds = encodeSeconds;
  context.Report(1.0);
  return result;
}

bool PrecomputeInstance(EncodedInstance instance, const std::string& description,
                        const FrameDecoder* decoder, const Model& model, SliceCache& cache,
                        const RunContext& context) {
  const ModelInfo& info = model.Info();
  if (!model.TakesPrecomputedSlices()) return false;  // its job would compute it again
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
