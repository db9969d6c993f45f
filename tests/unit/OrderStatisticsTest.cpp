// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/OrderStatistics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace enhance {
namespace {

// Ranks k and k + 1 as std::nth_element places them.
std::pair<float, float> Reference(std::vector<float> values, size_t k) {
  std::nth_element(values.begin(), values.begin() + static_cast<long>(k), values.end());
  const float first = values[k];
  if (k + 1 == values.size()) return {first, first};
  return {first, *std::min_element(values.begin() + static_cast<long>(k) + 1, values.end())};
}

void ExpectSameRanks(const std::vector<float>& values, size_t k, const std::string& what) {
  const auto expected = Reference(values, k);
  const auto actual = KthSmallestPair(values.data(), values.size(), k);
  // == : -0 and +0 are the same rank.
  EXPECT_TRUE(actual.first == expected.first)
      << what << ", rank " << k << " of " << values.size() << ": " << actual.first << " against "
      << expected.first;
  EXPECT_TRUE(actual.second == expected.second)
      << what << ", rank " << k + 1 << " of " << values.size() << ": " << actual.second
      << " against " << expected.second;
}

// Ranks worth checking: both ends, the middle, around the selection's bins, and random ones.
std::vector<size_t> RanksOf(size_t count, std::mt19937& generator) {
  std::vector<size_t> ranks{0,
                            1,
                            count / 2,
                            (count - 1) / 2,
                            count - 2,
                            count - 1,
                            static_cast<size_t>(0.995 * static_cast<double>(count - 1))};
  std::uniform_int_distribution<size_t> any(0, count - 1);
  for (int i = 0; i < 8; ++i) ranks.push_back(any(generator));
  ranks.erase(std::remove_if(ranks.begin(), ranks.end(), [count](size_t k) { return k >= count; }),
              ranks.end());
  return ranks;
}

TEST(OrderStatistics, SameRanksAsNthElementOnManyKindsOfData) {
  std::mt19937 generator(20261205);
  std::gamma_distribution<float> skewed(2.0f, 100.0f);
  std::normal_distribution<float> centred(0.0f, 1.0f);
  std::uniform_int_distribution<int> fewLevels(0, 9);
  std::uniform_real_distribution<float> exponent(-30.0f, 30.0f);
  for (size_t count : {2, 3, 255, 256, 257, 1000, 39277, 100000}) {
    for (int kind = 0; kind < 6; ++kind) {
      std::vector<float> values(count);
      for (float& x : values) {
        switch (kind) {
          case 0:
            x = skewed(generator);
            break;  // an MR slice's intensities
          case 1:
            x = centred(generator);
            break;  // both signs
          case 2:
            x = static_cast<float>(fewLevels(generator));
            break;  // many ties
          case 3:
            x = std::pow(10.0f, exponent(generator));
            break;  // a huge range
          case 4:
            x = centred(generator) * 1e-39f;
            break;  // subnormal
          default:
            x = fewLevels(generator) < 5 ? -0.0f : 0.0f;  // both zeros
        }
      }
      for (size_t k : RanksOf(count, generator)) {
        ExpectSameRanks(values, k, "kind " + std::to_string(kind));
      }
    }
  }
}

// Every rank of ordered, reversed, tied and shuffled values, just past the count from which a
// sample bounds rank k first: ranks at each edge of the sample's bracket, rank k the last of
// it (rank k + 1 found beyond it), and ranks outside it.
TEST(OrderStatistics, EveryRankWhereASampleBoundsTheSelection) {
  const size_t count = 5000;
  std::mt19937 generator(5);
  for (int kind = 0; kind < 4; ++kind) {
    std::vector<float> values(count);
    for (size_t i = 0; i < count; ++i) {
      const auto v = static_cast<float>(kind == 1 ? count - i : kind == 2 ? i / 3 : i);
      values[i] = v - 2000.0f;
    }
    if (kind == 3) std::shuffle(values.begin(), values.end(), generator);
    std::vector<float> sorted = values;
    std::sort(sorted.begin(), sorted.end());
    for (size_t k = 0; k < count; ++k) {
      const auto actual = KthSmallestPair(values.data(), count, k);
      const float next = k + 1 < count ? sorted[k + 1] : sorted[k];
      ASSERT_EQ(actual, std::make_pair(sorted[k], next)) << "kind " << kind << ", rank " << k;
    }
  }
}

// A sample that misses what lies between its positions: the values the evenly spaced sample
// reads (OrderStatistics.cpp: 2048 of them, the j-th at (2j + 1) count / 4096) are all 0 and
// every other one is above, so rank k is outside its bracket.
TEST(OrderStatistics, AnUnrepresentativeSampleStillGivesTheRank) {
  const size_t count = 100000, sample = 2048;
  std::vector<float> values(count);
  std::mt19937 generator(6);
  std::uniform_real_distribution<float> above(1.0f, 2.0f);
  for (float& x : values) x = above(generator);
  for (size_t j = 0; j < sample; ++j) values[(2 * j + 1) * count / (2 * sample)] = 0.0f;
  for (size_t k : {size_t{0}, size_t{1500}, size_t{2500}, size_t{50000}, size_t{99499}}) {
    ExpectSameRanks(values, k, "the sample's values 0");
  }
}

TEST(OrderStatistics, OneValueAndAllEqual) {
  const std::vector<float> one{7.5f};
  EXPECT_EQ(KthSmallestPair(one.data(), 1, 0), std::make_pair(7.5f, 7.5f));
  const std::vector<float> same(5000, -3.0f);
  EXPECT_EQ(KthSmallestPair(same.data(), same.size(), 0), std::make_pair(-3.0f, -3.0f));
  EXPECT_EQ(KthSmallestPair(same.data(), same.size(), 4999), std::make_pair(-3.0f, -3.0f));
}

TEST(OrderStatistics, RankKPlusOneInTheNextDigit) {
  // 1000 values at 1.0 and one far above: rank 999's successor is in another leading digit.
  std::vector<float> values(1000, 1.0f);
  values.push_back(1e20f);
  EXPECT_EQ(KthSmallestPair(values.data(), values.size(), 999), std::make_pair(1.0f, 1e20f));
  // Successor in the same leading digit but a later second digit.
  values.back() = 1.0001f;
  EXPECT_EQ(KthSmallestPair(values.data(), values.size(), 999), std::make_pair(1.0f, 1.0001f));
  values.back() = std::nextafter(1.0f, 2.0f);
  EXPECT_EQ(KthSmallestPair(values.data(), values.size(), 999),
            std::make_pair(1.0f, std::nextafter(1.0f, 2.0f)));
}

TEST(OrderStatistics, InfinitiesAndNaNAreTakenAsNthElementTakesThem) {
  std::vector<float> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  values[10] = std::numeric_limits<float>::infinity();
  values[20] = -std::numeric_limits<float>::infinity();
  ExpectSameRanks(values, 0, "with infinities");
  ExpectSameRanks(values, 999, "with infinities");
  ExpectSameRanks(values, 500, "with infinities");
  values[30] = std::numeric_limits<float>::quiet_NaN();
  // Unspecified as std::nth_element's, but the call returns.
  EXPECT_NO_THROW(KthSmallestPair(values.data(), values.size(), 500));
  // Where a sample bounds the rank first: a NaN that the sample reads, and one it does not.
  std::vector<float> many(10000);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<float>(i % 977);
  // (625 values, the j-th at (2j + 1) 10000 / 1250: 8, 24, ...)
  for (size_t at : {size_t{8}, size_t{5001}}) {
    std::vector<float> withNan = many;
    withNan[at] = std::numeric_limits<float>::quiet_NaN();
    for (size_t k : {size_t{0}, size_t{5000}, size_t{9950}, size_t{9999}}) {
      EXPECT_NO_THROW(KthSmallestPair(withNan.data(), withNan.size(), k));
    }
  }
}

TEST(OrderStatistics, PercentileInterpolatesBetweenRanks) {
  std::vector<float> values;
  for (int i = 0; i < 1001; ++i) values.push_back(static_cast<float>(1000 - i));
  EXPECT_DOUBLE_EQ(Percentile(values.data(), values.size(), 0.0), 0.0);
  EXPECT_DOUBLE_EQ(Percentile(values.data(), values.size(), 100.0), 1000.0);
  EXPECT_DOUBLE_EQ(Percentile(values.data(), values.size(), 99.95), 999.5);
  EXPECT_DOUBLE_EQ(Percentile(values.data(), values.size(), 25.0), 250.0);
  EXPECT_DOUBLE_EQ(Percentile(values.data(), 0, 50.0), 0.0);
  EXPECT_THROW(KthSmallestPair(values.data(), values.size(), values.size()), std::out_of_range);
}

}  // namespace
}  // namespace enhance
