// SPDX-License-Identifier: GPL-3.0-or-later
//
// Patient-space geometry of a stack of parallel slices, in the DICOM patient
// coordinate system (LPS, millimetres). A value type: copy freely; not synchronised.
//
// Conventions (DICOM PS3.3 C.7.6.2):
//  - rowDirection is the first triplet of ImageOrientationPatient: the direction in
//    which the column index increases along a row.
//  - columnDirection is the second triplet: the direction in which the row index increases.
//  - rowSpacing is PixelSpacing[0], the distance between adjacent rows (along columnDirection);
//    columnSpacing is PixelSpacing[1], the distance between adjacent columns (along rowDirection).
//  - slicePositions[k] is ImagePositionPatient of slice k: the centre of its first voxel.
//    Slices are ordered by increasing position along sliceDirection.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace enhance {

using Vec3 = std::array<double, 3>;

double Dot(const Vec3& a, const Vec3& b);
Vec3 Cross(const Vec3& a, const Vec3& b);
double Norm(const Vec3& a);
Vec3 Normalized(const Vec3& a);
Vec3 operator+(const Vec3& a, const Vec3& b);
Vec3 operator-(const Vec3& a, const Vec3& b);
Vec3 operator*(double s, const Vec3& a);

struct Geometry {
  Vec3 rowDirection{1, 0, 0};
  Vec3 columnDirection{0, 1, 0};
  Vec3 sliceDirection{0, 0, 1};  // rowDirection x columnDirection
  double rowSpacing = 1.0;
  double columnSpacing = 1.0;
  double sliceSpacing = 1.0;    // distance between consecutive slice centres
  double sliceThickness = 0.0;  // nominal reconstructed thickness; 0 when unknown
  std::vector<Vec3> slicePositions;
  std::string frameOfReferenceUid;

  // Centre of voxel (slice, row, column) in patient coordinates.
  Vec3 VoxelCentre(int64_t slice, double row, double column) const;
};

// Resampling helpers for models that change the grid (super-resolution). Pure functions;
// both throw Error(kBadInput) when factor < 1.

// The grid `factor` times finer along rows and columns over the same field of view: an
// image of rows x columns becomes (rows x factor) x (columns x factor) pixels of spacing /
// factor. Each slice position (the centre of the first voxel) moves by (old spacing - new
// spacing) / 2 along the row and the column directions; slices are unchanged.
Geometry UpsampleInPlane(const Geometry& g, int factor);

// The grid with factor - 1 slices inserted evenly between each pair of neighbours: N
// slices become (N - 1) x factor + 1 with the same first and last positions.
// sliceSpacing and a known sliceThickness are divided by factor.
Geometry UpsampleThroughPlane(const Geometry& g, int factor);

}  // namespace enhance
