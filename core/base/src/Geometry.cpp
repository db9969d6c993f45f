// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/Geometry.h"

#include <cmath>
#include <string>

#include "enhance/base/Error.h"

namespace enhance {

double Dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

Vec3 Cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

double Norm(const Vec3& a) { return std::sqrt(Dot(a, a)); }

Vec3 Normalized(const Vec3& a) {
  const double n = Norm(a);
  return n > 0 ? (1.0 / n) * a : a;
}

Vec3 operator+(const Vec3& a, const Vec3& b) { return {a[0] + b[0], a[1] + b[1], a[2] + b[2]}; }
Vec3 operator-(const Vec3& a, const Vec3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
Vec3 operator*(double s, const Vec3& a) { return {s * a[0], s * a[1], s * a[2]}; }

Vec3 Geometry::VoxelCentre(int64_t slice, double row, double column) const {
  return slicePositions.at(static_cast<size_t>(slice)) + (column * columnSpacing) * rowDirection +
         (row * rowSpacing) * columnDirection;
}

namespace {

void CheckFactor(int factor, const char* what) {
  if (factor < 1) {
    throw Error(ErrorKind::kBadInput, std::string(what) + ": upsampling factor " +
                                          std::to_string(factor) + " is not a positive integer");
  }
}

}  // namespace

Geometry UpsampleInPlane(const Geometry& g, int factor) {
  CheckFactor(factor, "in-plane upsampling");
  Geometry out = g;
  out.rowSpacing = g.rowSpacing / factor;
  out.columnSpacing = g.columnSpacing / factor;
  // The first old voxel spans [-old/2, +old/2] around its centre along each in-plane axis;
  // the first new voxel starts at the same edge, so its centre is at -(old - new)/2.
  const Vec3 shift = (-(g.columnSpacing - out.columnSpacing) / 2.0) * g.rowDirection +
                     (-(g.rowSpacing - out.rowSpacing) / 2.0) * g.columnDirection;
  for (Vec3& p : out.slicePositions) p = p + shift;
  return out;
}

Geometry UpsampleThroughPlane(const Geometry& g, int factor) {
  CheckFactor(factor, "through-plane upsampling");
  Geometry out = g;
  out.sliceSpacing = g.sliceSpacing / factor;
  if (g.sliceThickness > 0) out.sliceThickness = g.sliceThickness / factor;
  out.slicePositions.clear();
  const size_t n = g.slicePositions.size();
  for (size_t k = 0; k < n; ++k) {
    out.slicePositions.push_back(g.slicePositions[k]);
    if (k + 1 == n) break;
    // Between each pair of actual positions, so an irregular source stays irregular.
    const Vec3 step = g.slicePositions[k + 1] - g.slicePositions[k];
    for (int i = 1; i < factor; ++i) {
      out.slicePositions.push_back(g.slicePositions[k] + (static_cast<double>(i) / factor) * step);
    }
  }
  return out;
}

}  // namespace enhance
