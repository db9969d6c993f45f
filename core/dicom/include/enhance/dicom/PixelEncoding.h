// SPDX-License-Identifier: GPL-3.0-or-later
//
// Physical values <-> stored integer pixel values (DICOM Modality LUT: value =
// stored * RescaleSlope + RescaleIntercept). Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace enhance {

struct PixelEncoding {
  double slope = 1.0;
  double intercept = 0.0;
  bool isSigned = false;  // PixelRepresentation 1
  // Always 16 bits allocated and stored in this version.
};

// Chooses an encoding that represents [minValue, maxValue] without clipping. Keeps
// the preferred slope and intercept when the range fits 16 bits with them (so a CT
// series keeps its usual slope 1, intercept -1024); otherwise picks the finest slope
// that fits.
PixelEncoding ChooseEncoding(double minValue, double maxValue, double preferredSlope,
                             double preferredIntercept);

// Whether every value in [minValue, maxValue] is stored without clipping.
bool EncodingHolds(const PixelEncoding& encoding, double minValue, double maxValue);

// Rounds to the nearest stored value (never truncates) and clamps to the 16-bit range.
// The result holds int16 or uint16 bit patterns according to encoding.isSigned.
std::vector<uint16_t> EncodePixels(const float* values, int64_t count,
                                   const PixelEncoding& encoding);

}  // namespace enhance
