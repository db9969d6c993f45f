// SPDX-License-Identifier: GPL-3.0-or-later
#include "MrDenoiseData.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "Nifti.h"
#include "SuperResData.h"

namespace enhance::models {
namespace {

// ch2better.nii.gz: 316 axial slices of 0.5 mm; this block (with 10 slices of margin
// on each side left out of training) is held out for testing.
constexpr int64_t kHeldOutFirst = 180;
constexpr int64_t kHeldOutCount = 24;
constexpr int64_t kMargin = 10;
constexpr int64_t kSlabSlices = 12;

double Quantile(std::vector<float> values, double percent) {
  if (values.empty()) return 0.0;
  const double position = percent / 100.0 * static_cast<double>(values.size() - 1);
  const auto index = static_cast<size_t>(position);
  std::nth_element(values.begin(), values.begin() + static_cast<long>(index), values.end());
  const double lower = values[index];
  if (index + 1 >= values.size()) return lower;
  const double upper =
      *std::min_element(values.begin() + static_cast<long>(index) + 1, values.end());
  return lower + (upper - lower) * (position - static_cast<double>(index));
}

}  // namespace

Volume LoadMrReference(const std::filesystem::path& path) {
  Volume v = ReadNifti(path);
  const float maximum = *std::max_element(v.voxels.begin(), v.voxels.end());
  if (!(maximum > 0)) throw std::runtime_error(path.string() + ": the volume is empty");
  for (float& x : v.voxels) x = std::max(0.0f, x / maximum);
  v.units = "";
  return v;
}

Volume SliceRange(const Volume& volume, int64_t first, int64_t count) {
  if (first < 0 || count < 1 || first + count > volume.slices) {
    throw std::out_of_range("SliceRange: slices outside the volume");
  }
  Volume out = volume;
  out.slices = count;
  out.voxels.assign(volume.Slice(first), volume.Slice(first + count));
  out.geometry.slicePositions.assign(volume.geometry.slicePositions.begin() + first,
                                     volume.geometry.slicePositions.begin() + first + count);
  return out;
}

Volume AddRicianNoise(const Volume& clean, double sigma, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, static_cast<float>(sigma));
  Volume noisy = clean;
  for (float& x : noisy.voxels) {
    const float real = x + noise(rng);
    const float imaginary = noise(rng);
    x = std::sqrt(real * real + imaginary * imaginary);
  }
  return noisy;
}

std::pair<double, double> PercentileWindow(const Volume& v, double highPercent) {
  // Same sampling and head mask as the inference engine: at most ~1M voxels, those
  // above 2% of the 99.5th percentile.
  const size_t total = v.voxels.size();
  const size_t stride = std::max<size_t>(1, total / 1000000);
  std::vector<float> sample;
  for (size_t i = 0; i < total; i += stride) sample.push_back(v.voxels[i]);
  const auto threshold = static_cast<float>(0.02 * Quantile(sample, 99.5));
  std::vector<float> body;
  for (float x : sample) {
    if (x > threshold) body.push_back(x);
  }
  if (body.size() < 16) body = sample;
  const double low = Quantile(body, 0.0);
  return {low, std::max(Quantile(body, highPercent), low + 1e-6)};
}

std::vector<MrPair> MrDenoiseTrainingSet(const std::filesystem::path& templates) {
  const Volume source = LoadMrReference(templates / "ch2better.nii.gz");
  std::vector<MrPair> pairs;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> level(0.01, 0.15);
  uint64_t seed = 100;
  // Slabs from the bottom of the brain to the top, skipping the held-out block and its
  // margins; empty slabs above and below the head are skipped.
  for (int64_t first = 40; first + kSlabSlices <= source.slices - 20; first += kSlabSlices) {
    const int64_t last = first + kSlabSlices;
    if (last > kHeldOutFirst - kMargin && first < kHeldOutFirst + kHeldOutCount + kMargin) continue;
    MrPair p;
    p.sigma = level(rng);
    p.clean = SliceRange(source, first, kSlabSlices);
    p.noisy = AddRicianNoise(p.clean, p.sigma, seed++);
    p.label = "ch2better slices " + std::to_string(first) + "-" + std::to_string(last - 1);
    pairs.push_back(std::move(p));
  }
  return pairs;
}

std::vector<MrPair> MrDenoiseTestSet(const std::filesystem::path& templates) {
  const Volume heldOut =
      SliceRange(LoadMrReference(templates / "ch2better.nii.gz"), kHeldOutFirst, kHeldOutCount);
  // A different brain: the INIA19 rhesus macaque T1 template (skull-stripped, 0.5 mm).
  const Volume other = LoadMrReference(templates / "inia19-t1-brain.nii.gz");
  const Volume otherSlab = SliceRange(other, other.slices / 2 - 12, 24);
  std::vector<MrPair> pairs;
  uint64_t seed = 900000;
  for (double sigma : {0.03, 0.07, 0.12}) {
    for (const auto& [label, clean] :
         {std::pair<std::string, const Volume*>{"ch2better held-out slices", &heldOut},
          std::pair<std::string, const Volume*>{"inia19 macaque T1 (unseen volume)", &otherSlab}}) {
      MrPair p;
      p.sigma = sigma;
      p.label = label;
      p.clean = *clean;
      p.noisy = AddRicianNoise(p.clean, sigma, seed++);
      pairs.push_back(std::move(p));
    }
  }
  return pairs;
}

Volume Downsample2(const Volume& high) {
  Volume low;
  low.rows = high.rows / 2;
  low.columns = high.columns / 2;
  low.slices = high.slices;
  low.units = high.units;
  low.voxels.resize(static_cast<size_t>(low.slices * low.rows * low.columns));
  for (int64_t s = 0; s < low.slices; ++s) {
    BlockMeans(high.Slice(s), high.rows, high.columns, 2, low.Slice(s));
  }
  Geometry& g = low.geometry;
  g = high.geometry;
  g.rowSpacing = 2 * high.geometry.rowSpacing;
  g.columnSpacing = 2 * high.geometry.columnSpacing;
  // The centre of a large pixel is the mean of the centres of its four small ones.
  const Vec3 shift = (0.5 * high.geometry.columnSpacing) * g.rowDirection +
                     (0.5 * high.geometry.rowSpacing) * g.columnDirection;
  for (Vec3& p : g.slicePositions) p = p + shift;
  return low;
}

namespace {

Volume CropEven(const Volume& v) {
  Volume out = v;
  out.rows = v.rows / 2 * 2;
  out.columns = v.columns / 2 * 2;
  out.voxels.clear();
  for (int64_t s = 0; s < v.slices; ++s) {
    for (int64_t r = 0; r < out.rows; ++r) {
      const float* row = v.Slice(s) + r * v.columns;
      out.voxels.insert(out.voxels.end(), row, row + out.columns);
    }
  }
  return out;
}

std::vector<MrPair> ToResolutionPairs(const std::vector<MrPair>& pairs) {
  std::vector<MrPair> out;
  for (const MrPair& p : pairs) {
    MrPair q;
    q.label = p.label;
    q.clean = CropEven(p.clean);
    q.noisy = Downsample2(q.clean);
    out.push_back(std::move(q));
  }
  return out;
}

}  // namespace

Volume Reslice(const Volume& v, int axis) {
  if (axis == 0) return v;
  Volume out;
  out.units = v.units;
  // axis 1: slices along rows (coronal for an axial source), axis 2: along columns.
  out.slices = axis == 1 ? v.rows : v.columns;
  out.rows = v.slices;
  out.columns = axis == 1 ? v.columns : v.rows;
  out.voxels.resize(v.voxels.size());
  for (int64_t s = 0; s < out.slices; ++s) {
    for (int64_t r = 0; r < out.rows; ++r) {
      for (int64_t c = 0; c < out.columns; ++c) {
        // Superior at the top of the resliced image.
        const int64_t k = v.slices - 1 - r;
        out.At(s, r, c) = axis == 1 ? v.At(k, s, c) : v.At(k, c, s);
      }
    }
  }
  Geometry& g = out.geometry;
  g = v.geometry;
  g.rowSpacing = v.geometry.sliceSpacing;
  g.columnSpacing = axis == 1 ? v.geometry.columnSpacing : v.geometry.rowSpacing;
  g.sliceSpacing = axis == 1 ? v.geometry.rowSpacing : v.geometry.columnSpacing;
  g.sliceThickness = g.sliceSpacing;
  g.slicePositions.clear();
  for (int64_t s = 0; s < out.slices; ++s) {
    g.slicePositions.push_back({0.0, 0.0, static_cast<double>(s) * g.sliceSpacing});
  }
  return out;
}

void AugmentMrSuperRes(Volume& clean, std::mt19937_64& rng) {
  // So that the network cannot rely on one volume's contrast or on how smooth its images are.
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const double gamma = std::exp(std::log(1.4) * u(rng));
  for (float& x : clean.voxels) x = std::pow(x, static_cast<float>(gamma));
  const double blur = 0.6 + 0.6 * u(rng);
  if (blur >= 0.3) clean = BlurSlices(clean, blur);
}

namespace {

// Slabs of `count` slices every `step` slices over [first, last), augmented.
void AddSlabs(std::vector<MrPair>& pairs, const Volume& volume, const std::string& name,
              int64_t first, int64_t last, int64_t count, int64_t step, std::mt19937_64& rng) {
  for (int64_t s = first; s + count <= last; s += step) {
    MrPair p;
    p.label = name + " " + std::to_string(s) + "-" + std::to_string(s + count - 1);
    p.clean = SliceRange(volume, s, count);
    AugmentMrSuperRes(p.clean, rng);
    pairs.push_back(std::move(p));
  }
}

}  // namespace

std::vector<MrPair> MrSuperResTrainingSet(const std::filesystem::path& templates) {
  // Two human heads: ch2better outside its held-out block, and jhu189 (another subject,
  // 1 mm) in its three orientations; each slab with random contrast and sharpness.
  std::vector<MrPair> pairs;
  std::mt19937_64 rng(17);
  for (const MrPair& p : MrDenoiseTrainingSet(templates)) {
    MrPair q;
    q.label = p.label;
    q.clean = p.clean;
    AugmentMrSuperRes(q.clean, rng);
    pairs.push_back(std::move(q));
  }
  const Volume jhu = LoadMrReference(templates / "jhu189.nii.gz");
  AddSlabs(pairs, jhu, "jhu189 axial", 10, jhu.slices - 10, 8, 10, rng);
  const Volume coronal = Reslice(jhu, 1);
  AddSlabs(pairs, coronal, "jhu189 coronal", 15, coronal.slices - 15, 8, 12, rng);
  const Volume sagittal = Reslice(jhu, 2);
  AddSlabs(pairs, sagittal, "jhu189 sagittal", 20, sagittal.slices - 20, 8, 12, rng);
  return ToResolutionPairs(pairs);
}

std::vector<MrPair> MrSuperResTestSet(const std::filesystem::path& templates) {
  // The denoising test set repeats each volume at three noise levels; one of each is enough.
  const std::vector<MrPair> denoise = MrDenoiseTestSet(templates);
  MrPair coronal;
  const Volume inia = Reslice(LoadMrReference(templates / "inia19-t1-brain.nii.gz"), 1);
  coronal.label = "inia19 macaque T1, coronal (unseen volume)";
  coronal.clean = SliceRange(inia, inia.slices / 2 - 12, 24);
  return ToResolutionPairs({denoise[0], denoise[1], coronal});
}

}  // namespace enhance::models
