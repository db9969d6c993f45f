// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/Geometry.h"

#include <gtest/gtest.h>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

// An oblique stack with non-square pixels: rotated about two axes.
Geometry ObliqueGeometry(size_t slices) {
  Geometry g;
  g.rowDirection = Normalized({0.8, 0.6, 0.0});
  g.columnDirection = Normalized(Cross({0.1, -0.2, 0.97}, g.rowDirection));
  g.columnDirection = Normalized(Cross(Cross(g.rowDirection, g.columnDirection), g.rowDirection));
  g.sliceDirection = Normalized(Cross(g.rowDirection, g.columnDirection));
  g.rowSpacing = 0.7;
  g.columnSpacing = 1.3;
  g.sliceSpacing = 2.5;
  g.sliceThickness = 3.0;
  for (size_t k = 0; k < slices; ++k) {
    g.slicePositions.push_back(Vec3{-120.5, 40.25, 7.0} +
                               (2.5 * static_cast<double>(k)) * g.sliceDirection);
  }
  return g;
}

void ExpectNear(const Vec3& a, const Vec3& b, double tolerance, const std::string& what) {
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(a[i], b[i], tolerance) << what << " axis " << i;
}

}  // namespace

TEST(Geometry, InPlaneUpsamplingKeepsEveryInputPixelCentreAsTheMeanOfItsSubPixels) {
  for (int factor : {2, 3, 4}) {
    SCOPED_TRACE(factor);
    const Geometry in = ObliqueGeometry(3);
    const Geometry out = UpsampleInPlane(in, factor);
    EXPECT_DOUBLE_EQ(out.rowSpacing, in.rowSpacing / factor);
    EXPECT_DOUBLE_EQ(out.columnSpacing, in.columnSpacing / factor);
    EXPECT_EQ(out.slicePositions.size(), in.slicePositions.size());
    EXPECT_EQ(out.sliceThickness, in.sliceThickness);
    const int64_t rows = 5;
    const int64_t columns = 4;
    for (int64_t s = 0; s < 3; ++s) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < columns; ++c) {
          Vec3 sum{0, 0, 0};
          for (int i = 0; i < factor; ++i) {
            for (int j = 0; j < factor; ++j) {
              sum = sum + out.VoxelCentre(s, static_cast<double>(r * factor + i),
                                          static_cast<double>(c * factor + j));
            }
          }
          const Vec3 mean = (1.0 / (factor * factor)) * sum;
          ExpectNear(mean, in.VoxelCentre(s, static_cast<double>(r), static_cast<double>(c)), 1e-9,
                     "pixel centre");
        }
      }
      // The outer edges of the field of view do not move: first voxel's corner.
      const Vec3 inCorner = in.slicePositions[static_cast<size_t>(s)] -
                            (in.columnSpacing / 2) * in.rowDirection -
                            (in.rowSpacing / 2) * in.columnDirection;
      const Vec3 outCorner = out.slicePositions[static_cast<size_t>(s)] -
                             (out.columnSpacing / 2) * out.rowDirection -
                             (out.rowSpacing / 2) * out.columnDirection;
      ExpectNear(inCorner, outCorner, 1e-9, "field of view corner");
    }
  }
}

TEST(Geometry, ThroughPlaneUpsamplingInsertsSlicesAndKeepsFirstAndLast) {
  const Geometry in = ObliqueGeometry(4);
  const Geometry out = UpsampleThroughPlane(in, 2);
  ASSERT_EQ(out.slicePositions.size(), 7u);  // 2N - 1
  EXPECT_DOUBLE_EQ(out.sliceSpacing, 1.25);
  EXPECT_DOUBLE_EQ(out.sliceThickness, 1.5);
  ExpectNear(out.slicePositions.front(), in.slicePositions.front(), 0.0, "first");
  ExpectNear(out.slicePositions.back(), in.slicePositions.back(), 1e-12, "last");
  for (size_t k = 0; k < 4; ++k) {
    ExpectNear(out.slicePositions[2 * k], in.slicePositions[k], 1e-12, "source slice");
  }
  for (size_t k = 1; k < out.slicePositions.size(); ++k) {
    const Vec3 step = out.slicePositions[k] - out.slicePositions[k - 1];
    EXPECT_NEAR(Dot(step, in.sliceDirection), 1.25, 1e-12);
    EXPECT_NEAR(Norm(step), 1.25, 1e-12);  // along the normal only
  }
  const Geometry three = UpsampleThroughPlane(in, 3);
  EXPECT_EQ(three.slicePositions.size(), 10u);  // (N - 1) x 3 + 1
}

TEST(Geometry, ThroughPlaneUpsamplingFollowsIrregularPositions) {
  Geometry in = ObliqueGeometry(3);
  in.slicePositions[2] = in.slicePositions[1] + 5.0 * in.sliceDirection;  // a gap
  const Geometry out = UpsampleThroughPlane(in, 2);
  ASSERT_EQ(out.slicePositions.size(), 5u);
  ExpectNear(out.slicePositions[3], in.slicePositions[1] + 2.5 * in.sliceDirection, 1e-12,
             "middle of the gap");
}

TEST(Geometry, FactorOneIsTheIdentityAndBadFactorsAreRefused) {
  const Geometry in = ObliqueGeometry(2);
  const Geometry same = UpsampleThroughPlane(UpsampleInPlane(in, 1), 1);
  ASSERT_EQ(same.slicePositions.size(), 2u);
  ExpectNear(same.slicePositions[1], in.slicePositions[1], 0.0, "identity");
  EXPECT_THROW(UpsampleInPlane(in, 0), Error);
  EXPECT_THROW(UpsampleThroughPlane(in, -2), Error);
}

}  // namespace enhance
