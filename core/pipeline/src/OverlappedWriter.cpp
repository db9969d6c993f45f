// SPDX-License-Identifier: GPL-3.0-or-later
#include "OverlappedWriter.h"

#include <algorithm>
#include <chrono>

#include "enhance/base/Error.h"

namespace enhance {

void OverlappedWriter::AllReady(const float* voxels) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (voxels != voxels_ && written_ > 0) {
      throw Error(ErrorKind::kInternal, "output slices were reported in a volume not returned");
    }
    voxels_ = voxels;
    std::fill(ready_.begin(), ready_.end(), true);
  }
  changed_.notify_all();
}

void OverlappedWriter::Loop() {
  const size_t count = ready_.size();
  for (size_t k = 0; k < count; ++k) {
    const float* values = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || ready_[k]; });
      if (stop_) return;
      values = voxels_ + k * perSlice_;
    }
    const auto [lo, hi] = std::minmax_element(values, values + perSlice_);
    if (!writer_.Holds(*lo, *hi)) {
      outOfRange_ = true;
      return;
    }
    try {
      const auto start = std::chrono::steady_clock::now();
      std::string file = writer_.Write(k, values);
      encodeSeconds_ +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      handOver_(k, count, std::move(file));
    } catch (...) {
      error_ = std::current_exception();
      failed_ = true;
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ++written_;
  }
}

}  // namespace enhance
