// SPDX-License-Identifier: GPL-3.0-or-later
#include "CtDenoiseData.h"

#include <chrono>

namespace enhance::models {
namespace {

void Append(Volume& all, const at::Tensor& slices, const Volume& like) {
  const auto count = slices.size(0);
  if (all.slices == 0) {
    all.rows = like.rows;
    all.columns = like.columns;
    all.units = "HU";
    all.geometry = like.geometry;
    all.geometry.slicePositions.clear();
  }
  const at::Tensor contiguous = slices.contiguous();
  all.voxels.insert(all.voxels.end(), contiguous.data_ptr<float>(),
                    contiguous.data_ptr<float>() + contiguous.numel());
  for (int64_t s = 0; s < count; ++s) {
    // Consecutive positions: the set is a stack of unrelated slices, processed one by one.
    all.geometry.slicePositions.push_back(
        {0.0, 0.0, static_cast<double>(all.slices + s) * all.geometry.sliceSpacing});
  }
  all.slices += count;
}

}  // namespace

CtPairs SimulateCtPairs(uint64_t firstSeed, int phantoms, const TrainingPhantomOptions& options,
                        const CtDoseOptions& dose, std::ostream& log, bool withNoiseFree) {
  CtPairs pairs;
  const auto start = std::chrono::steady_clock::now();
  for (int k = 0; k < phantoms; ++k) {
    const uint64_t seed = firstSeed + static_cast<uint64_t>(k);
    const Volume phantom = MakeTrainingCtPhantom(seed, options);
    const double spacing = phantom.geometry.rowSpacing;
    const at::Tensor hu =
        at::from_blob(const_cast<float*>(phantom.voxels.data()),
                      {phantom.slices, phantom.rows, phantom.columns}, at::kFloat);
    const at::Tensor sinogram = Project(hu, spacing, dose.scanner);
    const double full = dose.fullDosePhotons;
    const double low = dose.fullDosePhotons * dose.doseFraction;
    Append(pairs.fullDose,
           Reconstruct(AddDoseNoise(sinogram, full, dose.scanner, 2 * seed), spacing, dose.scanner),
           phantom);
    Append(
        pairs.lowDose,
        Reconstruct(AddDoseNoise(sinogram, low, dose.scanner, 2 * seed + 1), spacing, dose.scanner),
        phantom);
    if (withNoiseFree) {
      Append(pairs.noiseFree, Reconstruct(sinogram, spacing, dose.scanner), phantom);
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    log << "  phantom seed " << seed << ": " << phantom.slices << " slices of " << phantom.rows
        << "x" << phantom.columns << ", " << spacing << " mm pixels (" << elapsed.count()
        << " s so far)\n"
        << std::flush;
  }
  return pairs;
}

CtPairs CtDenoiseTrainingSet(std::ostream& log) {
  TrainingPhantomOptions options;
  options.slices = 4;
  return SimulateCtPairs(1000, 12, options, {}, log);
}

CtPairs CtDenoiseTestSet(std::ostream& log) {
  TrainingPhantomOptions options;
  options.slices = 4;
  return SimulateCtPairs(900000, 3, options, {}, log, /*withNoiseFree=*/true);
}

CtPairs CtDenoiseTuningSet(std::ostream& log) {
  TrainingPhantomOptions options;
  options.slices = 4;
  return SimulateCtPairs(1000, 2, options, {}, log);
}

CtPairs CtDenoiseValidationSet(std::ostream& log) {
  TrainingPhantomOptions options;
  options.slices = 4;
  return SimulateCtPairs(800000, 2, options, {}, log, /*withNoiseFree=*/true);
}

}  // namespace enhance::models
