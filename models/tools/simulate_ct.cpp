// SPDX-License-Identifier: GPL-3.0-or-later
//
// enhance-simulate-ct [FIRST_SEED] [PHANTOMS] [FULL_DOSE_PHOTONS]
// Simulates full-dose / low-dose pairs of randomised phantoms as the ct-denoise training
// does, and prints what they carry: the error of the noise-free reconstruction against
// the phantom itself (the simulator's own accuracy) and the noise at each dose (RMSE
// against the noise-free reconstruction, inside the body). Defaults: 5 1 1e6.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "CtDenoiseData.h"
#include "enhance/quality/Metrics.h"

int main(int argc, char** argv) {
  using namespace enhance;
  using namespace enhance::models;
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const uint64_t seed = argc > 1 ? std::stoull(argv[1]) : 5;
  const int phantoms = argc > 2 ? std::stoi(argv[2]) : 1;
  CtDoseOptions dose;
  dose.fullDosePhotons = argc > 3 ? std::stod(argv[3]) : 1e6;
  const TrainingPhantomOptions options;
  const auto start = std::chrono::steady_clock::now();
  const CtPairs pairs = SimulateCtPairs(seed, phantoms, options, dose, std::cout, true);
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  std::cout << "simulated " << pairs.fullDose.slices << " slices in " << elapsed.count() << " s\n";

  Volume truth = pairs.noiseFree;
  truth.voxels.clear();
  for (int k = 0; k < phantoms; ++k) {
    const Volume phantom = MakeTrainingCtPhantom(seed + static_cast<uint64_t>(k), options);
    truth.voxels.insert(truth.voxels.end(), phantom.voxels.begin(), phantom.voxels.end());
  }
  MetricOptions body;
  body.bodyMask = true;
  const QualityReport fbp = CompareVolumes(truth, pairs.noiseFree, body);
  std::cout << "noise-free reconstruction vs phantom: MAE " << fbp.overall.mae << " HU, RMSE "
            << fbp.overall.rmse << " HU inside the body (edges blurred by interpolation)\n";
  for (const auto& [label, volume] :
       {std::pair<const char*, const Volume*>{"full dose", &pairs.fullDose},
        std::pair<const char*, const Volume*>{"low dose", &pairs.lowDose}}) {
    const QualityReport noise = CompareVolumes(pairs.noiseFree, *volume, body);
    std::cout << label << ": noise " << noise.overall.rmse << " HU RMS inside the body\n";
  }
}
