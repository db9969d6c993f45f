// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/pipeline/SeriesEnhancer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <unordered_set>

#include "OverlappedWriter.h"
#include "enhance/base/Error.h"
#include "enhance/base/OrderStatistics.h"
#include "enhance/dicom/DicomSeriesReader.h"

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

// The key of a series for models that draw random numbers (RunContext::randomKey): FNV-1a
// of its SeriesInstanceUID, so that a job and the early start of the same series draw the
// same noise.
uint64_t RandomKey(const std::string& seriesInstanceUid) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (const unsigned char c : seriesInstanceUid) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

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

namespace {

// The uncertainty inside the body of the derived series (see UncertaintySummary), from
// at most about a million voxels taken at a regular stride.
UncertaintySummary Summarise(const Volume& derived, const Volume& spread, double threshold) {
  UncertaintySummary summary;
  summary.units = spread.units;
  summary.threshold = threshold;
  const size_t total = derived.voxels.size();
  if (total == 0) return summary;
  const size_t stride = std::max<size_t>(1, total / 1000000);
  float bodyFloor = -500.0f;
  if (derived.units != "HU") {
    std::vector<float> sample;
    for (size_t i = 0; i < total; i += stride) sample.push_back(derived.voxels[i]);
    const auto at = static_cast<size_t>(0.995 * static_cast<double>(sample.size() - 1));
    bodyFloor = 0.02f * KthSmallest(sample.data(), sample.size(), at);
  }
  std::vector<float> inside;
  size_t above = 0;
  for (size_t i = 0; i < total; i += stride) {
    if (derived.voxels[i] <= bodyFloor) continue;
    inside.push_back(spread.voxels[i]);
    if (spread.voxels[i] > threshold) ++above;
  }
  if (inside.empty()) return summary;
  const auto quantile = [&inside](double q) {
    const auto at = static_cast<size_t>(q * static_cast<double>(inside.size() - 1));
    return static_cast<double>(KthSmallest(inside.data(), inside.size(), at));
  };
  summary.fractionAbove = static_cast<double>(above) / static_cast<double>(inside.size());
  summary.median = quantile(0.5);
  summary.percentile99 = quantile(0.99);
  return summary;
}

// One run of EnhanceSeries, in the order its steps are taken: fetch and decode (taking
// slices computed early), check the modality, run the model while a second thread encodes
// and hands over the slices it reports final, then write what is left.
class SeriesRun {
 public:
  SeriesRun(InstanceSource& source, const Model& model, const OutputOptions& output,
            const RunContext& context, SliceCache* early, const DerivedFileSink& sink,
            const std::function<void()>& discard)
      : source_(source),
        model_(model),
        info_(model.Info()),
        output_(output),
        context_(context),
        early_(early),
        sink_(sink),
        discard_(discard),
        description_(source.Describe()) {}

  EnhancedSeries Run() {
    wantSpread_ = output_.uncertainty && model_.ProducesUncertainty();
    wantDomain_ = output_.domainAction != DomainAction::kOff && model_.Domain() != nullptr;
    if (wantDomain_) {
      domain_ = std::make_unique<SeriesDomainScorer>(
          *model_.Domain(), static_cast<int64_t>(source_.ListInstances().size()));
    }
    Fetch();
    clock_.Lap();
    CheckModality();
    context_.Report(kFetchShare + kDecodeShare);
    derivation_ = Derivation();
    if (wantDomain_) {
      CheckDomain();
      // The check's network pass over the slices prepared while decoding counts with the
      // decoding, as the check's share of it, not with the model's inference.
      result_.timings.decodeSeconds += clock_.Lap();
    }
    // The model may write its output over the decoded pixels (Model::RunReusing), so that
    // memory holds one volume; the writer needs the source's sizes, geometry and headers,
    // not its pixels, which stay in `decoded_.volume`.
    pixels_ = Header(decoded_.volume);
    pixels_.voxels.swap(decoded_.volume.voxels);
    // A model that learns from the series says what it learned before its first output
    // slice, and the derived series' description says it too: the writer starts then.
    if (!model_.LearnsFromSeries()) StartOverlappedWriter();
    const Volume enhanced = Infer();
    result_.timings.inferenceSeconds = clock_.Lap();
    inferenceDone_ = true;
    context_.ThrowIfCancelled();
    WriteRemaining(enhanced);
    if (wantSpread_) WriteUncertainty(enhanced);
    context_.Report(1.0);
    return std::move(result_);
  }

 private:
  // For a model that writes each output slice over its input slice, the slices computed
  // ahead are taken as their source slices are decoded: the cache gives up each one as
  // the volume grows, instead of holding the series while the volume is read again.
  void Fetch() {
    std::function<void(SeriesReader::Added&)> takeEarly;
    if (early_ && !wantSpread_ && model_.TakesPrecomputedSlices() && info_.inPlaneScale == 1) {
      takeEarly = [this](SeriesReader::Added& slice) {
        ScoreDomain(slice);
        const std::vector<float> values = early_->Take(SliceCache::Key(
            info_.uid, slice.sopInstanceUid, slice.values, slice.rows, slice.columns));
        if (values.size() != static_cast<size_t>(slice.rows * slice.columns)) return;
        std::copy(values.begin(), values.end(), slice.values);
        takenEarly_.insert(slice.id);
      };
    } else if (wantDomain_) {
      takeEarly = [this](SeriesReader::Added& slice) { ScoreDomain(slice); };
    }
    decoded_ = FetchSeries(source_, context_, kFetchShare, &result_.timings, takeEarly);
    result_.warnings = decoded_.warnings;
    result_.sourceModality = decoded_.modality;
    result_.sourceSlices = decoded_.volume.slices;
  }

  // A slice just decoded, prepared for the domain check while it still holds its input
  // when it is one the check scores (the check runs on 8 at a time, the rest in CheckDomain).
  void ScoreDomain(const SeriesReader::Added& slice) {
    if (!wantDomain_) return;
    const auto start = std::chrono::steady_clock::now();
    domain_->Offer(slice.values, slice.rows, slice.columns);
    result_.timings.domainSeconds += SecondsSince(start);
  }

  // Refuses a series outside the model's domain, or marks what is derived from it.
  void CheckDomain() {
    DomainScore& score = result_.domain;
    // The last of the slices prepared as they were decoded go through the autoencoder.
    const auto start = std::chrono::steady_clock::now();
    score = domain_->Score();
    result_.timings.domainSeconds += SecondsSince(start);
    result_.hasDomainScore = true;
    if (!score.outside) return;
    const std::string what =
        "outside the domain the model was trained on (" + DescribeDomainScore(score) + ")";
    if (output_.domainAction == DomainAction::kRefuse) {
      throw Error(ErrorKind::kBadInput,
                  description_ + ": refused: " + what + " of model '" + info_.name + "'" +
                      (score.trainedOn.empty() ? "" : ", trained on " + score.trainedOn) +
                      "; nothing was stored. Send the series to a model trained on such "
                      "images, or set \"DomainCheck\": \"warn\" in the rule or request to "
                      "process it with a warning");
    }
    derivation_.warning = what;
    result_.warnings.push_back(what + " of model '" + info_.name + "'");
  }

  void CheckModality() const {
    const std::vector<std::string>& accepted = info_.modalities;
    if (std::find(accepted.begin(), accepted.end(), decoded_.modality) != accepted.end()) return;
    std::string list;
    for (const auto& m : accepted) list += (list.empty() ? "" : ", ") + m;
    throw Error(ErrorKind::kBadInput, description_ + ": model '" + info_.name + "' accepts " +
                                          list + " series, not modality '" + decoded_.modality +
                                          "'; choose a model for " + decoded_.modality);
  }

  DerivationInfo Derivation() const {
    DerivationInfo derivation;
    derivation.task = info_.task;
    derivation.modelName = info_.name;
    derivation.modelVersion = info_.version;
    derivation.modelUid = info_.uid;
    derivation.parameters = model_.Parameters();
    derivation.derivationCode = info_.derivationCode;
    derivation.softwareVersion = output_.softwareVersion;
    derivation.seriesDescriptionSuffix = output_.seriesDescriptionSuffix;
    derivation.seriesNumberOffset = output_.seriesNumberOffset;
    derivation.uidRoot = output_.uidRoot;
    derivation.seriesInstanceUid = output_.seriesInstanceUid;
    derivation.outputKind = OutputKindForTask(info_.task);
    return derivation;
  }

  // A file handed to the sink, timed apart from the encoding.
  void HandOver(size_t index, size_t count, std::string file) {
    context_.ThrowIfCancelled();
    const auto handedOver = std::chrono::steady_clock::now();
    sink_(index, count, std::move(file));
    result_.timings.sinkSeconds += SecondsSince(handedOver);
    ++result_.derivedInstances;
    if (inferenceDone_) {
      context_.Report(kFetchShare + kDecodeShare + kInferenceShare +
                      (1 - kFetchShare - kDecodeShare - kInferenceShare) *
                          static_cast<double>(index + 1) / static_cast<double>(count));
    }
  }

  // With a sink that can start over (`discard`) and output on the source's grid, slices
  // are encoded and handed over while the model computes the next ones. The encoding is
  // chosen before the output exists, from the source's values widened by a quarter of
  // their span on each side; should an output slice fall outside it, what was handed over
  // is discarded and the series written again after the run.
  void StartOverlappedWriter() {
    if (!sink_ || !discard_ || info_.inPlaneScale != 1 || info_.throughPlaneScale != 1 ||
        pixels_.voxels.empty()) {
      return;
    }
    header_ = Header(pixels_);
    if (!info_.outputUnits.empty()) header_.units = info_.outputUnits;
    // The source's range as decoded: slices taken early already hold output.
    const float margin = 0.25f * (decoded_.highest - decoded_.lowest) + 1.0f;
    streamed_ = std::make_unique<DerivedSeriesWriter>(
        decoded_, header_, derivation_, decoded_.lowest - margin, decoded_.highest + margin);
    overlapped_ = std::make_unique<OverlappedWriter>(
        *streamed_, pixels_.voxels.data(), static_cast<size_t>(pixels_.VoxelsPerSlice()),
        [this](size_t index, size_t count, std::string file) {
          HandOver(index, count, std::move(file));
        });
  }

  // Output slices computed ahead, consulted before any slice is computed: `pixels_` holds
  // the input, except for the slices taken while decoding, which hold their output
  // already.
  std::vector<float> Precomputed(int64_t slice) {
    const SourceInstance& instance = decoded_.instances.at(static_cast<size_t>(slice));
    if (takenEarly_.count(instance.id) != 0) {  // already written over its input
      ++result_.timings.precomputedSlices;
      return std::vector<float>(pixels_.Slice(slice), pixels_.Slice(slice + 1));
    }
    std::vector<float> values =
        early_->Take(SliceCache::Key(info_.uid, instance.sopInstanceUid, pixels_, slice));
    if (!values.empty()) ++result_.timings.precomputedSlices;
    return values;
  }

  Volume Infer() {
    RunContext inference;
    inference.randomKey = RandomKey(decoded_.seriesInstanceUid);
    inference.cancelled = [this] {
      return (context_.cancelled && context_.cancelled()) || (overlapped_ && overlapped_->Failed());
    };
    inference.warning = context_.warning;  // fallbacks taken (out of memory) reach the job
    inference.progress = [this](double fraction) {
      context_.Report(kFetchShare + kDecodeShare + kInferenceShare * fraction);
    };
    inference.outputReady = [this](int64_t slice) {
      if (overlapped_) overlapped_->Ready(slice);
    };
    inference.learned = [this](const LearningReport& report) { Learned(report); };
    if (early_) inference.precomputed = [this](int64_t slice) { return Precomputed(slice); };
    if (wantSpread_) inference.uncertainty = &spread_;
    Volume enhanced;
    try {
      enhanced = model_.RunReusing(pixels_, inference);
    } catch (...) {
      if (overlapped_) {
        overlapped_->Stop();
        // A failure to hand a file over stopped the run: it is the cause to report.
        if (overlapped_->Failure()) std::rethrow_exception(overlapped_->Failure());
      }
      throw;
    }
    std::vector<float>().swap(pixels_.voxels);
    return enhanced;
  }

  void Learned(const LearningReport& report) {
    result_.hasLearning = true;
    result_.learning = report;
    derivation_.learned = DescribeLearning(report);
    StartOverlappedWriter();
  }

  // Lets the overlapped writer finish the series; true when it did. Otherwise what it
  // handed over is discarded.
  bool FinishOverlapped(const Volume& enhanced, double& encodeSeconds) {
    const bool sameGrid = enhanced.slices == header_.slices && enhanced.rows == header_.rows &&
                          enhanced.columns == header_.columns && enhanced.units == header_.units;
    bool written = false;
    if (sameGrid) {
      overlapped_->AllReady(enhanced.voxels.data());
      written = overlapped_->Finish();
    } else {
      overlapped_->Stop();
    }
    encodeSeconds = overlapped_->EncodeSeconds();
    overlapped_.reset();
    if (!written) {
      // Out of the chosen encoding's range (or not the expected grid): start over with an
      // encoding chosen from every output value.
      discard_();
      result_.derivedInstances = 0;
    }
    return written;
  }

  void WriteRemaining(const Volume& enhanced) {
    const auto encodeStart = std::chrono::steady_clock::now();
    double encodeSeconds = 0;
    const bool written = overlapped_ && FinishOverlapped(enhanced, encodeSeconds);
    if (!written) {
      const double sinkBefore = result_.timings.sinkSeconds;
      const auto start = std::chrono::steady_clock::now();
      if (sink_) {
        WriteDerivedSeries(decoded_, enhanced, derivation_,
                           [this](size_t index, size_t count, std::string file) {
                             HandOver(index, count, std::move(file));
                           });
      } else {
        result_.files = WriteDerivedSeries(decoded_, enhanced, derivation_);
        result_.derivedInstances = result_.files.size();
      }
      encodeSeconds += SecondsSince(start) - (result_.timings.sinkSeconds - sinkBefore);
    }
    result_.timings.afterInferenceSeconds = SecondsSince(encodeStart);
    result_.timings.encodeSeconds = encodeSeconds;
  }

  // The uncertainty series: summed up, then written after the derived series.
  void WriteUncertainty(const Volume& enhanced) {
    if (spread_.voxels.size() != enhanced.voxels.size()) {
      throw Error(ErrorKind::kInternal, description_ + ": model '" + info_.name +
                                            "' gave no uncertainty for every voxel");
    }
    UncertaintySummary& summary = result_.uncertainty;
    summary = Summarise(enhanced, spread_, output_.uncertaintyThreshold);
    // A diffusion model's samples, or the eight flips and rotations of test-time
    // augmentation.
    summary.samples = info_.isDiffusion ? info_.sampler.samples : 8;
    DerivationInfo derivation = derivation_;
    derivation.uncertaintySamples = summary.samples;
    if (!info_.isDiffusion) derivation.uncertaintyOver = "flips and rotations of the input";
    derivation.windowWidth = summary.percentile99;
    derivation.seriesDescriptionSuffix = output_.uncertaintySuffix;
    derivation.seriesInstanceUid = output_.uncertaintySeriesInstanceUid;
    derivation.seriesNumberOffset = output_.seriesNumberOffset + 1;
    result_.hasUncertainty = true;
    if (!sink_) {
      result_.uncertaintyFiles = WriteDerivedSeries(decoded_, spread_, derivation);
      summary.instances = result_.uncertaintyFiles.size();
      return;
    }
    WriteDerivedSeries(decoded_, spread_, derivation,
                       [this, &summary](size_t index, size_t count, std::string file) {
                         context_.ThrowIfCancelled();
                         sink_(index, count, std::move(file));
                         ++summary.instances;
                       });
  }

  InstanceSource& source_;
  const Model& model_;
  const ModelInfo& info_;
  const OutputOptions& output_;
  const RunContext& context_;
  SliceCache* const early_;
  const DerivedFileSink& sink_;
  const std::function<void()>& discard_;
  const std::string description_;
  EnhancedSeries result_;
  Stopwatch clock_;
  std::unordered_set<std::string> takenEarly_;  // the source's instance identifiers
  DecodedSeries decoded_;
  DerivationInfo derivation_;
  Volume pixels_;
  Volume header_;  // the output's size, grid and units, without voxels
  std::unique_ptr<DerivedSeriesWriter> streamed_;
  std::unique_ptr<OverlappedWriter> overlapped_;
  std::atomic<bool> inferenceDone_{false};
  bool wantSpread_ = false;
  Volume spread_;  // the uncertainty, when wanted
  bool wantDomain_ = false;
  // The series' scored slices, prepared as they are decoded.
  std::unique_ptr<SeriesDomainScorer> domain_;
};

}  // namespace

EnhancedSeries EnhanceSeries(InstanceSource& source, const Model& model,
                             const OutputOptions& output, const RunContext& context,
                             SliceCache* early, const DerivedFileSink& sink,
                             const std::function<void()>& discard) {
  return SeriesRun(source, model, output, context, early, sink, discard).Run();
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
  RunContext keyed = context;
  keyed.randomKey = RandomKey(decoded.seriesInstanceUid);
  Volume output = model.Run(decoded.volume, keyed);
  cache.Put(key, std::move(output.voxels));
  return true;
}

}  // namespace enhance
