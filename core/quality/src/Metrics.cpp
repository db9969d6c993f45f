// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/quality/Metrics.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <numeric>

#include "enhance/base/Error.h"
#include "enhance/base/OrderStatistics.h"

namespace enhance {
namespace {

constexpr int64_t kWindow = 11;
constexpr double kSigma = 1.5;
constexpr double kK1 = 0.01;
constexpr double kK2 = 0.03;

void CheckSameGeometry(const Volume& a, const Volume& b) {
  if (a.slices != b.slices || a.rows != b.rows || a.columns != b.columns) {
    throw Error(ErrorKind::kBadInput,
                "the series differ in size: reference " + std::to_string(a.slices) + "x" +
                    std::to_string(a.rows) + "x" + std::to_string(a.columns) + ", test " +
                    std::to_string(b.slices) + "x" + std::to_string(b.rows) + "x" +
                    std::to_string(b.columns) + "; compare series of the same geometry");
  }
  const double tolerance = 0.01 * std::min(a.geometry.rowSpacing, a.geometry.columnSpacing);
  const auto& pa = a.geometry.slicePositions;
  const auto& pb = b.geometry.slicePositions;
  if (pa.size() == pb.size()) {
    for (size_t k = 0; k < pa.size(); ++k) {
      if (Norm(pa[k] - pb[k]) > tolerance) {
        throw Error(ErrorKind::kBadInput, "slice " + std::to_string(k + 1) +
                                              " is not at the same position in both series (" +
                                              std::to_string(Norm(pa[k] - pb[k])) +
                                              " mm apart); compare series of the same geometry");
      }
    }
  }
  if (std::abs(a.geometry.rowSpacing - b.geometry.rowSpacing) > tolerance ||
      std::abs(a.geometry.columnSpacing - b.geometry.columnSpacing) > tolerance) {
    throw Error(ErrorKind::kBadInput, "the series differ in pixel spacing");
  }
}

at::Tensor GaussianKernel() {
  std::vector<double> taps;
  double sum = 0;
  for (int64_t i = -(kWindow / 2); i <= kWindow / 2; ++i) {
    taps.push_back(std::exp(-0.5 * static_cast<double>(i * i) / (kSigma * kSigma)));
    sum += taps.back();
  }
  for (double& t : taps) t /= sum;
  const at::Tensor k = at::tensor(taps, at::kDouble);
  return at::outer(k, k).view({1, 1, kWindow, kWindow});
}

double Percentile99(const std::vector<float>& values) {
  const size_t index = static_cast<size_t>(0.99 * static_cast<double>(values.size() - 1));
  return KthSmallest(values.data(), values.size(), index);
}

// The value above which the reference is body: as given, or -500 HU for CT, else 10% of
// the reference's 99th percentile.
double BodyThreshold(const Volume& reference, const MetricOptions& options) {
  return options.bodyThreshold.value_or(
      reference.units == "HU" ? -500.0 : 0.1 * Percentile99(reference.voxels));
}

double Psnr(double mse, double range) {
  if (mse <= 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(range * range / mse);
}

}  // namespace

std::vector<uint8_t> BodyMask(const Volume& v, double threshold) {
  const int64_t n = static_cast<int64_t>(v.voxels.size());
  std::vector<int32_t> label(static_cast<size_t>(n), 0);
  int32_t best = 0;
  int64_t bestSize = 0;
  int32_t next = 0;
  std::deque<int64_t> queue;
  const int64_t plane = v.rows * v.columns;
  for (int64_t start = 0; start < n; ++start) {
    if (label[static_cast<size_t>(start)] != 0 || v.voxels[static_cast<size_t>(start)] <= threshold)
      continue;
    ++next;
    int64_t size = 0;
    label[static_cast<size_t>(start)] = next;
    queue.push_back(start);
    while (!queue.empty()) {
      const int64_t i = queue.front();
      queue.pop_front();
      ++size;
      const int64_t s = i / plane;
      const int64_t r = (i % plane) / v.columns;
      const int64_t c = i % v.columns;
      const int64_t neighbours[6][3] = {{s - 1, r, c}, {s + 1, r, c}, {s, r - 1, c},
                                        {s, r + 1, c}, {s, r, c - 1}, {s, r, c + 1}};
      for (const auto& nb : neighbours) {
        if (nb[0] < 0 || nb[0] >= v.slices || nb[1] < 0 || nb[1] >= v.rows || nb[2] < 0 ||
            nb[2] >= v.columns) {
          continue;
        }
        const int64_t j = (nb[0] * v.rows + nb[1]) * v.columns + nb[2];
        if (label[static_cast<size_t>(j)] == 0 && v.voxels[static_cast<size_t>(j)] > threshold) {
          label[static_cast<size_t>(j)] = next;
          queue.push_back(j);
        }
      }
    }
    if (size > bestSize) {
      bestSize = size;
      best = next;
    }
  }
  std::vector<uint8_t> mask(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i)
    mask[static_cast<size_t>(i)] = label[static_cast<size_t>(i)] == best && best != 0;
  return mask;
}

namespace {

// Per slice, the sum of the SSIM map over the body mask and the number of voxels it
// covers, within the valid region (where the window fits entirely inside the slice).
struct SsimSums {
  at::Tensor sum;
  at::Tensor count;
};

SsimSums SsimPerSlice(const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask,
                      double dataRange) {
  const int64_t S = x.size(0), H = x.size(2), W = x.size(3);
  SsimSums sums{at::zeros({S}, at::kDouble), at::zeros({S}, at::kDouble)};
  if (H < kWindow || W < kWindow) return sums;
  const at::Tensor k = GaussianKernel();
  auto filter = [&](const at::Tensor& t) { return at::conv2d(t, k); };
  const at::Tensor ux = filter(x), uy = filter(y);
  const at::Tensor vx = filter(x * x) - ux * ux;
  const at::Tensor vy = filter(y * y) - uy * uy;
  const at::Tensor vxy = filter(x * y) - ux * uy;
  const double c1 = std::pow(kK1 * dataRange, 2);
  const double c2 = std::pow(kK2 * dataRange, 2);
  const at::Tensor map =
      ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
  const int64_t pad = kWindow / 2;
  const at::Tensor validMask = mask.slice(2, pad, H - pad).slice(3, pad, W - pad);
  sums.sum = (map * validMask).sum({1, 2, 3});
  sums.count = validMask.sum({1, 2, 3});
  return sums;
}

}  // namespace

QualityReport CompareVolumes(const Volume& reference, const Volume& test,
                             const MetricOptions& options) {
  CheckSameGeometry(reference, test);
  if (reference.voxels.empty()) throw Error(ErrorKind::kBadInput, "the series are empty");
  const bool windowed = options.windowLow.has_value() && options.windowHigh.has_value();
  if (windowed && !(*options.windowHigh > *options.windowLow)) {
    throw Error(ErrorKind::kBadInput, "the window's high value must exceed its low value");
  }

  c10::InferenceMode guard;
  const int64_t S = reference.slices, H = reference.rows, W = reference.columns;
  at::Tensor x =
      at::from_blob(const_cast<float*>(reference.voxels.data()), {S, 1, H, W}).to(at::kDouble);
  at::Tensor y =
      at::from_blob(const_cast<float*>(test.voxels.data()), {S, 1, H, W}).to(at::kDouble);
  if (windowed) {
    x.clamp_(*options.windowLow, *options.windowHigh);
    y.clamp_(*options.windowLow, *options.windowHigh);
  }
  QualityReport report;
  report.dataRange = windowed ? *options.windowHigh - *options.windowLow
                              : options.dataRange.value_or((x.max() - x.min()).item<double>());
  if (!(report.dataRange > 0)) report.dataRange = 1.0;

  at::Tensor mask = at::ones({S, 1, H, W}, at::kDouble);
  if (options.bodyMask) {
    const double threshold = BodyThreshold(reference, options);
    std::vector<uint8_t> body = BodyMask(reference, threshold);
    mask = at::from_blob(body.data(), {S, 1, H, W}, at::kByte).to(at::kDouble);
  }

  const at::Tensor difference = (x - y) * mask;
  const at::Tensor absSum = difference.abs().sum({1, 2, 3});
  const at::Tensor squareSum = difference.square().sum({1, 2, 3});
  const at::Tensor counts = mask.sum({1, 2, 3});

  const SsimSums ssim = SsimPerSlice(x, y, mask, report.dataRange);

  auto abs = absSum.accessor<double, 1>();
  auto squares = squareSum.accessor<double, 1>();
  auto n = counts.accessor<double, 1>();
  auto ss = ssim.sum.accessor<double, 1>();
  auto sc = ssim.count.accessor<double, 1>();
  double totalAbs = 0, totalSquares = 0, totalCount = 0, totalSsim = 0, totalSsimCount = 0;
  for (int64_t s = 0; s < S; ++s) {
    QualityFigures f;
    f.voxels = static_cast<int64_t>(n[s]);
    if (n[s] > 0) {
      f.mae = abs[s] / n[s];
      f.rmse = std::sqrt(squares[s] / n[s]);
      f.psnr = Psnr(squares[s] / n[s], report.dataRange);
    }
    f.ssim = sc[s] > 0 ? ss[s] / sc[s] : std::numeric_limits<double>::quiet_NaN();
    report.slices.push_back(f);
    totalAbs += abs[s];
    totalSquares += squares[s];
    totalCount += n[s];
    totalSsim += ss[s];
    totalSsimCount += sc[s];
  }
  QualityFigures& o = report.overall;
  o.voxels = static_cast<int64_t>(totalCount);
  if (totalCount > 0) {
    o.mae = totalAbs / totalCount;
    o.rmse = std::sqrt(totalSquares / totalCount);
    o.psnr = Psnr(totalSquares / totalCount, report.dataRange);
  }
  o.ssim =
      totalSsimCount > 0 ? totalSsim / totalSsimCount : std::numeric_limits<double>::quiet_NaN();
  return report;
}

namespace {

bool InClass(const TissueClass& c, float value) {
  return (!c.above || value > *c.above) && (!c.below || value < *c.below);
}

}  // namespace

std::vector<ClassOverlap> CompareClasses(const Volume& reference, const Volume& test,
                                         const std::vector<TissueClass>& classes,
                                         const MetricOptions& options) {
  CheckSameGeometry(reference, test);
  std::vector<uint8_t> mask;
  if (options.bodyMask) mask = BodyMask(reference, BodyThreshold(reference, options));
  std::vector<ClassOverlap> overlaps;
  for (const TissueClass& c : classes) {
    if (!c.above && !c.below) {
      throw Error(ErrorKind::kBadInput,
                  "tissue class '" + c.name + "' needs a lower or an upper threshold, or both");
    }
    ClassOverlap o;
    o.name = c.name;
    for (size_t i = 0; i < reference.voxels.size(); ++i) {
      if (!mask.empty() && mask[i] == 0) continue;
      const bool r = InClass(c, reference.voxels[i]);
      const bool t = InClass(c, test.voxels[i]);
      o.reference += r;
      o.test += t;
      o.both += r && t;
    }
    const auto sum = static_cast<double>(o.reference + o.test);
    const auto both = static_cast<double>(o.both);
    o.dice = sum > 0 ? 2 * both / sum : std::numeric_limits<double>::quiet_NaN();
    o.iou = sum > 0 ? both / (sum - both) : std::numeric_limits<double>::quiet_NaN();
    overlaps.push_back(o);
  }
  return overlaps;
}

namespace {

// Ranks from 1, tied values sharing their mean rank.
template <typename T>
std::vector<double> Ranks(const std::vector<T>& values) {
  std::vector<size_t> order(values.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t i, size_t j) { return values[i] < values[j]; });
  std::vector<double> ranks(values.size());
  for (size_t first = 0; first < order.size();) {
    size_t last = first + 1;
    while (last < order.size() && values[order[last]] == values[order[first]]) ++last;
    const double mean = 0.5 * static_cast<double>(first + last - 1) + 1.0;
    for (size_t k = first; k < last; ++k) ranks[order[k]] = mean;
    first = last;
  }
  return ranks;
}

double Pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const auto n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx <= 0 || syy <= 0) return std::numeric_limits<double>::quiet_NaN();
  return sxy / std::sqrt(sxx * syy);
}

}  // namespace

double SpearmanCorrelation(const Volume& a, const Volume& b, const std::vector<uint8_t>& mask) {
  CheckSameGeometry(a, b);
  if (!mask.empty() && mask.size() != a.voxels.size()) {
    throw Error(ErrorKind::kBadInput, "SpearmanCorrelation: the mask has " +
                                          std::to_string(mask.size()) + " entries for " +
                                          std::to_string(a.voxels.size()) + " voxels");
  }
  std::vector<float> x, y;
  for (size_t i = 0; i < a.voxels.size(); ++i) {
    if (!mask.empty() && mask[i] == 0) continue;
    x.push_back(a.voxels[i]);
    y.push_back(b.voxels[i]);
  }
  if (x.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  return Pearson(Ranks(x), Ranks(y));
}

double AreaUnderRoc(const std::vector<double>& positives, const std::vector<double>& negatives) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (positives.empty() || negatives.empty()) return nan;
  for (const auto* list : {&positives, &negatives}) {
    for (double v : *list) {
      if (std::isnan(v)) return nan;
    }
  }
  // Ranks over both lists (ties share their mean rank): U = rank sum of the positives
  // less its least possible value.
  std::vector<double> all(positives);
  all.insert(all.end(), negatives.begin(), negatives.end());
  const std::vector<double> ranks = Ranks(all);
  double sum = 0;
  for (size_t i = 0; i < positives.size(); ++i) sum += ranks[i];
  const double p = static_cast<double>(positives.size());
  const double n = static_cast<double>(negatives.size());
  return (sum - p * (p + 1) / 2) / (p * n);
}

}  // namespace enhance
