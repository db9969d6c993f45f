// SPDX-License-Identifier: GPL-3.0-or-later
//
// Reads a NIfTI-1 single-file volume (.nii, or .nii.gz through zlib) into a Volume:
// the first three dimensions become columns (i), rows (j) and slices (k); the voxel
// spacings come from pixdim; stored values are scaled by scl_slope and scl_inter.
// Integer and floating-point data types of 8 to 64 bits, either byte order. Orientation
// (qform/sform) is not interpreted: the geometry is axis-aligned. Only the first volume
// of a 4-D file is read.
// Throws std::runtime_error naming the file for anything it cannot read. Thread-safe.
#pragma once

#include <filesystem>

#include "enhance/base/Volume.h"

namespace enhance::models {

Volume ReadNifti(const std::filesystem::path& path);

}  // namespace enhance::models
