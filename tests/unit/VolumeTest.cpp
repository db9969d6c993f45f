// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/Volume.h"

#include <gtest/gtest.h>

#include <vector>

namespace enhance {
namespace {

TEST(Volume, BlockMeansAverageWholeBlocksAndLeaveTheRemainderOut) {
  // 7 x 5 values r * 10 + c: the 3x3 blocks' means are those of their centres.
  std::vector<float> slice;
  for (int r = 0; r < 7; ++r)
    for (int c = 0; c < 5; ++c) slice.push_back(static_cast<float>(r * 10 + c));
  std::vector<float> means(2, -1.0f);
  BlockMeans(slice.data(), 7, 5, 3, means.data());
  EXPECT_FLOAT_EQ(means[0], 11.0f);
  EXPECT_FLOAT_EQ(means[1], 41.0f);  // rows 3-5, columns 0-2; row 6 and columns 3-4 left out
  std::vector<float> same(slice.size());
  BlockMeans(slice.data(), 7, 5, 1, same.data());
  EXPECT_EQ(same, slice);
  // 2x2 blocks, summed in row-major order, times a quarter.
  const std::vector<float> two{1.0f, 2.0f, 3.0f, 4.0f, 1e8f, 1.0f, -1e8f, 1.0f};
  std::vector<float> halves(2);
  BlockMeans(two.data(), 2, 4, 2, halves.data());
  EXPECT_FLOAT_EQ(halves[0], 0.25f * (1.0f + 2.0f + 1e8f + 1.0f));
  EXPECT_EQ(halves[1], 0.25f * (((3.0f + 4.0f) + -1e8f) + 1.0f));
  // Fewer rows than a block: no mean.
  std::vector<float> none(1, -1.0f);
  BlockMeans(slice.data(), 1, 5, 2, none.data());
  EXPECT_EQ(none[0], -1.0f);
}

}  // namespace
}  // namespace enhance
