// SPDX-License-Identifier: GPL-3.0-or-later
#include "Mr2CtData.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "MrDenoiseData.h"
#include "Nifti.h"
#include "Normalise.h"
#include "SuperResData.h"

namespace enhance::models {
namespace {

// ch2.nii.gz: 181 axial slices of 1 mm; the head spans about slices 15-165.
constexpr int64_t kFirst = 15;
constexpr int64_t kLast = 165;
constexpr int64_t kHeldOutFirst = 95;
constexpr int64_t kHeldOutCount = 20;
constexpr int64_t kMargin = 5;
constexpr int64_t kSlab = 10;

// Per slice: pixels above `level`, plus every pixel not reachable from the border
// through pixels at or below it (holes filled).
std::vector<uint8_t> FilledMask(const Volume& v, double level) {
  const int64_t n = v.VoxelsPerSlice();
  std::vector<uint8_t> mask(v.voxels.size(), 1);
  std::vector<int64_t> stack;
  for (int64_t s = 0; s < v.slices; ++s) {
    const float* in = v.Slice(s);
    uint8_t* m = mask.data() + s * n;
    auto push = [&](int64_t r, int64_t c) {
      if (r < 0 || c < 0 || r >= v.rows || c >= v.columns) return;
      const int64_t i = r * v.columns + c;
      if (m[i] == 0 || in[i] > level) return;
      m[i] = 0;
      stack.push_back(i);
    };
    for (int64_t r = 0; r < v.rows; ++r) {
      push(r, 0);
      push(r, v.columns - 1);
    }
    for (int64_t c = 0; c < v.columns; ++c) {
      push(0, c);
      push(v.rows - 1, c);
    }
    while (!stack.empty()) {
      const int64_t i = stack.back();
      stack.pop_back();
      const int64_t r = i / v.columns, c = i % v.columns;
      push(r - 1, c);
      push(r + 1, c);
      push(r, c - 1);
      push(r, c + 1);
    }
  }
  return mask;
}

Volume Crop(const Volume& v, int64_t first, int64_t count) { return SliceRange(v, first, count); }

}  // namespace

Volume ApplyMrEffects(const Volume& mr, const MrEffects& e, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  // A smooth field over the slice: exp of a random quadratic of the normalised position.
  const double a[5] = {u(rng), u(rng), u(rng), u(rng), u(rng)};
  Volume out = mr;
  for (int64_t s = 0; s < mr.slices; ++s) {
    for (int64_t r = 0; r < mr.rows; ++r) {
      const double y = 2.0 * static_cast<double>(r) / static_cast<double>(mr.rows) - 1.0;
      for (int64_t c = 0; c < mr.columns; ++c) {
        const double x = 2.0 * static_cast<double>(c) / static_cast<double>(mr.columns) - 1.0;
        const double field = std::exp(
            e.bias * 0.5 * (a[0] * x + a[1] * y + a[2] * x * x + a[3] * y * y + a[4] * x * y));
        float& value = out.At(s, r, c);
        value = static_cast<float>(std::pow(std::max(0.0f, value), e.gamma) * field);
      }
    }
  }
  if (e.noise > 0) out = AddRicianNoise(out, e.noise, seed + 1);
  return out;
}

Volume PseudoCtFromT1(const Volume& t1, const Volume& brain) {
  if (t1.voxels.size() != brain.voxels.size()) {
    throw std::invalid_argument("PseudoCtFromT1: the brain mask has another size");
  }
  std::vector<float> inBrain;
  for (size_t i = 0; i < t1.voxels.size(); ++i) {
    if (brain.voxels[i] > 0) inBrain.push_back(t1.voxels[i]);
  }
  const double w = Percentile(inBrain, 99.0);  // the brightest white matter
  const std::vector<uint8_t> head = FilledMask(t1, 0.25 * w);
  Volume ct = t1;
  ct.units = "HU";
  for (size_t i = 0; i < t1.voxels.size(); ++i) {
    const double v = t1.voxels[i] / w;
    double hu = -1000.0;
    if (brain.voxels[i] > 0) {
      if (v < 0.55) {
        hu = 10.0;
      } else {
        hu = 40.0 - 12.0 * std::clamp((v - 0.75) / 0.2, 0.0, 1.0);
      }
    } else if (head[i]) {
      hu = v < 0.45 ? 900.0 : (v > 1.1 ? -80.0 : 45.0);
    }
    ct.voxels[i] = static_cast<float>(hu);
  }
  return BlurSlices(ct, 0.5);
}

namespace {

struct Source {
  Volume t1;
  Volume ct;
};

Source LoadSource(const std::filesystem::path& templates) {
  Source s;
  s.t1 = LoadMrReference(templates / "ch2.nii.gz");
  const Volume brain = ReadNifti(templates / "ch2bet.nii.gz");
  s.ct = PseudoCtFromT1(s.t1, brain);
  return s;
}

}  // namespace

MrEffects RandomTrainingEffects(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  MrEffects e;
  e.bias = 0.4 * u(rng);
  e.gamma = std::exp(std::log(1.3) * (2 * u(rng) - 1));
  e.noise = 0.04 * u(rng);
  return e;
}

std::vector<Mr2CtPair> Mr2CtTrainingSet(const std::filesystem::path& templates) {
  const Source source = LoadSource(templates);
  std::vector<Mr2CtPair> pairs;
  std::mt19937_64 rng(21);
  uint64_t seed = 300;
  for (int copy = 0; copy < 3; ++copy) {
    for (int64_t first = kFirst + copy * kSlab / 3; first + kSlab <= kLast; first += kSlab) {
      const int64_t last = first + kSlab;
      if (last > kHeldOutFirst - kMargin && first < kHeldOutFirst + kHeldOutCount + kMargin) {
        continue;
      }
      const MrEffects e = RandomTrainingEffects(rng);
      Mr2CtPair p;
      p.label = "ch2 slices " + std::to_string(first) + "-" + std::to_string(last - 1);
      p.mr = ApplyMrEffects(Crop(source.t1, first, kSlab), e, seed++);
      p.ct = Crop(source.ct, first, kSlab);
      pairs.push_back(std::move(p));
    }
  }
  return pairs;
}

std::vector<Mr2CtPair> Mr2CtTestSet(const std::filesystem::path& templates) {
  const Source source = LoadSource(templates);
  const Volume t1 = Crop(source.t1, kHeldOutFirst, kHeldOutCount);
  const Volume ct = Crop(source.ct, kHeldOutFirst, kHeldOutCount);
  std::vector<Mr2CtPair> pairs;
  pairs.push_back({"held-out slices, no added effects", t1, ct});
  pairs.push_back({"held-out slices, bias 20%, gamma 1.15, noise 2%",
                   ApplyMrEffects(t1, {0.2, 1.15, 0.02}, 930001), ct});
  pairs.push_back({"held-out slices, bias 40%, gamma 0.8, noise 4%",
                   ApplyMrEffects(t1, {0.4, 0.8, 0.04}, 930003), ct});
  return pairs;
}

Volume ThresholdPseudoCt(const Volume& mr, double headLevel, double darkLevel, double darkHu,
                         double softHu) {
  const auto [low, high] = PercentileWindow(mr, 99.5);
  (void)low;
  const std::vector<uint8_t> head = FilledMask(mr, headLevel * high);
  Volume ct = mr;
  ct.units = "HU";
  for (size_t i = 0; i < mr.voxels.size(); ++i) {
    const double v = mr.voxels[i] / high;
    ct.voxels[i] = static_cast<float>(!head[i] ? -1000.0 : (v < darkLevel ? darkHu : softHu));
  }
  return ct;
}

}  // namespace enhance::models
