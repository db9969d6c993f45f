// SPDX-License-Identifier: GPL-3.0-or-later
//
// Geometry of a derived series whose grid may differ from its source (super-resolution):
// which source slices each output slice comes from, and the Image Plane attributes of an
// output slice. Internal to core/, used by DerivedSeriesWriter. Stateless; thread-safe.
#pragma once

#include <dcmtk/dcmdata/dcitem.h>

#include <cstdint>
#include <vector>

#include "enhance/base/Volume.h"
#include "enhance/dicom/DicomSeriesReader.h"

namespace enhance {

struct OutputSlice {
  size_t templateIndex = 0;     // the nearest source slice: its attributes are inherited
  std::vector<size_t> sources;  // the source slice it lies on, or the two it lies between
};

struct OutputPlan {
  bool resampled = false;  // the output grid differs from the source grid (another size)
  bool sliceCountChanged = false;
  std::vector<OutputSlice> slices;  // one per output slice
  // SliceLocation = scale x (position . slice normal) + offset, fitted on the source so
  // that output slices follow the scanner's convention; absent when the source has none.
  Vec3 sliceNormal{0, 0, 1};  // the source's
  bool hasSliceLocation = false;
  double locationScale = 1.0;
  double locationOffset = 0.0;
};

// Maps each output slice to source slices. Output of the source's size maps slice k to
// slice k. Resampled output must have one position per slice, the source's orientation
// and frame of reference, and a size DICOM can hold; otherwise throws Error(kInternal),
// because the model that produced it is inconsistent.
OutputPlan PlanOutput(const DecodedSeries& source, const Volume& output);

// Writes the Image Plane attributes of output slice `k` from output.geometry:
// PixelSpacing, ImageOrientationPatient and ImagePositionPatient where `ds` (inherited
// from the source) has them, SliceLocation in the source's convention (removed when the
// source has none), SliceThickness when known, and SpacingBetweenSlices when the slice
// count changed.
void WriteImagePlane(DcmItem& ds, const OutputPlan& plan, const Volume& output, int64_t k);

// "x\y\z" in decimal strings.
std::string FormatVector(const Vec3& v);

}  // namespace enhance
