// SPDX-License-Identifier: GPL-3.0-or-later
//
// enhance-simulate-ct [FIRST_SEED] [PHANTOMS] [FULL_DOSE_PHOTONS]
// Simulates full-dose / low-dose pairs of randomised phantoms as the ct-denoise training
// does, and prints what they carry: the error of the noise-free reconstruction against
// the phantom itself (the simulator's own accuracy) and the noise at each dose (RMSE
// against the noise-free reconstruction, inside the body) beside the noise level the
// bilateral filter estimates from the image. Defaults: 5 1 1e6.
//
// enhance-simulate-ct --dicom DIR [--slices N] [--seed N]
// Writes DIR/CT0001.dcm ...: the low-dose acquisition (a quarter of the full dose, as
// ct-denoise is trained on) of one randomised phantom, as an original CT series: sample
// data with a scanner's noise texture, for the demo. Defaults: 32 slices, seed 5.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CtDenoiseData.h"
#include "enhance/dicom/SyntheticSeries.h"
#include "enhance/inference/BilateralDenoiser.h"
#include "enhance/quality/Metrics.h"

namespace {

int WriteAcquisition(int argc, char** argv) {
  using namespace enhance;
  using namespace enhance::models;
  std::filesystem::path out;
  TrainingPhantomOptions options;
  options.slices = 32;
  uint64_t seed = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--dicom") {
      out = argv[i + 1];
    } else if (arg == "--slices") {
      options.slices = std::stoll(argv[i + 1]);
    } else if (arg == "--seed") {
      seed = std::stoull(argv[i + 1]);
    } else {
      std::cerr << "enhance-simulate-ct: unknown option " << arg << "\n";
      return 2;
    }
  }
  const Volume phantom = MakeTrainingCtPhantom(seed, options);
  const at::Tensor hu = at::from_blob(const_cast<float*>(phantom.voxels.data()),
                                      {phantom.slices, phantom.rows, phantom.columns}, at::kFloat);
  const CtDoseOptions dose;
  const double spacing = phantom.geometry.rowSpacing;
  const at::Tensor slices = Reconstruct(AddDoseNoise(Project(hu, spacing, dose.scanner),
                                                     dose.fullDosePhotons * dose.doseFraction,
                                                     dose.scanner, 2 * seed + 1),
                                        spacing, dose.scanner)
                                .contiguous();
  Volume acquired = phantom;
  std::copy(slices.data_ptr<float>(), slices.data_ptr<float>() + slices.numel(),
            acquired.voxels.begin());
  SyntheticSeriesOptions series;
  series.seriesDescription = "Phantom low-dose chest-abdomen (simulated scanner)";
  const auto files = WriteSyntheticCtSeries(acquired, series);
  std::filesystem::create_directories(out);
  for (size_t k = 0; k < files.size(); ++k) {
    char name[32];
    std::snprintf(name, sizeof(name), "CT%04zu.dcm", k + 1);
    std::ofstream(out / name, std::ios::binary)
        .write(files[k].data(), static_cast<std::streamsize>(files[k].size()));
  }
  std::cout << "wrote " << files.size() << " slices of " << phantom.rows << "x" << phantom.columns
            << " to " << out.string() << "\n";
  return 0;
}

double Median(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + static_cast<long>(values.size() / 2),
                   values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace enhance;
  using namespace enhance::models;
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  if (argc > 1 && std::string(argv[1]) == "--dicom") return WriteAcquisition(argc, argv);
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
    // What the bilateral filter measures (median over slices), and what Immerkaer's
    // white-noise estimate would: the filter's range follows the first.
    std::vector<double> estimated, white;
    for (int64_t s = 0; s < volume->slices; ++s) {
      estimated.push_back(EstimateNoiseSigma(volume->Slice(s), volume->rows, volume->columns));
      white.push_back(
          EstimateNoiseSigmaAtSpacing(volume->Slice(s), volume->rows, volume->columns, 1));
    }
    std::cout << label << ": noise " << noise.overall.rmse
              << " HU RMS inside the body; estimated from the image " << Median(estimated)
              << " HU (white-noise estimate " << Median(white) << " HU)\n";
  }
}
