// SPDX-License-Identifier: GPL-3.0-or-later
#include "TrainingPhantom.h"

#include <algorithm>
#include <random>

#include "enhance/samples/Phantom.h"

namespace enhance::models {
namespace {

// Lesions are placed only where the phantom is soft tissue, as in the liver, kidneys
// or muscle, where low-contrast detectability matters most.
bool IsSoftTissue(float hu) { return hu > -50.0f && hu < 200.0f; }

void AddLesions(Volume& v, int64_t slice, int maxLesions, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const int count = static_cast<int>(u(rng) * (maxLesions + 1));
  const auto rows = static_cast<double>(v.rows);
  const auto columns = static_cast<double>(v.columns);
  for (int k = 0, tries = 0; k < count && tries < 200; ++tries) {
    const double cy = rows * (0.15 + 0.7 * u(rng));
    const double cx = columns * (0.15 + 0.7 * u(rng));
    if (!IsSoftTissue(v.At(slice, static_cast<int64_t>(cy), static_cast<int64_t>(cx)))) continue;
    ++k;
    const double ry = rows * (0.006 + 0.03 * u(rng));
    const double rx = ry * (0.6 + 0.8 * u(rng));
    const double sign = u(rng) < 0.5 ? -1.0 : 1.0;
    const auto contrast = static_cast<float>(sign * (10.0 + 90.0 * u(rng)));
    const auto r0 = std::max<int64_t>(0, static_cast<int64_t>(cy - ry - 1));
    const auto r1 = std::min<int64_t>(v.rows - 1, static_cast<int64_t>(cy + ry + 1));
    const auto c0 = std::max<int64_t>(0, static_cast<int64_t>(cx - rx - 1));
    const auto c1 = std::min<int64_t>(v.columns - 1, static_cast<int64_t>(cx + rx + 1));
    for (int64_t r = r0; r <= r1; ++r) {
      for (int64_t c = c0; c <= c1; ++c) {
        const double dy = (static_cast<double>(r) + 0.5 - cy) / ry;
        const double dx = (static_cast<double>(c) + 0.5 - cx) / rx;
        if (dx * dx + dy * dy <= 1.0 && IsSoftTissue(v.At(slice, r, c))) {
          v.At(slice, r, c) += contrast;
        }
      }
    }
  }
}

void Flip(Volume& v, int64_t slice, bool leftRight, bool anteriorPosterior) {
  float* data = v.Slice(slice);
  if (leftRight) {
    for (int64_t r = 0; r < v.rows; ++r)
      std::reverse(data + r * v.columns, data + (r + 1) * v.columns);
  }
  if (anteriorPosterior) {
    for (int64_t r = 0; r < v.rows / 2; ++r) {
      std::swap_ranges(data + r * v.columns, data + (r + 1) * v.columns,
                       data + (v.rows - 1 - r) * v.columns);
    }
  }
}

}  // namespace

Volume MakeTrainingCtPhantom(uint64_t seed, const TrainingPhantomOptions& options) {
  std::mt19937_64 rng(seed * 7919 + 17);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  PhantomOptions p;
  p.rows = options.size;
  p.columns = options.size;
  p.slices = options.slices;
  p.pixelSpacing =
      options.minPixelSpacing + (options.maxPixelSpacing - options.minPixelSpacing) * u(rng);
  p.sliceSpacing = 5.0 + 35.0 * u(rng);
  p.seed = seed;
  Volume v = MakeCtPhantom(p);
  for (int64_t s = 0; s < v.slices; ++s) {
    AddLesions(v, s, options.maxLesions, rng);
    Flip(v, s, u(rng) < 0.5, u(rng) < 0.5);
  }
  return v;
}

}  // namespace enhance::models
