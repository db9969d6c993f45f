// SPDX-License-Identifier: GPL-3.0-or-later
//
// The domain check of a model (docs/models.md, "Domain checks"): a small variational
// autoencoder trained on the model's training distribution tells, before the model runs,
// whether a series looks like what the model was trained on.
//
// Each slice (the means of its blocks first, where DomainCheckSpec::downsample says) is
// normalised on its own (DomainCheckSpec::input), padded with 0 at the bottom
// and right to a multiple of sizeMultiple, and passed through the autoencoder, whose
// forward(x) returns (reconstruction, mu, logvar) with the reconstruction made from the
// latent mean. Three figures per slice:
//   r = mean over the slice's pixels of (x - reconstruction)^2
//   k = mean over the latent elements of 0.5 (mu^2 + exp(logvar) - 1 - logvar)
//   m = median over the slice's pixels of |x - reconstruction|
//   i = mean over the slice's pixels of x
//   c = (sum of d d' over the pairs of horizontally or vertically adjacent pixels) /
//       (2 sum of d^2 over the pixels), with d = x - reconstruction (0 when every d is 0)
// (with a crop in the manifest, a large slice's pixels are those of its central crop)
// r follows the structures the autoencoder cannot reproduce (edges dominate it); m, robust
// to them, follows the noise, which the autoencoder does not reproduce either; i, where the
// normalised intensities lie, follows a change of contrast that an autoencoder reproduces
// well (a gamma change); c, the residual's correlation with its neighbours, tells what the
// residual is made of: white noise gives 0, structure the autoencoder smooths away (edges,
// a sharper or smoother kernel's halo, a ghost) gives a residual whose neighbours agree. A
// sharper kernel raises r and m as more noise would, and only c tells them apart. The
// series' features are the medians over its slices of log r, log k, log m, i and c, and its
// score is their typicality: the distance, in standard deviations of the training series,
// from the training series' mean,
//   score = sqrt(((R - R_mean) / R_sd)^2 + ((K - K_mean) / K_sd)^2 + ((M - M_mean) / M_sd)^2
//                + ((I - I_mean) / I_sd)^2 + ((C - C_mean) / C_sd)^2)
// (the M, I and C terms when the manifest's reference has them: checks calibrated without
// them score with the others alone). When the reference lists its series' features, the
// score is instead the same distance to the nearest of them (with R_mean, K_mean, M_mean,
// I_mean and C_mean those of that series): a nearest-neighbour typicality for an
// in-distribution set of
// several clusters (several heads, noise levels, slab positions), which one mean and one
// spread fit badly.
// Two-sided on purpose: a series that reconstructs better than the training data (a
// smoother reconstruction kernel, less noise) is as foreign as one that reconstructs
// worse, and a likelihood alone is known to rank some foreign data as more likely than
// the training data. A series is outside the domain when its score exceeds the threshold
// the trainer set from held-out in-distribution series.
// A series scored on fewer slices than the check's minimum (a series that short is scored on
// all of its slices) is judged otherwise where the manifest says how (DomainCheckSpec::
// shortSeriesSlices): a few slices of one body region are not like the median of a longer
// series, so each slice is scored by the same distance to the nearest single slice of the
// reference series, the series by the median of its slices' distances, against the
// threshold set for that many slices.
//
// The slices of one series go through the autoencoder together (DomainBatch): up to
// kDomainBatch of one size in one forward pass, so that the per-layer cost of a small
// slice's many small layers is paid once for them; each slice's figures are those it has
// alone, to float rounding.
//
// Thread-safe: SliceFeatures() and Score() may be called from several threads, and
// DomainBatches of several series at once; batches run one at a time, in memory the check
// keeps between them (the network's outputs and the largest batch's buffers: a few MB),
// so that scoring maps no fresh pages.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "enhance/base/Volume.h"
#include "enhance/inference/ModelSpec.h"

namespace enhance {

struct SliceDomainFeatures {
  double logReconstruction = 0;    // log r
  double logKl = 0;                // log k
  double logResidual = 0;          // log m
  double meanIntensity = 0;        // i
  double residualCorrelation = 0;  // c
};

struct DomainScore {
  double score = 0;
  double threshold = 0;
  bool outside = false;            // score > threshold
  int64_t slices = 0;              // slices scored
  double logReconstruction = 0;    // the series' median log r
  double logKl = 0;                // the series' median log k
  double logResidual = 0;          // the series' median log m
  double meanIntensity = 0;        // the series' median i
  double residualCorrelation = 0;  // the series' median c
  std::string trainedOn;           // what the check was trained on, from the manifest
};

// Where the time of one slice's features goes, in seconds (enhance-domain evaluate prints it).
struct DomainCheckTimes {
  double prepare = 0;  // the block means, the normalisation (its percentiles) and the padding
  double network = 0;  // the autoencoder's forward
  double figures = 0;  // the residual's sums and median, and the KL term
};

// A feature a check scores: its symbol above ("log r"), its name in the REST API
// ("LogReconstruction"), its key in the manifest's reference ("log_reconstruction"), the
// series' median of it in a DomainScore, a slice's value of it, and the reference's mean and
// spread of it.
struct ScoredFeature {
  const char* symbol;
  const char* name;
  const char* key;
  double DomainScore::*median;
  double SliceDomainFeatures::*slice;
  double mean;
  double sd;
};

// The features a check with this spec scores, in the order of its reference series' points:
// log r and log k, then log m, i and c where the reference has them.
std::vector<ScoredFeature> ScoredFeatures(const DomainCheckSpec& spec);

// Which of a series' `count` slices (in the order they are read) are scored, so that the
// check's cost stays a small share of the model's: n = ceil(count / sliceStep), raised to
// minSlices and lowered to maxSlices; all of them when n >= count, else n evenly spaced ones
// (the k-th at floor((k + 1/2) count / n)).
std::vector<bool> DomainSlicesScored(int64_t count, const DomainCheckSpec& spec);

// The series' score from its slices' features (see above). Throws Error(kBadInput) when
// `slices` is empty.
DomainScore AggregateDomainScore(const DomainCheckSpec& spec,
                                 const std::vector<SliceDomainFeatures>& slices);

// "domain score 7.31 above the threshold 3.20" (or "within"), for messages.
std::string DescribeDomainScore(const DomainScore& score);

// How a domain check's autoencoder runs on the CPU (on CUDA it runs as saved).
enum class DomainCheckCpu {
  kFastest,   // frozen with the node's fused convolutions (each convolution and the SiLU
              // it feeds in one oneDNN call, channels-last); without oneDNN in the build,
              // or for a graph that cannot be fused, as kLibTorch
  kLibTorch,  // frozen and optimised by LibTorch (torch::jit::optimize_for_inference)
  kAsSaved,   // the graph as saved
};

// The most slices of one size that go through the autoencoder in one forward pass.
constexpr size_t kDomainBatch = 8;

class DomainBatch;

class DomainCheck {
 public:
  // Loads the autoencoder onto `device` ("cpu", "cuda:0") and checks its contract on a
  // small input. Throws Error naming `where` (the model's folder) and what is wrong. The
  // figures are the same, to float rounding, however it runs on the CPU
  // (tests/unit/ShippedModelsTest.cpp); `enhance-domain evaluate` times the three ways. A
  // graph that cannot be frozen runs as saved.
  static std::unique_ptr<const DomainCheck> Load(const DomainCheckSpec& spec,
                                                 const std::string& device,
                                                 const std::string& where,
                                                 DomainCheckCpu cpu = DomainCheckCpu::kFastest);
  ~DomainCheck();
  DomainCheck(const DomainCheck&) = delete;
  DomainCheck& operator=(const DomainCheck&) = delete;

  const DomainCheckSpec& Spec() const;
  // How the network runs: "fused convolutions", "optimised by LibTorch" or "as saved".
  const std::string& Describe() const;

  // One slice, rows x columns values in physical units (its body as DomainCheckSpec::units
  // says, whatever the volume's units); with `times`, adds each part's seconds to it.
  SliceDomainFeatures SliceFeatures(const float* values, int64_t rows, int64_t columns,
                                    DomainCheckTimes* times = nullptr) const;
  // The slices of the volume that DomainSlicesScored selects, in batches, aggregated; with
  // `times`, adds each part's seconds over those slices to it.
  DomainScore Score(const Volume& volume, DomainCheckTimes* times = nullptr) const;

 private:
  friend class DomainBatch;
  struct Impl;
  // A slice as the autoencoder reads it: its normalised crop, padded with 0 at the bottom
  // and right, at `offset` in a batch's inputs.
  struct PreparedSlice {
    int64_t rows = 0, columns = 0;              // the crop
    int64_t paddedRows = 0, paddedColumns = 0;  // what the network reads
    size_t offset = 0;
  };
  explicit DomainCheck(std::unique_ptr<Impl> impl);
  // A slice's block means, normalisation, crop and padding, appended to `inputs`.
  PreparedSlice Prepare(const float* values, int64_t rows, int64_t columns,
                        std::vector<float>& inputs, DomainCheckTimes* times) const;
  // The features of prepared slices of one size, one after the other in `inputs` from the
  // first's offset, appended to `out` in their order: one forward pass.
  void Run(const std::vector<PreparedSlice>& slices, const std::vector<float>& inputs,
           std::vector<SliceDomainFeatures>& out, DomainCheckTimes* times) const;
  // The memory of a DomainBatch's inputs, kept between batches (empty when none is kept).
  std::vector<float> BorrowInputs() const;
  void ReturnInputs(std::vector<float> inputs) const;
  std::unique_ptr<Impl> impl_;
};

// The scored slices of one series, prepared as they are added (a node adds each as it is
// decoded, while it holds its pixels) and run through the autoencoder kDomainBatch of one
// size at a time: when that many wait, when a slice of another size comes, and at
// Features(). So a batch holds at most kDomainBatch prepared slices.
// Not thread-safe: one per series, used by one thread; the check must outlive it.
class DomainBatch {
 public:
  explicit DomainBatch(const DomainCheck& check);
  ~DomainBatch();
  DomainBatch(const DomainBatch&) = delete;
  DomainBatch& operator=(const DomainBatch&) = delete;

  // Prepares a slice (rows x columns values in physical units, as SliceFeatures takes it),
  // and runs the waiting slices as said above; with `times`, adds the seconds to it.
  // Throws as SliceFeatures does.
  void Add(const float* values, int64_t rows, int64_t columns, DomainCheckTimes* times = nullptr);
  // How many slices were added since the last Features().
  size_t Size() const { return features_.size() + pending_.size(); }
  // The features of the slices added, in their order, and an empty batch. Throws as
  // SliceFeatures does.
  std::vector<SliceDomainFeatures> Features(DomainCheckTimes* times = nullptr);

 private:
  // Runs the waiting slices and drops their inputs (keeping their memory); a slice
  // prepared after them moves to the front. Returns how many values were dropped.
  size_t RunPending(DomainCheckTimes* times);

  const DomainCheck& check_;
  std::vector<DomainCheck::PreparedSlice> pending_;  // prepared, not yet run
  std::vector<float> inputs_;                        // theirs, one after the other
  std::vector<SliceDomainFeatures> features_;        // of the slices already run
};

// The domain check of one series of `count` slices, fed every slice in the order the series
// is read: it prepares those DomainSlicesScored selects as they come (a DomainBatch) and
// scores the series from them. What the node and GET /enhance/series/{id}/domain share, so
// that both score the same slices of a series.
// Not thread-safe: one per series, used by one thread; the check must outlive it.
class SeriesDomainScorer {
 public:
  SeriesDomainScorer(const DomainCheck& check, int64_t count);

  // The series' next slice (rows x columns values in physical units, as
  // DomainCheck::SliceFeatures takes them): prepared for the check when its position is one
  // scored, else passed over; slices after the count-th are passed over. With `times`, adds
  // the seconds to it. Returns whether the slice is scored. Throws as SliceFeatures does.
  bool Offer(const float* values, int64_t rows, int64_t columns, DomainCheckTimes* times = nullptr);
  // The series' score from the slices scored (AggregateDomainScore). Throws as
  // SliceFeatures does, and Error(kBadInput) when no slice was scored.
  DomainScore Score(DomainCheckTimes* times = nullptr);

 private:
  const DomainCheck& check_;
  std::vector<bool> scored_;  // by position
  size_t next_ = 0;           // the next slice's position
  DomainBatch batch_;
};

}  // namespace enhance
