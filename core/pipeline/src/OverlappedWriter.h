// SPDX-License-Identifier: GPL-3.0-or-later
//
// Encodes output slices and hands the files over on its own thread while the model
// computes later slices. Internal to core/pipeline (EnhanceSeries).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "enhance/dicom/DerivedSeriesWriter.h"

namespace enhance {

// Encodes output slices and hands the files over on its own thread while the model
// computes later slices: slice k is encoded once the model reports it final (or once
// every slice is, after the run), in instance order. It stops, without handing a slice
// over, at the first slice whose values the series' encoding cannot store (the caller
// then writes the series again with an encoding chosen from all values).
// Thread-safety: Ready(), AllReady() and Failed() may be called from any thread.
class OverlappedWriter {
 public:
  using HandOver = std::function<void(size_t index, size_t count, std::string file)>;

  OverlappedWriter(const DerivedSeriesWriter& writer, const float* voxels, size_t perSlice,
                   HandOver handOver)
      : writer_(writer),
        voxels_(voxels),
        perSlice_(perSlice),
        handOver_(std::move(handOver)),
        ready_(writer.Count(), false),
        thread_([this] { Loop(); }) {}

  ~OverlappedWriter() { Stop(); }
  OverlappedWriter(const OverlappedWriter&) = delete;
  OverlappedWriter& operator=(const OverlappedWriter&) = delete;

  void Ready(int64_t slice) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.at(static_cast<size_t>(slice)) = true;
    }
    changed_.notify_all();
  }

  // Every slice is final, in `voxels` (the run's result: the same memory when the model
  // wrote over its input, else the volume it returned).
  void AllReady(const float* voxels);

  // Waits for the thread; rethrows its error. False when it stopped at a slice the
  // encoding cannot store.
  bool Finish() {
    if (thread_.joinable()) thread_.join();
    if (error_) std::rethrow_exception(error_);
    return !outOfRange_;
  }

  // Abandons the remaining slices: the thread stops after the current one.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  bool Failed() const { return failed_; }
  std::exception_ptr Failure() const { return error_; }
  double EncodeSeconds() const { return encodeSeconds_; }  // after Finish() or Stop()

 private:
  void Loop();

  const DerivedSeriesWriter& writer_;
  const float* voxels_;
  const size_t perSlice_;
  const HandOver handOver_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<bool> ready_;
  bool stop_ = false;
  size_t written_ = 0;
  bool outOfRange_ = false;
  double encodeSeconds_ = 0;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
  std::thread thread_;  // last: starts once everything above is initialised
};

}  // namespace enhance
