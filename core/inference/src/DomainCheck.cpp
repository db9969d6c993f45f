// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/DomainCheck.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <utility>

#include "FusedConvolution.h"
#include "SliceEngine.h"
#include "enhance/base/Error.h"
#include "enhance/base/OrderStatistics.h"
#include "enhance/inference/Runtime.h"

namespace enhance {
namespace {

double Median(std::vector<double> values) {
  const size_t middle = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<long>(middle), values.end());
  const double upper = values[middle];
  if (values.size() % 2 == 1) return upper;
  const double lower =
      *std::max_element(values.begin(), values.begin() + static_cast<long>(middle));
  return 0.5 * (lower + upper);
}

std::string Fixed(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", digits, value);
  return text;
}

// log of a non-negative figure, finite even for a perfect reconstruction.
double SafeLog(double value) { return std::log(std::max(value, 1e-12)); }

struct ResidualSums {
  double values = 0;      // of x
  double squares = 0;     // of d = x - y
  double neighbours = 0;  // of d d' over the horizontally or vertically adjacent pairs
};

// The sums over rows x columns pixels of x and its reconstruction y (both `stride` floats a
// row), and |d| of each pixel in `absolute`. Each row is summed in float, in kLanes
// interleaved parts that the compiler keeps in one vector register (a single running sum
// waits on its last addition each pixel), and the rows' sums in double. A row's d stays
// signed until the row below has taken its products with it.
ResidualSums SumResidual(const float* x, const float* y, int64_t rows, int64_t columns,
                         int64_t stride, std::vector<float>& absolute) {
  constexpr int64_t kLanes = 8;
  absolute.resize(static_cast<size_t>(rows * columns));
  ResidualSums sums;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xRow = x + r * stride;
    const float* yRow = y + r * stride;
    float* dRow = absolute.data() + r * columns;
    float* above = r > 0 ? dRow - columns : nullptr;
    float squares[kLanes] = {}, values[kLanes] = {}, neighbours[kLanes] = {};
    int64_t c = 0;
    for (; c + kLanes <= columns; c += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) {
        const float d = xRow[c + l] - yRow[c + l];
        squares[l] += d * d;
        values[l] += xRow[c + l];
        dRow[c + l] = d;
      }
    }
    for (; c < columns; ++c) {
      const float d = xRow[c] - yRow[c];
      squares[0] += d * d;
      values[0] += xRow[c];
      dRow[c] = d;
    }
    // The products of horizontal neighbours in this row, and of vertical ones with the row
    // above, which is then done with.
    for (c = 1; c + kLanes <= columns; c += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) neighbours[l] += dRow[c + l] * dRow[c + l - 1];
    }
    for (; c < columns; ++c) neighbours[0] += dRow[c] * dRow[c - 1];
    if (above != nullptr) {
      for (c = 0; c + kLanes <= columns; c += kLanes) {
        for (int64_t l = 0; l < kLanes; ++l) {
          neighbours[l] += dRow[c + l] * above[c + l];
          above[c + l] = std::abs(above[c + l]);
        }
      }
      for (; c < columns; ++c) {
        neighbours[0] += dRow[c] * above[c];
        above[c] = std::abs(above[c]);
      }
    }
    double rowSquares = 0, rowValues = 0, rowNeighbours = 0;
    for (int64_t l = 0; l < kLanes; ++l) {
      rowSquares += squares[l];
      rowValues += values[l];
      rowNeighbours += neighbours[l];
    }
    sums.squares += rowSquares;
    sums.values += rowValues;
    sums.neighbours += rowNeighbours;
  }
  if (rows > 0) {
    float* last = absolute.data() + (rows - 1) * columns;
    for (int64_t c = 0; c < columns; ++c) last[c] = std::abs(last[c]);
  }
  return sums;
}

// The mean over `count` latent elements of 0.5 (mu^2 + exp(logvar) - 1 - logvar).
double MeanKl(const float* mu, const float* logvar, int64_t count) {
  double kl = 0;
  for (int64_t e = 0; e < count; ++e) {
    const double mean = mu[e], logVariance = logvar[e];
    kl += 0.5 * (mean * mean + std::exp(logVariance) - 1.0 - logVariance);
  }
  return kl / static_cast<double>(count);
}

}  // namespace

std::vector<bool> DomainSlicesScored(int64_t count, const DomainCheckSpec& spec) {
  const int64_t step = std::max(1, spec.sliceStep);
  const int64_t n = std::min<int64_t>(std::max<int64_t>((count + step - 1) / step, spec.minSlices),
                                      std::max(1, spec.maxSlices));
  std::vector<bool> scored(static_cast<size_t>(std::max<int64_t>(0, count)), count <= n);
  if (count <= n) return scored;
  for (int64_t k = 0; k < n; ++k) scored[static_cast<size_t>((2 * k + 1) * count / (2 * n))] = true;
  return scored;
}

namespace {

// The features of a series' medians or of a slice that `scored` names, in order.
std::vector<double> FeaturesOf(const DomainScore& score, const std::vector<ScoredFeature>& scored) {
  std::vector<double> features;
  for (const ScoredFeature& f : scored) features.push_back(score.*f.median);
  return features;
}
std::vector<double> FeaturesOf(const SliceDomainFeatures& slice,
                               const std::vector<ScoredFeature>& scored) {
  std::vector<double> features;
  for (const ScoredFeature& f : scored) features.push_back(slice.*f.slice);
  return features;
}

// The distance in the reference's standard deviations from `features` to the nearest of
// `points`; NaN when a feature is not a number.
double NearestDistance(const std::vector<double>& features,
                       const std::vector<ScoredFeature>& scored,
                       const std::vector<std::vector<double>>& points) {
  for (double f : features) {
    if (std::isnan(f)) return std::numeric_limits<double>::quiet_NaN();
  }
  double nearest = std::numeric_limits<double>::infinity();
  for (const std::vector<double>& p : points) {
    double squares = 0;
    for (size_t i = 0; i < features.size(); ++i) {
      const double z = (features[i] - p.at(i)) / scored[i].sd;
      squares += z * z;
    }
    nearest = std::min(nearest, std::sqrt(squares));
  }
  return nearest;
}

}  // namespace

DomainScore AggregateDomainScore(const DomainCheckSpec& spec,
                                 const std::vector<SliceDomainFeatures>& slices) {
  if (slices.empty()) throw Error(ErrorKind::kBadInput, "domain check: no slice to score");
  std::vector<double> reconstruction, kl, residual, intensity, correlation;
  for (const SliceDomainFeatures& f : slices) {
    reconstruction.push_back(f.logReconstruction);
    kl.push_back(f.logKl);
    residual.push_back(f.logResidual);
    intensity.push_back(f.meanIntensity);
    correlation.push_back(f.residualCorrelation);
  }
  DomainScore score;
  score.slices = static_cast<int64_t>(slices.size());
  score.logReconstruction = Median(std::move(reconstruction));
  score.logKl = Median(std::move(kl));
  score.logResidual = Median(std::move(residual));
  score.meanIntensity = Median(std::move(intensity));
  score.residualCorrelation = Median(std::move(correlation));
  score.trainedOn = spec.trainedOn;
  const std::vector<ScoredFeature> scored = ScoredFeatures(spec);
  if (slices.size() <= spec.shortSeriesThresholds.size() && !spec.shortSeriesSlices.empty()) {
    // Fewer slices than the check's minimum: each slice's distance to the nearest reference
    // slice, and their median.
    std::vector<double> distances;
    bool finite = true;
    for (const SliceDomainFeatures& f : slices) {
      distances.push_back(NearestDistance(FeaturesOf(f, scored), scored, spec.shortSeriesSlices));
      finite = finite && !std::isnan(distances.back());
    }
    score.score = finite ? Median(std::move(distances)) : std::numeric_limits<double>::quiet_NaN();
    score.threshold = spec.shortSeriesThresholds[slices.size() - 1];
  } else {
    // The distance from the series' medians to the nearest point of the reference: its
    // mean, or each of its series when the manifest lists them.
    std::vector<double> mean;
    for (const ScoredFeature& f : scored) mean.push_back(f.mean);
    score.score =
        NearestDistance(FeaturesOf(score, scored), scored,
                        spec.referenceSeries.empty() ? std::vector<std::vector<double>>{mean}
                                                     : spec.referenceSeries);
    score.threshold = spec.threshold;
  }
  score.outside = !(score.score <= score.threshold);  // NaN counts as outside
  return score;
}

std::string DescribeDomainScore(const DomainScore& score) {
  return "domain score " + Fixed(score.score, 2) + (score.outside ? " above" : " within") +
         " the threshold " + Fixed(score.threshold, 2);
}

struct DomainCheck::Impl {
  DomainCheckSpec spec;
  c10::Device device{c10::kCPU};
  torch::jit::Module module;
  std::string runs = "as saved";  // how the network runs (Describe())
  std::mutex mutex;               // one slice or batch at a time; guards what follows
  // Kept between slices, so that scoring one does not map fresh memory (a page fault per
  // 4 KB, about as costly as the network on a small slice): the network's outputs and the
  // block means, body sample and residual of the largest slice or batch scored so far.
  FusedOutputMemory outputs;
  std::vector<float> means;  // the slice's block means (DomainCheckSpec::downsample)
  std::vector<float> body;
  std::vector<float> residual;
  // A DomainBatch's prepared inputs, lent to the next batch for the same reason (one: a
  // batch of a series scored beside it allocates its own).
  std::mutex spareMutex;
  std::vector<float> spareInputs;

  // (reconstruction, mu, logvar) of a normalised slice [1, 1, H, W].
  std::tuple<at::Tensor, at::Tensor, at::Tensor> Forward(const at::Tensor& x) {
    const c10::IValue result = module.forward({x});
    if (!result.isTuple() || result.toTuple()->elements().size() != 3) {
      throw Error(ErrorKind::kBadInput,
                  "forward(x) must return a tuple (reconstruction, mu, logvar)");
    }
    const auto& e = result.toTuple()->elements();
    if (!e[0].isTensor() || !e[1].isTensor() || !e[2].isTensor()) {
      throw Error(ErrorKind::kBadInput,
                  "forward(x) must return three tensors (reconstruction, mu, logvar)");
    }
    const at::Tensor reconstruction = e[0].toTensor();
    const at::Tensor mu = e[1].toTensor();
    const at::Tensor logvar = e[2].toTensor();
    if (reconstruction.sizes() != x.sizes()) {
      throw Error(ErrorKind::kBadInput, "the reconstruction has shape " +
                                            c10::str(reconstruction.sizes()) + " for an input " +
                                            c10::str(x.sizes()) + "; it must be the input's");
    }
    if (mu.sizes() != logvar.sizes() || mu.numel() == 0) {
      throw Error(ErrorKind::kBadInput, "mu " + c10::str(mu.sizes()) + " and logvar " +
                                            c10::str(logvar.sizes()) +
                                            " must be non-empty and of the same shape");
    }
    return {reconstruction, mu, logvar};
  }
};

namespace {

// The autoencoder as DomainCheckCpu says, and how it runs (Describe()).
std::pair<torch::jit::Module, std::string> OnCpu(const torch::jit::Module& module,
                                                 DomainCheckCpu cpu) {
  if (cpu == DomainCheckCpu::kAsSaved) return {module, "as saved"};
  if (cpu == DomainCheckCpu::kFastest && FusedConvolutionUsesOneDnn()) {
    try {
      int replaced = 0;
      torch::jit::Module fused = FuseConvolutions(module, &replaced);
      if (replaced > 0) return {fused, "fused convolutions"};
    } catch (const std::exception&) {
      // Falls through to LibTorch's optimisation.
    }
  }
  try {
    torch::jit::Module frozen = torch::jit::freeze(module);
    return {torch::jit::optimize_for_inference(frozen), "optimised by LibTorch"};
  } catch (const std::exception&) {
    return {module, "as saved"};
  }
}

// The lower of the two middle values for an even count, as LibTorch's median.
double LowerMedian(const std::vector<float>& values) {
  return KthSmallest(values.data(), values.size(), (values.size() - 1) / 2);
}

}  // namespace

DomainCheck::DomainCheck(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DomainCheck::~DomainCheck() = default;

std::unique_ptr<const DomainCheck> DomainCheck::Load(const DomainCheckSpec& spec,
                                                     const std::string& device,
                                                     const std::string& where, DomainCheckCpu cpu) {
  auto impl = std::make_unique<Impl>();
  impl->spec = spec;
  impl->device = c10::Device(device);
  const std::string name = spec.archive.filename().string();
  if (!std::filesystem::is_regular_file(spec.archive)) {
    throw Error(ErrorKind::kNotFound, where + ": the domain check's archive " + name +
                                          " named in manifest.json does not exist");
  }
  try {
    impl->module = torch::jit::load(spec.archive.string(), impl->device);
    impl->module.eval();
  } catch (const c10::Error& e) {
    throw Error(ErrorKind::kBadInput,
                where + ": the domain check's archive " + name +
                    " is not a loadable TorchScript archive: " + e.what_without_backtrace());
  }
  if (impl->device.is_cpu()) std::tie(impl->module, impl->runs) = OnCpu(impl->module, cpu);
  std::unique_ptr<DomainCheck> check(new DomainCheck(std::move(impl)));
  // The contract, on a small slice.
  const int64_t side = (32 + spec.sizeMultiple - 1) / spec.sizeMultiple * spec.sizeMultiple;
  std::vector<float> probe(static_cast<size_t>(side * side), 0.0f);
  for (size_t i = 0; i < probe.size(); ++i) probe[i] = static_cast<float>(i % 97) / 97.0f;
  try {
    const SliceDomainFeatures f = check->SliceFeatures(probe.data(), side, side);
    if (!std::isfinite(f.logReconstruction) || !std::isfinite(f.logKl) ||
        !std::isfinite(f.logResidual) || !std::isfinite(f.meanIntensity) ||
        !std::isfinite(f.residualCorrelation)) {
      throw Error(ErrorKind::kBadInput, "its figures are not finite");
    }
  } catch (const c10::Error& e) {
    throw Error(ErrorKind::kBadInput, where + ": the domain check " + name + " fails on a [1, 1, " +
                                          std::to_string(side) + ", " + std::to_string(side) +
                                          "] input: " + e.what_without_backtrace());
  } catch (const Error& e) {
    throw Error(e.kind(), where + ": the domain check " + name + ": " + e.what());
  }
  return check;
}

const DomainCheckSpec& DomainCheck::Spec() const { return impl_->spec; }

const std::string& DomainCheck::Describe() const { return impl_->runs; }

DomainCheck::PreparedSlice DomainCheck::Prepare(const float* values, int64_t rows, int64_t columns,
                                                std::vector<float>& inputs,
                                                DomainCheckTimes* times) const {
  const auto start =
      times != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  const DomainCheckSpec& spec = impl_->spec;
  const std::lock_guard<std::mutex> lock(impl_->mutex);
  // Pixels `downsample` times as large, as the autoencoder was trained on.
  const int64_t factor = spec.downsample;
  if (factor > 1 && rows >= factor && columns >= factor) {
    std::vector<float>& means = impl_->means;
    means.resize(static_cast<size_t>((rows / factor) * (columns / factor)));
    BlockMeans(values, rows, columns, factor, means.data());
    values = means.data();
    rows /= factor;
    columns /= factor;
  }
  const NormalisationMap map =
      MapForSlice(spec.input, values, rows, columns, spec.units, &impl_->body);
  // The central crop, normalised as the whole slice.
  PreparedSlice slice;
  slice.rows = spec.crop > 0 ? std::min<int64_t>(rows, spec.crop) : rows;
  slice.columns = spec.crop > 0 ? std::min<int64_t>(columns, spec.crop) : columns;
  const int64_t top = (rows - slice.rows) / 2;
  const int64_t left = (columns - slice.columns) / 2;
  const int64_t multiple = spec.sizeMultiple;
  slice.paddedRows = (slice.rows + multiple - 1) / multiple * multiple;
  slice.paddedColumns = (slice.columns + multiple - 1) / multiple * multiple;
  slice.offset = inputs.size();
  inputs.resize(slice.offset + static_cast<size_t>(slice.paddedRows * slice.paddedColumns), 0.0f);
  const auto scale = static_cast<float>(map.scale);
  const auto offset = static_cast<float>(map.offset);
  for (int64_t r = 0; r < slice.rows; ++r) {
    const float* from = values + (top + r) * columns + left;
    float* to = inputs.data() + slice.offset + r * slice.paddedColumns;
    for (int64_t c = 0; c < slice.columns; ++c) to[c] = from[c] * scale + offset;
  }
  if (times != nullptr) {
    times->prepare +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return slice;
}

void DomainCheck::Run(const std::vector<PreparedSlice>& slices, const std::vector<float>& inputs,
                      std::vector<SliceDomainFeatures>& out, DomainCheckTimes* times) const {
  UseConfiguredThreadsHere();
  const std::lock_guard<std::mutex> lock(impl_->mutex);
  auto last =
      times != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  auto lap = [&](double DomainCheckTimes::*part) {
    if (times == nullptr) return;
    const auto now = std::chrono::steady_clock::now();
    times->*part += std::chrono::duration<double>(now - last).count();
    last = now;
  };
  const PreparedSlice& shape = slices.front();
  const auto n = static_cast<int64_t>(slices.size());
  const int64_t area = shape.paddedRows * shape.paddedColumns;
  // The slices one after the other, where DomainBatch prepared them; read, never written.
  float* x0 = const_cast<float*>(inputs.data()) + shape.offset;
  c10::InferenceMode guard;
  at::Tensor reconstruction, mu, logvar;
  {
    // The layers' outputs reuse the memory of the last batch's.
    const FusedOutputScope recycle(impl_->outputs);
    // One channel: the same memory in channels-last order, which the fused convolutions read.
    const at::Tensor padded =
        at::from_blob(x0, {n, 1, shape.paddedRows, shape.paddedColumns}, at::kFloat)
            .to(impl_->device)
            .contiguous(at::MemoryFormat::ChannelsLast);
    std::tie(reconstruction, mu, logvar) = impl_->Forward(padded);
    reconstruction = reconstruction.to(at::kCPU, at::kFloat).contiguous();
    mu = mu.to(at::kCPU, at::kFloat).contiguous();
    logvar = logvar.to(at::kCPU, at::kFloat).contiguous();
  }
  lap(&DomainCheckTimes::network);
  const int64_t latent = mu.numel() / n;
  for (int64_t k = 0; k < n; ++k) {
    const PreparedSlice& slice = slices[static_cast<size_t>(k)];
    const float* x = x0 + k * area;
    const ResidualSums sums =
        SumResidual(x, reconstruction.data_ptr<float>() + k * area, slice.rows, slice.columns,
                    slice.paddedColumns, impl_->residual);
    const auto pixels = static_cast<double>(slice.rows * slice.columns);
    const double r = sums.squares / pixels;
    const double kl =
        MeanKl(mu.data_ptr<float>() + k * latent, logvar.data_ptr<float>() + k * latent, latent);
    const double m = LowerMedian(impl_->residual);
    const double i = sums.values / pixels;
    // 0 for a perfect reconstruction, as for white noise.
    const double c = sums.squares > 0 ? sums.neighbours / (2.0 * sums.squares) : 0.0;
    out.push_back({SafeLog(r), SafeLog(kl), SafeLog(m), i, c});
  }
  lap(&DomainCheckTimes::figures);
}

SliceDomainFeatures DomainCheck::SliceFeatures(const float* values, int64_t rows, int64_t columns,
                                               DomainCheckTimes* times) const {
  DomainBatch batch(*this);
  batch.Add(values, rows, columns, times);
  return batch.Features(times).front();
}

DomainScore DomainCheck::Score(const Volume& volume, DomainCheckTimes* times) const {
  SeriesDomainScorer scorer(*this, volume.slices);
  for (int64_t k = 0; k < volume.slices; ++k) {
    scorer.Offer(volume.Slice(k), volume.rows, volume.columns, times);
  }
  return scorer.Score(times);
}

std::vector<float> DomainCheck::BorrowInputs() const {
  const std::lock_guard<std::mutex> lock(impl_->spareMutex);
  std::vector<float> inputs;
  inputs.swap(impl_->spareInputs);
  return inputs;
}

void DomainCheck::ReturnInputs(std::vector<float> inputs) const {
  inputs.clear();
  const std::lock_guard<std::mutex> lock(impl_->spareMutex);
  if (inputs.capacity() > impl_->spareInputs.capacity()) impl_->spareInputs.swap(inputs);
}

DomainBatch::DomainBatch(const DomainCheck& check) : check_(check), inputs_(check.BorrowInputs()) {}

DomainBatch::~DomainBatch() { check_.ReturnInputs(std::move(inputs_)); }

void DomainBatch::Add(const float* values, int64_t rows, int64_t columns, DomainCheckTimes* times) {
  DomainCheck::PreparedSlice slice = check_.Prepare(values, rows, columns, inputs_, times);
  if (!pending_.empty() && (slice.paddedRows != pending_.front().paddedRows ||
                            slice.paddedColumns != pending_.front().paddedColumns)) {
    // The slices before it go first, and it moves to the front of the inputs.
    slice.offset -= RunPending(times);
  }
  pending_.push_back(slice);
  if (pending_.size() >= kDomainBatch) RunPending(times);
}

size_t DomainBatch::RunPending(DomainCheckTimes* times) {
  if (pending_.empty()) return 0;
  check_.Run(pending_, inputs_, features_, times);
  const DomainCheck::PreparedSlice& last = pending_.back();
  const size_t used = last.offset + static_cast<size_t>(last.paddedRows * last.paddedColumns);
  inputs_.erase(inputs_.begin(), inputs_.begin() + static_cast<std::ptrdiff_t>(used));
  pending_.clear();
  return used;
}

std::vector<SliceDomainFeatures> DomainBatch::Features(DomainCheckTimes* times) {
  RunPending(times);
  std::vector<SliceDomainFeatures> features = std::move(features_);
  features_.clear();
  return features;
}

SeriesDomainScorer::SeriesDomainScorer(const DomainCheck& check, int64_t count)
    : check_(check), scored_(DomainSlicesScored(count, check.Spec())), batch_(check) {}

bool SeriesDomainScorer::Offer(const float* values, int64_t rows, int64_t columns,
                               DomainCheckTimes* times) {
  const size_t position = next_++;
  if (position >= scored_.size() || !scored_[position]) return false;
  batch_.Add(values, rows, columns, times);
  return true;
}

DomainScore SeriesDomainScorer::Score(DomainCheckTimes* times) {
  return AggregateDomainScore(check_.Spec(), batch_.Features(times));
}

}  // namespace enhance
