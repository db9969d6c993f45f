// SPDX-License-Identifier: GPL-3.0-or-later
//
// A bounded cache of values built on first use, which forgets the least recently used entry
// when it is full: what a long-running node keeps per weight tensor and input shape (the
// prepared oneDNN convolutions, OneDnnConvolution.h), so that the entries of the models and
// shapes in use stay however many other shapes come and go, and memory stays bounded.
//
// Thread-safety: Get() and Size() may be called from several threads at once (a mutex guards
// the entries). `make` runs outside the lock, so two threads that miss the same key at once
// may both build its value; the first stored is kept and returned to both. Values are shared:
// an entry forgotten while a caller still holds its value stays alive until released.
#pragma once

#include <cstddef>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>

namespace enhance {

template <typename Key, typename Value>
class LruCache {
 public:
  // Throws std::invalid_argument for a capacity of 0.
  explicit LruCache(size_t capacity) : capacity_(capacity) {
    if (capacity == 0) throw std::invalid_argument("LruCache: the capacity must be at least 1");
  }
  LruCache(const LruCache&) = delete;
  LruCache& operator=(const LruCache&) = delete;

  // The value of `key`, built by `make()` (a std::shared_ptr<Value>) when the cache does not
  // hold it; the entry becomes the most recently used. An exception from `make` leaves the
  // cache as it was.
  template <typename Make>
  std::shared_ptr<Value> Get(const Key& key, Make make) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto found = entries_.find(key);
      if (found != entries_.end()) return Touch(found);
    }
    std::shared_ptr<Value> value = make();
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto stored = entries_.find(key);
    if (stored != entries_.end()) return Touch(stored);  // another thread stored it meanwhile
    recency_.push_front(key);
    try {
      entries_.emplace(key, Entry{value, recency_.begin()});
    } catch (...) {
      recency_.pop_front();
      throw;
    }
    while (entries_.size() > capacity_) {
      entries_.erase(recency_.back());
      recency_.pop_back();
    }
    return value;
  }

  size_t Size() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

  size_t Capacity() const { return capacity_; }

 private:
  // The keys, most recently used first.
  using Recency = std::list<Key>;
  struct Entry {
    std::shared_ptr<Value> value;
    typename Recency::iterator use;  // the key's place in recency_
  };
  using Entries = std::map<Key, Entry>;

  std::shared_ptr<Value> Touch(typename Entries::iterator entry) {
    recency_.splice(recency_.begin(), recency_, entry->second.use);
    return entry->second.value;
  }

  const size_t capacity_;
  mutable std::mutex mutex_;
  Entries entries_;
  Recency recency_;
};

}  // namespace enhance
