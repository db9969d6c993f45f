// SPDX-License-Identifier: GPL-3.0-or-later
//
// DICOM objects built attribute by attribute for tests (any pixel format, orientation,
// spacing, modality), parsing of written buffers, and validation with dicom3tools'
// dciodvfy. Not thread-safe across tests that share a SeriesSpec; otherwise stateless.
#pragma once

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "enhance/base/Geometry.h"
#include "enhance/dicom/DicomSeriesReader.h"

namespace enhance::testing {

// A series of single-frame greyscale images on a regular grid, Type 1 and 2 attributes
// of the CT or MR Image IOD filled in so that dciodvfy accepts it.
struct SeriesSpec {
  std::string modality = "CT";  // "CT" or "MR" (picks the SOP class and IOD attributes)
  std::string photometric = "MONOCHROME2";
  int bitsAllocated = 16;
  int bitsStored = 12;
  int highBit = -1;            // -1: bitsStored - 1
  bool setUnusedBits = false;  // fills the bits outside BitsStored with ones (overlay garbage)
  bool isSigned = false;
  bool writeRescale = true;  // RescaleSlope/Intercept/Type (always for CT)
  double slope = 1.0;
  double intercept = -1024.0;
  std::optional<int32_t> paddingValue;
  int64_t rows = 8;
  int64_t columns = 6;
  int64_t slices = 3;
  Geometry geometry;  // slicePositions filled from firstPosition and sliceSpacing when empty
  Vec3 firstPosition{-100.0, -80.0, 20.0};
  // Stored value of voxel (slice, row, column); default: a ramp that fits 12 bits.
  std::function<int32_t(int64_t, int64_t, int64_t)> stored;
  // Applied to each slice's dataset last: override or delete attributes.
  std::function<void(DcmDataset&, int64_t slice)> edit;
  std::string studyUid = "1.2.826.0.1.3680043.10.1011.1";
  std::string seriesUid = "1.2.826.0.1.3680043.10.1011.2";
  std::string frameOfReferenceUid = "1.2.826.0.1.3680043.10.1011.3";
};

// Geometry helper: slice positions of `spec`, from the explicit list or the regular grid.
std::vector<Vec3> SlicePositions(const SeriesSpec& spec);

// One Part 10 file per slice, instance IDs "s1", "s2", ...
std::vector<EncodedInstance> BuildSeries(const SeriesSpec& spec);

// The stored values BuildSeries writes, decoded with slope/intercept as a reader should.
double ExpectedValue(const SeriesSpec& spec, int64_t slice, int64_t row, int64_t column);

std::unique_ptr<DcmFileFormat> ParseDicom(const std::string& bytes);

// Wraps files as encoded instances named prefix + index.
std::vector<EncodedInstance> AsInstances(const std::vector<std::string>& files,
                                         const std::string& prefix = "d");

// The lines dciodvfy prints for one object, split into errors and warnings. Errors that
// only show that dciodvfy's 2022 dictionary lacks a newer standard attribute (Synthetic
// Data) are kept apart.
struct DciodvfyReport {
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
  std::vector<std::string> dictionaryGaps;
};
DciodvfyReport RunDciodvfy(const std::string& bytes);

// Adds a test failure listing dciodvfy's error lines for any file that has some. With
// ENHANCE_SHOW_DCIODVFY_WARNINGS set it prints the warnings; with ENHANCE_DCIODVFY_KEEP_DIR
// set to a directory it keeps the files there for inspection.
void ExpectDciodvfyAccepts(const std::vector<std::string>& files, const std::string& what);

}  // namespace enhance::testing
