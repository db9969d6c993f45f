// SPDX-License-Identifier: GPL-3.0-or-later
//
// Exact order statistics (k-th smallest values, percentiles) of float data, without sorting
// it or changing it. They give exactly the values std::nth_element would place at a rank.
// From 4096 values on, an evenly spaced sample of 2048 bounds the rank first: its order
// statistics a few standard deviations either side of the rank's place give a bracket that
// holds the rank but a few hundredths of the values (or less), which one pass counts below
// and copies (as Floyd and Rivest's SELECT). Rank k among those copies, or among all the
// values when the sample misses it, comes from radix selection: each value's bits, as an
// unsigned key in the floats' order, are counted by their leading 11 bits, only the keys of
// the digit that holds the rank are kept, and so on for the next digits. Percentile
// normalisation takes three of them per volume, and a domain check's every scored slice four.
//
// Functions of their arguments only: thread-safe.
#pragma once

#include <cstddef>
#include <utility>

namespace enhance {

// The values of ranks k and k + 1 (0-based, ascending) among values[0, count): the value
// std::nth_element would place at k, and the least of those it would place after it (the
// same value again when k is the last rank). With a NaN among the values, the result is
// unspecified, as std::nth_element's is (a NaN may be taken as the least or greatest value,
// or as std::nth_element takes it), but the call returns. Throws std::out_of_range when
// k >= count.
std::pair<float, float> KthSmallestPair(const float* values, size_t count, size_t k);

// The value of rank k alone.
float KthSmallest(const float* values, size_t count, size_t k);

// The percentile (0-100) with linear interpolation between ranks, as numpy's default: rank
// position percent / 100 * (count - 1). 0 for no values.
double Percentile(const float* values, size_t count, double percent);

}  // namespace enhance
