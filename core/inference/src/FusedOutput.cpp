// SPDX-License-Identifier: GPL-3.0-or-later
#include "FusedOutput.h"

#include <ATen/Parallel.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace enhance {
namespace {

// Output memory of the fused operator, recycled while a FusedOutputScope lives on the thread
// that runs it. Freed outputs may come back from any thread, hence the mutex.
class OutputPool : public std::enable_shared_from_this<OutputPool> {
 public:
  explicit OutputPool(size_t keep) : keep_(keep) {}

  // A channels-last tensor of `sizes` ([N, C, H, W]) and `type` (float or bfloat16).
  at::Tensor Empty(c10::IntArrayRef sizes, at::ScalarType type) {
    const int64_t n = sizes[0], c = sizes[1], h = sizes[2], w = sizes[3];
    const size_t bytes = static_cast<size_t>(n * c * h * w) * c10::elementSize(type);
    void* data = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->first == bytes) {
          data = it->second;
          free_.erase(it);
          break;
        }
      }
    }
    if (data == nullptr) data = c10::alloc_cpu(std::max<size_t>(bytes, 1));
    auto self = shared_from_this();
    return at::from_blob(
        data, sizes, {h * w * c, 1, w * c, c},
        [self, bytes](void* released) { self->Give(released, bytes); }, at::TensorOptions(type));
  }

  void Close() {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = false;
    for (const auto& block : free_) c10::free_cpu(block.second);
    free_.clear();
  }

 private:
  void Give(void* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    // A network's layers alternate between two or three buffers of a size; a few more are
    // kept for the batch sizes and tiles that follow (every size a network writes, for kept
    // memory).
    if (open_ && free_.size() < keep_) {
      free_.emplace_back(bytes, data);
    } else {
      c10::free_cpu(data);
    }
  }

  const size_t keep_;
  std::mutex mutex_;
  std::vector<std::pair<size_t, void*>> free_;
  bool open_ = true;
};

// Buffers a scope keeps free, and kept memory.
constexpr size_t kScopeBuffers = 4;
constexpr size_t kKeptBuffers = 32;

thread_local std::shared_ptr<OutputPool> tlsOutputPool;

}  // namespace

at::Tensor FusedOutput(c10::IntArrayRef sizes, at::ScalarType type) {
  if (tlsOutputPool) return tlsOutputPool->Empty(sizes, type);
  return at::empty(sizes, at::TensorOptions(type).memory_format(at::MemoryFormat::ChannelsLast));
}

FusedOutputScope::FusedOutputScope() : previous_(std::move(tlsOutputPool)) {
  tlsOutputPool = std::make_shared<OutputPool>(kScopeBuffers);
}

FusedOutputScope::FusedOutputScope(FusedOutputMemory& memory)
    : previous_(std::move(tlsOutputPool)), close_(false) {
  tlsOutputPool = std::static_pointer_cast<OutputPool>(memory.pool_);
}

FusedOutputScope::~FusedOutputScope() {
  if (close_) tlsOutputPool->Close();
  tlsOutputPool = std::static_pointer_cast<OutputPool>(std::move(previous_));
}

FusedOutputMemory::FusedOutputMemory() : pool_(std::make_shared<OutputPool>(kKeptBuffers)) {}

FusedOutputMemory::~FusedOutputMemory() { std::static_pointer_cast<OutputPool>(pool_)->Close(); }

namespace {

// Element by element in channels-last order: out[n, h*f + i, w*f + j, c] =
// in[n, h, w, c*f*f + i*f + j].
template <typename T>
void ShuffleChannelsLast(const T* in, T* out, int64_t batch, int64_t channels, int64_t rows,
                         int64_t columns, int64_t f) {
  const int64_t inChannels = channels * f * f;
  at::parallel_for(0, batch * rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nh = begin; nh < end; ++nh) {
      const int64_t n = nh / rows, h = nh % rows;
      const T* inRow = in + nh * columns * inChannels;
      for (int64_t i = 0; i < f; ++i) {
        T* outRow = out + ((n * rows + h) * f + i) * columns * f * channels;
        if (channels == 1) {
          // A network's last shuffle, to one channel: each pixel's row i is f values in a row,
          // in and out.
          for (int64_t w = 0; w < columns; ++w) {
            std::copy_n(inRow + w * inChannels + i * f, f, outRow + w * f);
          }
          continue;
        }
        for (int64_t w = 0; w < columns; ++w) {
          const T* pixel = inRow + w * inChannels + i * f;
          for (int64_t j = 0; j < f; ++j) {
            T* to = outRow + (w * f + j) * channels;
            for (int64_t c = 0; c < channels; ++c) to[c] = pixel[c * f * f + j];
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor FusedPixelShuffle(const at::Tensor& input, int64_t factor) {
  const bool handled =
      input.dim() == 4 && input.device().is_cpu() && factor >= 1 &&
      (input.scalar_type() == at::kFloat || input.scalar_type() == at::kBFloat16) &&
      input.size(1) % (factor * factor) == 0 && input.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (!handled) return at::pixel_shuffle(input, factor);
  const int64_t n = input.size(0), channels = input.size(1) / (factor * factor);
  const int64_t rows = input.size(2), columns = input.size(3);
  at::Tensor output =
      FusedOutput({n, channels, rows * factor, columns * factor}, input.scalar_type());
  if (input.scalar_type() == at::kFloat) {
    ShuffleChannelsLast(input.data_ptr<float>(), output.data_ptr<float>(), n, channels, rows,
                        columns, factor);
  } else {
    ShuffleChannelsLast(input.data_ptr<at::BFloat16>(), output.data_ptr<at::BFloat16>(), n,
                        channels, rows, columns, factor);
  }
  return output;
}

TORCH_LIBRARY_FRAGMENT(enhance, library) {
  library.def("pixel_shuffle(Tensor input, int factor) -> Tensor", &FusedPixelShuffle);
}

}  // namespace enhance
