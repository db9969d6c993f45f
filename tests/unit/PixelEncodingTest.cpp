// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/dicom/PixelEncoding.h"

#include <gtest/gtest.h>

#include <cmath>

namespace enhance {
namespace {

double Decode(uint16_t stored, const PixelEncoding& e) {
  const double value = e.isSigned ? static_cast<int16_t>(stored) : stored;
  return value * e.slope + e.intercept;
}

}  // namespace

TEST(PixelEncoding, KeepsTheUsualCtEncodingWhenTheRangeFits) {
  const PixelEncoding e = ChooseEncoding(-1024, 3071, 1.0, -1024.0);
  EXPECT_EQ(e.slope, 1.0);
  EXPECT_EQ(e.intercept, -1024.0);
  EXPECT_FALSE(e.isSigned);
}

TEST(PixelEncoding, WidensWhenValuesFallBelowTheIntercept) {
  // A filter may produce values below -1024 HU at the edge of the field of view.
  const PixelEncoding e = ChooseEncoding(-2000, 3000, 1.0, -1024.0);
  const float values[] = {-2000.0f, 3000.0f};
  const auto stored = EncodePixels(values, 2, e);
  EXPECT_NEAR(Decode(stored[0], e), -2000.0, 1e-9);
  EXPECT_NEAR(Decode(stored[1], e), 3000.0, 1e-9);
}

TEST(PixelEncoding, HugeRangeGetsAFinerSlopeWithoutClipping) {
  const PixelEncoding e = ChooseEncoding(-1e6, 1e6, 1.0, 0.0);
  const float values[] = {-1e6f, 0.0f, 1e6f};
  const auto stored = EncodePixels(values, 3, e);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(Decode(stored[i], e), values[i], e.slope);
}

TEST(PixelEncoding, RoundsToNearestInsteadOfTruncating) {
  const PixelEncoding e{1.0, 0.0, true};
  const float values[] = {1.6f, -1.6f, 2.4f};
  const auto stored = EncodePixels(values, 3, e);
  EXPECT_EQ(static_cast<int16_t>(stored[0]), 2);
  EXPECT_EQ(static_cast<int16_t>(stored[1]), -2);
  EXPECT_EQ(static_cast<int16_t>(stored[2]), 2);
}

TEST(PixelEncoding, NonFiniteValuesDoNotPoisonTheImage) {
  const PixelEncoding e{1.0, 0.0, true};
  const float values[] = {NAN, INFINITY, -INFINITY};
  const auto stored = EncodePixels(values, 3, e);
  EXPECT_EQ(static_cast<int16_t>(stored[0]), 0);
  EXPECT_EQ(static_cast<int16_t>(stored[1]), 0);
  EXPECT_EQ(static_cast<int16_t>(stored[2]), 0);
}

}  // namespace enhance
