// SPDX-License-Identifier: GPL-3.0-or-later
//
// Results of single slices computed ahead of their series' job, while the series is
// still arriving (the "early start"). When the series becomes stable, its job takes the
// slices found here and runs the model only on the others, so that little is left but
// the slices that arrived last.
//
// A result is keyed by the model's UID, the instance's SOPInstanceUID and a digest of
// the decoded input slice, so it is only ever reused for exactly the input it was
// computed from. The cache is bounded in bytes; the least recently stored results are
// dropped first (a dropped result is simply computed again by the job).
//
// Only models whose output slices depend on their own input slice alone can be served
// this way (SlicesAreIndependent in ModelSpec.h).
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance {

class SliceCache {
 public:
  explicit SliceCache(size_t capacityBytes);
  SliceCache(const SliceCache&) = delete;
  SliceCache& operator=(const SliceCache&) = delete;

  // The key of slice `slice` of `input` (decoded, in physical units) for a model.
  static std::string Key(const std::string& modelUid, const std::string& sopInstanceUid,
                         const Volume& input, int64_t slice);
  // The same key from the slice's values themselves (rows x columns).
  static std::string Key(const std::string& modelUid, const std::string& sopInstanceUid,
                         const float* values, int64_t rows, int64_t columns);

  // Stores one output slice; drops the oldest results beyond the capacity. A result
  // larger than the capacity is not kept.
  void Put(const std::string& key, std::vector<float> slice);
  // Removes and returns the result for `key`, or an empty vector.
  std::vector<float> Take(const std::string& key);
  bool Contains(const std::string& key) const;

  // A series whose job has started: computing its slices ahead is no longer useful.
  // Remembers the last 4096 series.
  void MarkStarted(const std::string& seriesInstanceUid);
  bool Started(const std::string& seriesInstanceUid) const;

  size_t Bytes() const;
  size_t Count() const;
  size_t capacityBytes() const { return capacity_; }

 private:
  struct Entry {
    std::string key;
    std::vector<float> slice;
  };
  void EvictLocked();

  const size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // oldest first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t bytes_ = 0;
  std::list<std::string> started_;
};

}  // namespace enhance
