// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/OrderStatistics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

namespace enhance {
namespace {

// A float's bits as an unsigned key in the floats' order: negative values' bits reversed,
// positive values' sign bit set. (-0 keys just below +0, which std::nth_element takes as
// equal: either is a right answer and they compute alike.)
uint32_t Key(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

float FromKey(uint32_t key) {
  const uint32_t u = (key & 0x80000000u) != 0 ? (key & 0x7fffffffu) : ~key;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// The keys' digits, most significant first: 11, 11 and 10 bits.
constexpr std::array<int, 3> kShift{21, 10, 0};
constexpr std::array<uint32_t, 3> kDigits{2048, 2048, 1024};
// The first digit of the keys of -inf and below (-NaN), and of +inf and above (+NaN).
constexpr uint32_t kLowestFinite = 0x007fffffu >> 21;   // -inf
constexpr uint32_t kHighestFinite = 0xff800000u >> 21;  // +inf
// Fewer values than this are selected by std::nth_element on a copy.
constexpr size_t kFewValues = 256;
// From this many values on, a sample bounds rank k first (BySample); of at most kSample.
constexpr size_t kSampledValues = 4096;
constexpr size_t kSample = 2048;

std::pair<float, float> ByNthElement(std::vector<float> values, size_t k) {
  std::nth_element(values.begin(), values.begin() + static_cast<long>(k), values.end());
  const float first = values[k];
  if (k + 1 == values.size()) return {first, first};
  return {first, *std::min_element(values.begin() + static_cast<long>(k) + 1, values.end())};
}

// Ranks 0 and 1 in one pass; false when a value is NaN.
bool TwoLeast(const float* values, size_t count, std::pair<float, float>& least) {
  float first = values[0], second = count > 1 ? values[1] : values[0];
  if (second < first) std::swap(first, second);
  bool nan = std::isnan(first) || std::isnan(second);
  for (size_t i = 2; i < count; ++i) {
    const float x = values[i];
    nan = nan || std::isnan(x);
    if (x < second) {
      second = x < first ? first : x;
      first = x < first ? x : first;
    }
  }
  least = {first, second};
  return !nan;
}

// How many of `count` keys (keyOf(i)) have each digit (key >> shift) & mask, into `counts`.
// Two tables, each counting every other key, summed at the end: most of a slice's values
// share a few leading digits, and a run of keys of one digit would otherwise wait on each
// increment of one counter (a quarter to a third faster on a slice's body or residual).
template <typename KeyOf>
void CountDigits(size_t count, int shift, uint32_t mask, KeyOf keyOf,
                 std::vector<uint32_t>& counts) {
  const size_t digits = static_cast<size_t>(mask) + 1;
  counts.assign(2 * digits, 0);
  uint32_t* const t = counts.data();
  size_t i = 0;
  for (; i + 2 <= count; i += 2) {
    ++t[(keyOf(i) >> shift) & mask];
    ++t[digits + ((keyOf(i + 1) >> shift) & mask)];
  }
  for (; i < count; ++i) ++t[(keyOf(i) >> shift) & mask];
  for (size_t d = 0; d < digits; ++d) t[d] += t[digits + d];
  counts.resize(digits);
}

std::pair<float, float> ByRadix(const float* values, size_t count, size_t k);

// Rank k and k + 1 of a few values or many.
std::pair<float, float> Select(const float* values, size_t count, size_t k) {
  return count < kFewValues ? ByNthElement({values, values + count}, k) : ByRadix(values, count, k);
}

// The keys of s evenly spaced values into `sample`: value j is floor((2 j + 1) count / (2 s)),
// stepped to without a division (the numerator is index * 2 s + remainder). False at a NaN.
bool KeysOfSample(const float* values, size_t count, size_t s, uint32_t* sample) {
  const size_t denominator = 2 * s;
  const size_t stride = 2 * count / denominator, extra = 2 * count % denominator;
  size_t index = count / denominator, remainder = count % denominator;
  for (size_t j = 0; j < s; ++j) {
    const float x = values[index];
    if (std::isnan(x)) return false;
    sample[j] = Key(x);
    index += stride;
    remainder += extra;
    if (remainder >= denominator) {
      ++index;
      remainder -= denominator;
    }
  }
  return true;
}

// Appends to `inside` the values whose keys lie in [lowKey, lowKey + width], in their
// order, and returns how many keys are below lowKey. In blocks: one loop without a branch,
// which the compiler vectorises, counts the keys below the bracket and marks those in it;
// the marks are then read 8 at a time, as one word, so that a run of 8 values outside the
// bracket costs one test.
size_t CopyBracket(const float* values, size_t count, uint32_t lowKey, uint32_t width,
                   std::vector<float>& inside) {
  constexpr size_t kBlock = 64;
  size_t below = 0;
  size_t start = 0;
  for (; start + kBlock <= count; start += kBlock) {
    uint8_t in[kBlock];
    uint32_t blockBelow = 0;
    uint8_t any = 0;
    for (size_t j = 0; j < kBlock; ++j) {
      const uint32_t key = Key(values[start + j]);
      blockBelow += static_cast<uint32_t>(key < lowKey);
      in[j] = static_cast<uint8_t>(key - lowKey <= width);
      any |= in[j];
    }
    below += blockBelow;
    if (any == 0) continue;
    for (size_t j = 0; j < kBlock; j += 8) {
      uint64_t marks;
      std::memcpy(&marks, in + j, sizeof marks);
      while (marks != 0) {
        inside.push_back(values[start + j + static_cast<size_t>(__builtin_ctzll(marks)) / 8]);
        marks &= marks - 1;  // each mark is one bit, the lowest of its byte
      }
    }
  }
  for (size_t i = start; i < count; ++i) {
    const uint32_t key = Key(values[i]);
    below += static_cast<size_t>(key < lowKey);
    if (key - lowKey <= width) inside.push_back(values[i]);
  }
  return below;
}

// Selection in a bracket drawn from a sample (as Floyd and Rivest's SELECT): the keys of
// an evenly spaced sample of the values, a few standard deviations of a sample rank either
// side of rank k's place, bound rank k's key; one pass counts the keys below the bracket
// and copies the values in it (CopyBracket), and rank k is selected among the copies. False (radix
// selection then does the work) when rank k falls outside the bracket (an unlucky sample:
// a few in ten thousand) or a NaN is among the sample.
bool BySample(const float* values, size_t count, size_t k, std::pair<float, float>& result) {
  const size_t s = std::min<size_t>(kSample, count / 16);
  std::array<uint32_t, kSample> sample;
  if (!KeysOfSample(values, count, s, sample.data())) return false;
  // Rank k's place in the sample, and the margin either side of it.
  const double q = static_cast<double>(k) / static_cast<double>(count - 1);
  const double place = q * static_cast<double>(s - 1);
  const double margin = 3.5 * std::sqrt(static_cast<double>(s) * q * (1.0 - q)) + 3.0;
  const double lowPlace = std::floor(place - margin), highPlace = std::ceil(place + margin);
  // The bracket [lowKey, lowKey + width], keys included; at the sample's ends, open.
  uint32_t lowKey = 0, highKey = 0xffffffffu;
  uint32_t* const first = sample.data();
  size_t from = 0;
  if (lowPlace > 0) {
    from = static_cast<size_t>(lowPlace);
    std::nth_element(first, first + from, first + s);
    lowKey = first[from];
  }
  if (highPlace < static_cast<double>(s - 1)) {
    const auto at = static_cast<size_t>(highPlace);
    std::nth_element(first + from, first + at, first + s);
    highKey = first[at];
  }
  const uint32_t width = highKey - lowKey;
  const double expected =
      (highPlace - lowPlace + 1.0) / static_cast<double>(s) * static_cast<double>(count);
  std::vector<float> inside;
  inside.reserve(static_cast<size_t>(1.5 * expected) + 16);
  const size_t below = CopyBracket(values, count, lowKey, width, inside);
  const size_t n = inside.size();
  if (k < below || k - below >= n) return false;
  const size_t r = k - below;
  if (r + 1 < n) {
    result = Select(inside.data(), n, r);
    return true;
  }
  // Rank k is the bracket's greatest value; rank k + 1, when there is one, the least after it.
  const float value = Select(inside.data(), n, r).first;
  uint32_t next = 0xffffffffu;
  if (k + 1 < count) {
    for (size_t i = 0; i < count; ++i) {
      const uint32_t key = Key(values[i]);
      if (key > highKey && key < next) next = key;
    }
  }
  result = {value, k + 1 < count ? FromKey(next) : value};
  return true;
}

// Radix selection (the header's comment), for count >= kFewValues.
std::pair<float, float> ByRadix(const float* values, size_t count, size_t k) {
  std::vector<uint32_t> counts;
  const auto valueKey = [values](size_t i) { return Key(values[i]); };
  CountDigits(count, kShift[0], kDigits[0] - 1, valueKey, counts);
  for (uint32_t d = 0; d <= kLowestFinite; ++d) {
    if (counts[d] != 0) return ByNthElement({values, values + count}, k);
  }
  for (uint32_t d = kHighestFinite; d < kDigits[0]; ++d) {
    if (counts[d] != 0) return ByNthElement({values, values + count}, k);
  }

  // Radix selection: keep the keys whose leading digits are those of rank k, one digit at a
  // time. `next` is the least key after the kept ones (when there is one), for rank k + 1
  // when k is the last kept.
  std::vector<uint32_t> keys, kept;
  bool haveNext = false;
  uint32_t next = 0;
  size_t n = count;
  for (size_t level = 0; level < kShift.size(); ++level) {
    const int shift = kShift[level];
    const uint32_t mask = kDigits[level] - 1;
    if (level > 0) {
      const auto keptKey = [&keys](size_t i) { return keys[i]; };
      CountDigits(keys.size(), shift, mask, keptKey, counts);
    }
    uint32_t digit = 0;
    size_t before = 0;
    while (before + counts[digit] <= k) before += counts[digit++];
    k -= before;
    // Rank k + 1 is after this digit's keys: the least key of the next digit that has any.
    const bool lastOfDigit = k + 1 == counts[digit];
    uint32_t nextDigit = digit + 1;
    while (lastOfDigit && nextDigit <= mask && counts[nextDigit] == 0) ++nextDigit;
    // Keys after this digit's here are less than any after the whole set. (A pass of its
    // own: rank k is seldom the last of its digit.)
    if (lastOfDigit && nextDigit <= mask) {
      haveNext = true;
      next = 0xffffffffu;
      const auto lower = [&](uint32_t key) {
        if (((key >> shift) & mask) == nextDigit && key < next) next = key;
      };
      if (level == 0) {
        for (size_t i = 0; i < count; ++i) lower(Key(values[i]));
      } else {
        for (uint32_t key : keys) lower(key);
      }
    }
    kept.clear();
    kept.reserve(counts[digit]);
    const auto take = [&](uint32_t key) {
      if (((key >> shift) & mask) == digit) kept.push_back(key);
    };
    if (level == 0) {
      for (size_t i = 0; i < count; ++i) take(Key(values[i]));
    } else {
      for (uint32_t key : keys) take(key);
    }
    keys.swap(kept);
    n = keys.size();
    if (n < kFewValues && level + 1 < kShift.size()) {
      std::nth_element(keys.begin(), keys.begin() + static_cast<long>(k), keys.end());
      const uint32_t first = keys[k];
      const uint32_t second =
          k + 1 < n ? *std::min_element(keys.begin() + static_cast<long>(k) + 1, keys.end())
                    : (haveNext ? next : first);
      return {FromKey(first), FromKey(second)};
    }
  }
  // Every kept key is the same: rank k's.
  const uint32_t first = keys[k];
  const uint32_t second = k + 1 < n ? first : (haveNext ? next : first);
  return {FromKey(first), FromKey(second)};
}

}  // namespace

std::pair<float, float> KthSmallestPair(const float* values, size_t count, size_t k) {
  if (k >= count) throw std::out_of_range("KthSmallestPair: rank beyond the values");
  if (count < kFewValues) return ByNthElement({values, values + count}, k);
  // The least value (a percentile normalisation's 0%) in one pass.
  std::pair<float, float> least;
  if (k == 0 && TwoLeast(values, count, least)) return least;
  std::pair<float, float> bracketed;
  if (count >= kSampledValues && BySample(values, count, k, bracketed)) return bracketed;
  return ByRadix(values, count, k);
}

float KthSmallest(const float* values, size_t count, size_t k) {
  return KthSmallestPair(values, count, k).first;
}

double Percentile(const float* values, size_t count, double percent) {
  if (count == 0) return 0.0;
  const double position = percent / 100.0 * static_cast<double>(count - 1);
  const auto index = static_cast<size_t>(std::floor(position));
  const auto [lower, upper] = KthSmallestPair(values, count, std::min(index, count - 1));
  if (index + 1 >= count) return lower;
  return static_cast<double>(lower) + (static_cast<double>(upper) - static_cast<double>(lower)) *
                                          (position - static_cast<double>(index));
}

}  // namespace enhance
