// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/Geometry.h"

#include <cmath>

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

}  // namespace enhance
