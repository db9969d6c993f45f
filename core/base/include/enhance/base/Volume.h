// SPDX-License-Identifier: GPL-3.0-or-later
//
// A stack of single-channel slices in physical units (Hounsfield units for CT,
// the scanner's arbitrary units for MR) with its patient-space geometry.
// Voxels are stored slice-major, then row-major: index = (s * rows + r) * columns + c.
// A value type; not synchronised: share it read-only or guard it yourself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "enhance/base/Geometry.h"

namespace enhance {

struct Volume {
  int64_t slices = 0;
  int64_t rows = 0;
  int64_t columns = 0;
  std::vector<float> voxels;
  Geometry geometry;
  std::string units;  // "HU" for CT, "" when the unit is arbitrary (MR)

  int64_t VoxelsPerSlice() const { return rows * columns; }
  float* Slice(int64_t s) { return voxels.data() + s * VoxelsPerSlice(); }
  const float* Slice(int64_t s) const { return voxels.data() + s * VoxelsPerSlice(); }
  float& At(int64_t s, int64_t r, int64_t c) { return voxels[(s * rows + r) * columns + c]; }
  float At(int64_t s, int64_t r, int64_t c) const { return voxels[(s * rows + r) * columns + c]; }

  // Allocates zero-filled voxels for the given size; keeps the geometry.
  void Resize(int64_t numSlices, int64_t numRows, int64_t numColumns);
};

// The means of the factor x factor blocks of a rows x columns slice, row-major into `means`
// ((rows / factor) x (columns / factor) values: the last rows and columns that do not fill
// a block are left out). Each is the sum of its block's values in row-major order times
// 1 / factor^2.
void BlockMeans(const float* slice, int64_t rows, int64_t columns, int64_t factor, float* means);

}  // namespace enhance
