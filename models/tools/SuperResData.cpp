// SPDX-License-Identifier: GPL-3.0-or-later
#include "SuperResData.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "MrDenoiseData.h"
#include "TrainingPhantom.h"
#include "enhance/samples/Phantom.h"

namespace enhance::models {
namespace {

constexpr double kPsfSigmaPx = 0.7;
constexpr int64_t kThinPerThick = 4;

void Append(Volume& all, const Volume& part) {
  if (all.slices == 0) {
    all = part;
    return;
  }
  all.voxels.insert(all.voxels.end(), part.voxels.begin(), part.voxels.end());
  for (int64_t s = 0; s < part.slices; ++s) {
    // Consecutive positions: the set is a stack of unrelated slices, processed one by one.
    Vec3 p = all.geometry.slicePositions.back();
    p[2] += all.geometry.sliceSpacing;
    all.geometry.slicePositions.push_back(p);
  }
  all.slices += part.slices;
}

// Spheroids spanning several thin slices: solid nodules in the lungs, and lesions of
// -150 to +150 HU relative to the surrounding soft tissue.
void AddLesions3d(Volume& v, double pixelMm, double sliceMm, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const int count = 4 + static_cast<int>(u(rng) * 9);
  const auto rows = static_cast<double>(v.rows);
  const auto columns = static_cast<double>(v.columns);
  const auto slices = static_cast<double>(v.slices);
  for (int k = 0, tries = 0; k < count && tries < 400; ++tries) {
    const double cy = rows * (0.15 + 0.7 * u(rng));
    const double cx = columns * (0.15 + 0.7 * u(rng));
    const double cz = slices * u(rng);
    const float here =
        v.At(static_cast<int64_t>(cz), static_cast<int64_t>(cy), static_cast<int64_t>(cx));
    const bool lung = here > -950.0f && here < -500.0f;
    const bool soft = here > -50.0f && here < 200.0f;
    if (!lung && !soft) continue;
    ++k;
    const double radiusMm = 1.5 + 6.5 * u(rng);
    const double ry = radiusMm / pixelMm;
    const double rx = ry * (0.7 + 0.6 * u(rng));
    const double rz = radiusMm * (0.6 + 0.8 * u(rng)) / sliceMm;
    const auto contrast = static_cast<float>((u(rng) < 0.5 ? -1.0 : 1.0) * (20.0 + 130.0 * u(rng)));
    const auto lo = [](double c, double r) { return std::max<int64_t>(0, std::lround(c - r - 1)); };
    const int64_t z1 = std::min<int64_t>(v.slices - 1, std::lround(cz + rz + 1));
    const int64_t r1 = std::min<int64_t>(v.rows - 1, std::lround(cy + ry + 1));
    const int64_t c1 = std::min<int64_t>(v.columns - 1, std::lround(cx + rx + 1));
    for (int64_t z = lo(cz, rz); z <= z1; ++z) {
      for (int64_t r = lo(cy, ry); r <= r1; ++r) {
        for (int64_t c = lo(cx, rx); c <= c1; ++c) {
          const double dz = (static_cast<double>(z) + 0.5 - cz) / rz;
          const double dy = (static_cast<double>(r) + 0.5 - cy) / ry;
          const double dx = (static_cast<double>(c) + 0.5 - cx) / rx;
          if (dx * dx + dy * dy + dz * dz > 1.0) continue;
          float& hu = v.At(z, r, c);
          if (lung && hu < -300.0f) hu = 30.0f;
          if (soft && hu > -50.0f && hu < 200.0f) hu += contrast;
        }
      }
    }
  }
}

// Mean of thin slices [first, first + count).
void MeanOfSlices(const Volume& thin, int64_t first, int64_t count, float* out) {
  const int64_t n = thin.VoxelsPerSlice();
  std::fill(out, out + n, 0.0f);
  for (int64_t s = first; s < first + count; ++s) {
    const float* in = thin.Slice(s);
    for (int64_t i = 0; i < n; ++i) out[i] += in[i] / static_cast<float>(count);
  }
}

}  // namespace

Volume BlurSlices(const Volume& volume, double sigma) {
  const auto radius = static_cast<int64_t>(std::ceil(3 * sigma));
  std::vector<float> taps;
  double sum = 0;
  for (int64_t i = -radius; i <= radius; ++i) {
    taps.push_back(
        static_cast<float>(std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma))));
    sum += taps.back();
  }
  for (float& t : taps) t = static_cast<float>(t / sum);
  const auto n = static_cast<int64_t>(taps.size());
  const at::Tensor kernel = at::tensor(taps, at::kFloat);
  at::Tensor x = at::from_blob(const_cast<float*>(volume.voxels.data()),
                               {volume.slices, 1, volume.rows, volume.columns}, at::kFloat);
  x = at::reflection_pad2d(x, {radius, radius, radius, radius});
  x = at::conv2d(x, kernel.view({1, 1, 1, n}));
  x = at::conv2d(x, kernel.view({1, 1, n, 1})).contiguous();
  Volume out = volume;
  std::copy(x.data_ptr<float>(), x.data_ptr<float>() + x.numel(), out.voxels.begin());
  return out;
}

SuperResPairs SimulateCtSuperRes(uint64_t firstSeed, int phantoms, int64_t slices,
                                 std::ostream& log) {
  SuperResPairs pairs;
  TrainingPhantomOptions options;
  options.slices = slices;
  for (int k = 0; k < phantoms; ++k) {
    const uint64_t seed = firstSeed + static_cast<uint64_t>(k);
    const Volume high = BlurSlices(MakeTrainingCtPhantom(seed, options), kPsfSigmaPx);
    Append(pairs.low, Downsample2(high));
    Append(pairs.high, high);
    log << "  phantom seed " << seed << ": " << high.slices << " slices of " << high.rows << "x"
        << high.columns << ", " << high.geometry.rowSpacing << " mm pixels\n"
        << std::flush;
  }
  return pairs;
}

SuperResPairs CtSuperResTrainingSet(std::ostream& log) {
  return SimulateCtSuperRes(2000, 24, 3, log);
}

SuperResPairs CtSuperResTestSet(std::ostream& log) { return SimulateCtSuperRes(910000, 4, 3, log); }

ThroughPlanePairs SimulateCtThroughPlane(uint64_t firstSeed, int phantoms, int64_t thickSlices,
                                         std::ostream& log) {
  ThroughPlanePairs pairs;
  for (int k = 0; k < phantoms; ++k) {
    const uint64_t seed = firstSeed + static_cast<uint64_t>(k);
    std::mt19937_64 rng(seed * 104729 + 3);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    PhantomOptions p;
    p.rows = 512;
    p.columns = 512;
    p.slices = kThinPerThick * thickSlices;
    p.pixelSpacing = 0.65 + 0.3 * u(rng);
    p.sliceSpacing = 0.625 + 0.625 * u(rng);
    p.seed = seed;
    Volume thin = MakeCtPhantom(p);
    AddLesions3d(thin, p.pixelSpacing, p.sliceSpacing, rng);
    thin = BlurSlices(thin, kPsfSigmaPx);

    Volume thick = thin;
    thick.slices = thickSlices;
    thick.voxels.assign(static_cast<size_t>(thickSlices * thin.VoxelsPerSlice()), 0.0f);
    thick.geometry.slicePositions.clear();
    for (int64_t s = 0; s < thickSlices; ++s) {
      MeanOfSlices(thin, kThinPerThick * s, kThinPerThick, thick.Slice(s));
      Vec3 centre = thin.geometry.slicePositions[static_cast<size_t>(kThinPerThick * s)];
      centre[2] += 1.5 * p.sliceSpacing;
      thick.geometry.slicePositions.push_back(centre);
    }
    thick.geometry.sliceSpacing = kThinPerThick * p.sliceSpacing;
    thick.geometry.sliceThickness = kThinPerThick * p.sliceSpacing;

    Volume gaps = thick;
    gaps.slices = thickSlices - 1;
    gaps.voxels.resize(static_cast<size_t>(gaps.slices * thin.VoxelsPerSlice()));
    gaps.geometry.slicePositions.clear();
    for (int64_t g = 0; g < gaps.slices; ++g) {
      MeanOfSlices(thin, kThinPerThick * g + kThinPerThick / 2, kThinPerThick, gaps.Slice(g));
      Vec3 centre = thick.geometry.slicePositions[static_cast<size_t>(g)];
      centre[2] += 0.5 * thick.geometry.sliceSpacing;
      gaps.geometry.slicePositions.push_back(centre);
    }
    log << "  phantom seed " << seed << ": " << p.slices << " thin slices of " << p.sliceSpacing
        << " mm -> " << thickSlices << " of " << thick.geometry.sliceSpacing << " mm, "
        << p.pixelSpacing << " mm pixels\n"
        << std::flush;
    pairs.thick.push_back(std::move(thick));
    pairs.gaps.push_back(std::move(gaps));
  }
  return pairs;
}

ThroughPlanePairs CtThroughPlaneTrainingSet(std::ostream& log) {
  return SimulateCtThroughPlane(3000, 16, 8, log);
}

ThroughPlanePairs CtThroughPlaneTestSet(std::ostream& log) {
  return SimulateCtThroughPlane(920000, 3, 8, log);
}

Volume GapChannels(const Volume& thick, int64_t gap, int64_t context) {
  Volume out = thick;
  out.slices = 2 * context;
  out.voxels.clear();
  out.geometry.slicePositions.clear();
  for (int64_t i = gap - context + 1; i <= gap + context; ++i) {
    const int64_t k = std::clamp<int64_t>(i, 0, thick.slices - 1);
    out.voxels.insert(out.voxels.end(), thick.Slice(k), thick.Slice(k) + thick.VoxelsPerSlice());
    out.geometry.slicePositions.push_back(thick.geometry.slicePositions[static_cast<size_t>(k)]);
  }
  return out;
}

}  // namespace enhance::models
