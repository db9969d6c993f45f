// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/dicom/PixelEncoding.h"

#include <algorithm>
#include <cmath>

namespace enhance {
bool EncodingHolds(const PixelEncoding& e, double minValue, double maxValue) {
  const double lo = e.isSigned ? -32768.0 : 0.0;
  const double hi = e.isSigned ? 32767.0 : 65535.0;
  const double a = std::round((minValue - e.intercept) / e.slope);
  const double b = std::round((maxValue - e.intercept) / e.slope);
  return a >= lo && b <= hi;
}

PixelEncoding ChooseEncoding(double minValue, double maxValue, double preferredSlope,
                             double preferredIntercept) {
  if (!(minValue <= maxValue)) {  // also catches NaN
    minValue = maxValue = 0.0;
  }
  if (preferredSlope > 0 && std::isfinite(preferredSlope) && std::isfinite(preferredIntercept)) {
    for (bool isSigned : {false, true}) {
      PixelEncoding e{preferredSlope, preferredIntercept, isSigned};
      if (EncodingHolds(e, minValue, maxValue)) return e;
    }
    PixelEncoding e{preferredSlope, 0.0, true};
    if (EncodingHolds(e, minValue, maxValue)) return e;
  }
  // The range does not fit with the preferred slope: spread it over the signed range.
  PixelEncoding e;
  e.isSigned = true;
  const double span = std::max(maxValue - minValue, 1e-6);
  e.slope = span / 65000.0;
  e.intercept = (maxValue + minValue) / 2.0;
  return e;
}

std::vector<uint16_t> EncodePixels(const float* values, int64_t count,
                                   const PixelEncoding& encoding) {
  std::vector<uint16_t> out(static_cast<size_t>(count));
  const double lo = encoding.isSigned ? -32768.0 : 0.0;
  const double hi = encoding.isSigned ? 32767.0 : 65535.0;
  const double inverseSlope = 1.0 / encoding.slope;
  for (int64_t i = 0; i < count; ++i) {
    double stored =
        std::round((static_cast<double>(values[i]) - encoding.intercept) * inverseSlope);
    if (!std::isfinite(stored)) stored = 0.0;
    stored = std::clamp(stored, lo, hi);
    out[static_cast<size_t>(i)] = encoding.isSigned
                                      ? static_cast<uint16_t>(static_cast<int16_t>(stored))
                                      : static_cast<uint16_t>(stored);
  }
  return out;
}

}  // namespace enhance
