// SPDX-License-Identifier: GPL-3.0-or-later
#include "DerivedGeometry.h"

#include <dcmtk/dcmdata/dcdeftag.h>

#include <cmath>

#include "DicomUtil.h"
#include "enhance/base/Error.h"

namespace enhance {
namespace {

constexpr double kOrientationTolerance = 1e-3;
// An output slice within this fraction of the source spacing lies on a source slice.
constexpr double kOnSliceFraction = 0.01;
constexpr int64_t kMaxDicomMatrix = 65535;  // Rows and Columns are US
// Geometry computed in double carries rounding noise from the source's decimal strings;
// 12 significant digits keep nanometre precision and write 1.25, not 1.2499999999998.
constexpr int kGeometryDigits = 12;

std::string Length(double value) { return FormatDecimal(value, kGeometryDigits); }

[[noreturn]] void Inconsistent(const DecodedSeries& source, const std::string& what) {
  throw Error(ErrorKind::kInternal, source.description + ": the model's output " + what +
                                        "; this is a fault in the model, report it");
}

void CheckResampledGeometry(const DecodedSeries& source, const Volume& output) {
  const Geometry& in = source.volume.geometry;
  const Geometry& out = output.geometry;
  if (out.slicePositions.size() != static_cast<size_t>(output.slices) || output.slices < 1) {
    Inconsistent(source, "has " + std::to_string(output.slices) + " slices but " +
                             std::to_string(out.slicePositions.size()) + " slice positions");
  }
  if (output.rows < 1 || output.columns < 1 || output.rows > kMaxDicomMatrix ||
      output.columns > kMaxDicomMatrix) {
    Inconsistent(source, "size " + std::to_string(output.rows) + "x" +
                             std::to_string(output.columns) + " cannot be stored in DICOM");
  }
  if (!(out.rowSpacing > 0) || !(out.columnSpacing > 0) || !std::isfinite(out.rowSpacing) ||
      !std::isfinite(out.columnSpacing)) {
    Inconsistent(source, "has no valid pixel spacing");
  }
  if (Norm(out.rowDirection - in.rowDirection) > kOrientationTolerance ||
      Norm(out.columnDirection - in.columnDirection) > kOrientationTolerance) {
    Inconsistent(source, "orientation differs from the source's");
  }
  if (!out.frameOfReferenceUid.empty() && out.frameOfReferenceUid != in.frameOfReferenceUid) {
    Inconsistent(source, "frame of reference differs from the source's");
  }
}

// Source slice(s) that output position `p` lies on or between, along the source normal.
OutputSlice Locate(const Geometry& in, const Vec3& p) {
  const Vec3& n = in.sliceDirection;
  const double d = Dot(p, n);
  const double tolerance = kOnSliceFraction * (in.sliceSpacing > 0 ? in.sliceSpacing : 1.0);
  const size_t count = in.slicePositions.size();
  auto at = [&](size_t j) { return Dot(in.slicePositions[j], n); };
  OutputSlice result;
  size_t nearest = 0;
  for (size_t j = 1; j < count; ++j) {
    if (std::abs(at(j) - d) < std::abs(at(nearest) - d)) nearest = j;
  }
  result.templateIndex = nearest;
  if (std::abs(at(nearest) - d) <= tolerance || count == 1) {
    result.sources = {nearest};
    return result;
  }
  // Strictly between two neighbours, or beyond the first or last slice.
  const size_t other = d > at(nearest) ? nearest + 1 : nearest - (nearest > 0 ? 1 : 0);
  if (other >= count || other == nearest) {
    result.sources = {nearest};
  } else {
    result.sources = {std::min(nearest, other), std::max(nearest, other)};
  }
  return result;
}

void FitSliceLocation(const DecodedSeries& source, OutputPlan& plan) {
  const Geometry& in = source.volume.geometry;
  std::vector<std::pair<double, double>> known;  // (position . normal, SliceLocation)
  for (size_t j = 0; j < source.instances.size(); ++j) {
    DcmDataset& ds = const_cast<DcmDataset&>(*source.instances[j].dataset);
    if (!ds.tagExists(DCM_SliceLocation)) continue;
    known.emplace_back(Dot(in.slicePositions[j], in.sliceDirection),
                       GetDouble(ds, DCM_SliceLocation, 0.0));
  }
  if (known.empty()) return;
  plan.hasSliceLocation = true;
  const auto& [d0, l0] = known.front();
  const auto& [d1, l1] = known.back();
  plan.locationScale = std::abs(d1 - d0) > 1e-6 ? (l1 - l0) / (d1 - d0) : 1.0;
  plan.locationOffset = l0 - plan.locationScale * d0;
}

}  // namespace

std::string FormatVector(const Vec3& v) {
  return Length(v[0]) + "\\" + Length(v[1]) + "\\" + Length(v[2]);
}

OutputPlan PlanOutput(const DecodedSeries& source, const Volume& output) {
  const Volume& input = source.volume;
  OutputPlan plan;
  plan.resampled =
      output.slices != input.slices || output.rows != input.rows || output.columns != input.columns;
  plan.sliceCountChanged = output.slices != input.slices;
  plan.sliceNormal = input.geometry.sliceDirection;
  if (!plan.resampled) {
    for (size_t k = 0; k < source.instances.size(); ++k) plan.slices.push_back({k, {k}});
    return plan;
  }
  CheckResampledGeometry(source, output);
  for (const Vec3& p : output.geometry.slicePositions) {
    plan.slices.push_back(Locate(input.geometry, p));
  }
  FitSliceLocation(source, plan);
  return plan;
}

void WriteImagePlane(DcmItem& ds, const OutputPlan& plan, const Volume& output, int64_t k) {
  const Geometry& g = output.geometry;
  const Vec3& p = g.slicePositions.at(static_cast<size_t>(k));
  // Only what the source stated is restated: a source without a position or spacing does
  // not get one invented from the reader's assumptions.
  if (ds.tagExists(DCM_PixelSpacing)) {
    // Row spacing \ column spacing (PS3.3 10.7.1.3).
    PutString(ds, DCM_PixelSpacing, Length(g.rowSpacing) + "\\" + Length(g.columnSpacing));
  }
  if (ds.tagExists(DCM_ImageOrientationPatient)) {
    PutString(ds, DCM_ImageOrientationPatient,
              FormatVector(g.rowDirection) + "\\" + FormatVector(g.columnDirection));
  }
  if (ds.tagExists(DCM_ImagePositionPatient)) {
    PutString(ds, DCM_ImagePositionPatient, FormatVector(p));
  }
  if (plan.hasSliceLocation) {
    PutString(ds, DCM_SliceLocation,
              Length(plan.locationScale * Dot(p, plan.sliceNormal) + plan.locationOffset));
  } else {
    ds.findAndDeleteElement(DCM_SliceLocation);
  }
  if (g.sliceThickness > 0) PutString(ds, DCM_SliceThickness, Length(g.sliceThickness));
  if (plan.sliceCountChanged) {
    PutString(ds, DCM_SpacingBetweenSlices, Length(g.sliceSpacing));
    // Describes the source acquisition's slice count, which no longer applies.
    ds.findAndDeleteElement(DCM_ImagesInAcquisition);
  }
}

}  // namespace enhance
