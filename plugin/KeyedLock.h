// SPDX-License-Identifier: GPL-3.0-or-later
//
// Mutual exclusion by name: at most one holder per key at a time, any number of keys at
// once. The plugin holds the derived series' UID while a job checks, makes and stores
// that series, so that two jobs for the same request (a rule and a REST call, a saved job
// and a re-routed series after a restart) never store or delete it at the same time: the
// second waits and then finds the series complete.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>

namespace enhance::plugin {

class KeyedLock {
 public:
  // Waits until no one holds `key`, then holds it. While waiting, `cancel` is polled
  // every quarter of a second; when it is set, throws Error(kCancelled). Returns whether
  // the caller had to wait.
  bool Acquire(const std::string& key, const std::atomic<bool>* cancel = nullptr);
  void Release(const std::string& key);
  bool IsHeld(const std::string& key) const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable released_;
  std::set<std::string> held_;
};

// Holds a key of a KeyedLock for its lifetime.
class KeyedLockGuard {
 public:
  KeyedLockGuard(KeyedLock& lock, std::string key, const std::atomic<bool>* cancel = nullptr)
      : lock_(lock), key_(std::move(key)), waited_(lock_.Acquire(key_, cancel)) {}
  ~KeyedLockGuard() { lock_.Release(key_); }
  KeyedLockGuard(const KeyedLockGuard&) = delete;
  KeyedLockGuard& operator=(const KeyedLockGuard&) = delete;
  bool waited() const { return waited_; }

 private:
  KeyedLock& lock_;
  std::string key_;
  bool waited_;
};

}  // namespace enhance::plugin
