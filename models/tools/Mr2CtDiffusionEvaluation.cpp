// SPDX-License-Identifier: GPL-3.0-or-later
#include "Mr2CtDiffusionEvaluation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <vector>

#include "EvaluationOptions.h"
#include "Mr2CtData.h"
#include "MrDenoiseData.h"
#include "Normalise.h"
#include "enhance/inference/TorchModel.h"
#include "enhance/quality/Metrics.h"

namespace enhance::models {
namespace {

// The manifest's seed first, then two others: every figure of a diffusion model is the
// mean over these sampling seeds, with its range.
constexpr int64_t kSeeds[] = {20261202, 1, 2};
constexpr int kSampleCounts[] = {1, 2, 4, 8};
constexpr double kBoneHu = 250.0;

struct Output {
  Volume mean;
  Volume sd;  // empty without an uncertainty map
  double msPerSlice = 0;
};

struct Figures {
  double mae = 0, psnr = 0, ssim = 0, boneDice = 0, ms = 0;
  double spearman = std::numeric_limits<double>::quiet_NaN();
  double medianSd = 0, p99Sd = 0;
};

std::shared_ptr<const Model> Load(const std::filesystem::path& folder, int samples, int64_t seed,
                                  bool augmentation,
                                  const std::string& precision = EvaluationPrecisions().back()) {
  InferenceOptions options;
  options.device = "cpu";
  options.diffusionSamples = samples;
  options.diffusionSeed = seed;
  options.augmentationUncertainty = augmentation;
  options.precision = precision;
  return TorchModel::Load(folder, options);
}

Output RunModel(const Model& model, const Volume& mr) {
  Output out;
  RunContext context;
  if (model.ProducesUncertainty()) context.uncertainty = &out.sd;
  const auto start = std::chrono::steady_clock::now();
  out.mean = model.Run(mr, context);
  const std::chrono::duration<double, std::milli> elapsed =
      std::chrono::steady_clock::now() - start;
  const double slices512 = static_cast<double>(mr.slices * mr.rows * mr.columns) / (512.0 * 512.0);
  out.msPerSlice = elapsed.count() / slices512;
  return out;
}

Figures Measure(const Volume& reference, const Output& out) {
  MetricOptions body;
  body.windowLow = -1024;
  body.windowHigh = 3071;
  body.bodyMask = true;
  Figures f;
  const QualityReport q = CompareVolumes(reference, out.mean, body);
  f.mae = q.overall.mae;
  f.psnr = q.overall.psnr;
  f.ssim = q.overall.ssim;
  f.boneDice = CompareClasses(reference, out.mean, {{"bone", kBoneHu, std::nullopt}}, {})[0].dice;
  f.ms = out.msPerSlice;
  if (out.sd.voxels.empty()) return f;
  const std::vector<uint8_t> mask = BodyMask(reference, -500.0);
  Volume error = out.mean;
  std::vector<float> inside;
  for (size_t i = 0; i < error.voxels.size(); ++i) {
    error.voxels[i] = std::abs(out.mean.voxels[i] - reference.voxels[i]);
    if (mask[i]) inside.push_back(out.sd.voxels[i]);
  }
  f.spearman = SpearmanCorrelation(out.sd, error, mask);
  const double none = std::numeric_limits<double>::quiet_NaN();  // no voxel inside the mask
  f.medianSd = inside.empty() ? none : Percentile(inside, 50.0);
  f.p99Sd = inside.empty() ? none : Percentile(std::move(inside), 99.0);
  return f;
}

std::string Fixed(double value, int decimals) {
  if (std::isnan(value)) return "-";
  char text[32];
  std::snprintf(text, sizeof(text), "%.*f", decimals, value);
  return text;
}

// "mean (min-max)" over the seeds, or the value alone for one.
std::string OverSeeds(const std::vector<Figures>& runs, double Figures::*field, int decimals) {
  double sum = 0, low = std::numeric_limits<double>::infinity(), high = -low;
  for (const Figures& f : runs) {
    sum += f.*field;
    low = std::min(low, f.*field);
    high = std::max(high, f.*field);
  }
  const double mean = sum / static_cast<double>(runs.size());
  if (runs.size() == 1 || std::isnan(mean)) return Fixed(mean, decimals);
  return Fixed(mean, decimals) + " (" + Fixed(low, decimals) + "-" + Fixed(high, decimals) + ")";
}

struct Row {
  std::string label;
  std::vector<Figures> runs;  // one per seed
};

void PrintQuality(const std::vector<Row>& rows) {
  std::cout << "\n| method | MAE body (HU) | PSNR body [-1024,3071] | SSIM body [-1024,3071] | "
               "bone Dice (>250 HU) | ms per 512x512 slice |\n|---|---|---|---|---|---|\n";
  for (const Row& r : rows) {
    std::cout << "| " << r.label << " | " << OverSeeds(r.runs, &Figures::mae, 1) << " | "
              << OverSeeds(r.runs, &Figures::psnr, 2) << " | "
              << OverSeeds(r.runs, &Figures::ssim, 4) << " | "
              << OverSeeds(r.runs, &Figures::boneDice, 3) << " | "
              << OverSeeds(r.runs, &Figures::ms, 0) << " |\n";
  }
}

void PrintUncertainty(const std::vector<Row>& rows) {
  std::cout << "\n| uncertainty map | Spearman(SD, abs. error), body | median SD, body (HU) | "
               "99th percentile SD, body (HU) |\n|---|---|---|---|\n";
  for (const Row& r : rows) {
    if (std::isnan(r.runs.front().spearman)) continue;
    std::cout << "| " << r.label << " | " << OverSeeds(r.runs, &Figures::spearman, 3) << " | "
              << OverSeeds(r.runs, &Figures::medianSd, 1) << " | "
              << OverSeeds(r.runs, &Figures::p99Sd, 1) << " |\n";
  }
  std::cout << "\n" << std::flush;
}

// One row: `name` loaded with `samples` (0: the manifest's) and `precision`, once per seed,
// labelled by `label` from the first one loaded.
template <typename Label>
Row SeedRow(const std::filesystem::path& folder, int samples, const std::string& precision,
            const Mr2CtPair& pair, Label label) {
  Row row;
  for (const int64_t seed : kSeeds) {
    const auto diffusion = Load(folder, samples, seed, false, precision);
    if (row.label.empty()) row.label = label(*diffusion);
    row.runs.push_back(Measure(pair.ct, RunModel(*diffusion, pair.mr)));
  }
  return row;
}

// With several precisions (--precision float,bf16): the diffusion model alone, with the
// manifest's number of samples, in each precision, over the same seeds.
std::vector<Row> ComparePrecisions(const std::filesystem::path& models, const std::string& name,
                                   const Mr2CtPair& pair) {
  std::vector<Row> rows;
  for (const std::string& precision : EvaluationPrecisions()) {
    rows.push_back(SeedRow(models / name, 0, precision, pair, [&](const Model& diffusion) {
      const std::string parameters = diffusion.Parameters();
      return name + " " + diffusion.Info().version + ", " + precision + " (" +
             parameters.substr(0, parameters.find(", tiles")) + ")";
    }));
  }
  return rows;
}

std::vector<Row> EvaluatePair(const std::filesystem::path& models, const std::string& name,
                              const Mr2CtPair& pair) {
  if (ComparingPrecisions()) return ComparePrecisions(models, name, pair);
  std::vector<Row> rows;
  const auto regression = Load(models / "mr2ct", 0, -1, false);
  rows.push_back({"mr2ct " + regression->Info().version + " (regression)",
                  {Measure(pair.ct, RunModel(*regression, pair.mr))}});
  const auto augmented = Load(models / "mr2ct", 0, -1, true);
  rows.push_back({"mr2ct, mean of 8 flips and rotations (test-time augmentation)",
                  {Measure(pair.ct, RunModel(*augmented, pair.mr))}});
  for (const int k : kSampleCounts) {
    rows.push_back(
        SeedRow(models / name, k, EvaluationPrecisions().back(), pair, [&](const Model& diffusion) {
          return name + " " + diffusion.Info().version + ", mean of K = " + std::to_string(k) +
                 (k == 1 ? " sample" : " samples");
        }));
  }
  return rows;
}

}  // namespace

int EvaluateMr2CtDiffusion(const std::filesystem::path& models, const std::string& name) {
  std::cout << "figures of " << name << " are the mean (and range) over the sampling seeds";
  for (const int64_t seed : kSeeds) std::cout << " " << seed;
  std::cout << "\n";
  for (const Mr2CtPair& p : Mr2CtTestSet(kMricronTemplates)) {
    const std::vector<Row> rows = EvaluatePair(models, name, p);
    std::cout << "\n"
              << name << ": ch2 " << p.label << ", " << p.mr.slices << " slices of " << p.mr.rows
              << "x" << p.mr.columns
              << ", against the segmentation-based pseudo-CT; inside the body (pseudo-CT above "
                 "-500 HU); bone Dice over the whole slice\n";
    PrintQuality(rows);
    PrintUncertainty(rows);
  }
  return 0;
}

}  // namespace enhance::models
