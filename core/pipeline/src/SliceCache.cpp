// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/pipeline/SliceCache.h"

#include <algorithm>
#include <cstring>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

constexpr size_t kRememberedSeries = 4096;

// FNV-1a, 64 bits, over the slice's bytes: tells apart inputs that differ in any voxel.
uint64_t Digest(const float* values, size_t count) {
  uint64_t hash = 1469598103934665603ull;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values);
  for (size_t i = 0; i < count * sizeof(float); ++i) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

SliceCache::SliceCache(size_t capacityBytes) : capacity_(capacityBytes) {}

std::string SliceCache::Key(const std::string& modelUid, const std::string& sopInstanceUid,
                            const Volume& input, int64_t slice) {
  if (slice < 0 || slice >= input.slices) {
    throw Error(ErrorKind::kInternal, "slice " + std::to_string(slice) + " is outside the volume");
  }
  return Key(modelUid, sopInstanceUid, input.Slice(slice), input.rows, input.columns);
}

std::string SliceCache::Key(const std::string& modelUid, const std::string& sopInstanceUid,
                            const float* values, int64_t rows, int64_t columns) {
  const auto count = static_cast<size_t>(rows * columns);
  return modelUid + "|" + sopInstanceUid + "|" + std::to_string(rows) + "x" +
         std::to_string(columns) + "|" + std::to_string(Digest(values, count));
}

void SliceCache::Put(const std::string& key, std::vector<float> slice) {
  const size_t size = slice.size() * sizeof(float);
  std::lock_guard<std::mutex> lock(mutex_);
  if (const auto found = index_.find(key); found != index_.end()) {
    bytes_ -= found->second->slice.size() * sizeof(float);
    entries_.erase(found->second);
    index_.erase(found);
  }
  if (size > capacity_) return;
  entries_.push_back({key, std::move(slice)});
  index_[key] = std::prev(entries_.end());
  bytes_ += size;
  EvictLocked();
}

std::vector<float> SliceCache::Take(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto found = index_.find(key);
  if (found == index_.end()) return {};
  std::vector<float> slice = std::move(found->second->slice);
  bytes_ -= slice.size() * sizeof(float);
  entries_.erase(found->second);
  index_.erase(found);
  return slice;
}

bool SliceCache::Contains(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return index_.count(key) != 0;
}

void SliceCache::MarkStarted(const std::string& seriesInstanceUid) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (std::find(started_.begin(), started_.end(), seriesInstanceUid) != started_.end()) return;
  started_.push_back(seriesInstanceUid);
  if (started_.size() > kRememberedSeries) started_.pop_front();
}

bool SliceCache::Started(const std::string& seriesInstanceUid) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::find(started_.begin(), started_.end(), seriesInstanceUid) != started_.end();
}

size_t SliceCache::Bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

size_t SliceCache::Count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

void SliceCache::EvictLocked() {
  while (bytes_ > capacity_ && !entries_.empty()) {
    bytes_ -= entries_.front().slice.size() * sizeof(float);
    index_.erase(entries_.front().key);
    entries_.pop_front();
  }
}

}  // namespace enhance
