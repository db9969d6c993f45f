// SPDX-License-Identifier: GPL-3.0-or-later
//
// Where the fused operators (FusedConvolution.h) write their outputs: memory recycled while a
// scope lives on the thread, or kept between scopes, and the pixel shuffle that writes there
// too.
//
// Thread-safety: each thread has its own scopes; memory freed on another thread goes back to
// its pool under the pool's mutex.
#pragma once
#include <torch/script.h>

#include <memory>

namespace enhance {

class FusedOutputMemory;

// While one lives on a thread, the outputs of the fused operator run on that thread reuse the
// memory of those already freed (a network's layers alternate between two or three buffers
// of one size) instead of asking the system for fresh pages each time, which for 512x512
// feature maps costs about as much as the convolutions. The memory goes back when the scope
// ends. Scopes nest; a scope belongs to the thread that opened it.
class FusedOutputScope {
 public:
  FusedOutputScope();
  // Recycles into `memory`, which keeps what it holds when the scope ends.
  explicit FusedOutputScope(FusedOutputMemory& memory);
  ~FusedOutputScope();
  FusedOutputScope(const FusedOutputScope&) = delete;
  FusedOutputScope& operator=(const FusedOutputScope&) = delete;

 private:
  std::shared_ptr<void> previous_;
  bool close_ = true;
};

// Output memory kept between scopes that name it, for a network run again and again on
// inputs of one size (a domain check's slices): each run finds its buffers already mapped,
// where fresh ones cost a page fault per 4 KB. It holds at most 32 free buffers, what one run
// of such a network writes, and frees them with itself. Thread-safe, but a scope naming it
// may be open on one thread at a time.
class FusedOutputMemory {
 public:
  FusedOutputMemory();
  ~FusedOutputMemory();
  FusedOutputMemory(const FusedOutputMemory&) = delete;
  FusedOutputMemory& operator=(const FusedOutputMemory&) = delete;

 private:
  friend class FusedOutputScope;
  std::shared_ptr<void> pool_;
};

// A channels-last tensor of `sizes` ([N, C, H, W]) and `type` for an operator's output: from
// this thread's pool while a FusedOutputScope is open, otherwise fresh.
at::Tensor FusedOutput(c10::IntArrayRef sizes, at::ScalarType type);

// at::pixel_shuffle(input, factor), written into a FusedOutput when the input is a 4-D
// channels-last float or bfloat16 CPU tensor (LibTorch's would take fresh memory; same
// values, moved only); any other input goes to at::pixel_shuffle. FuseConvolutions puts
// it, as the operator enhance::pixel_shuffle, in place of every aten::pixel_shuffle.
at::Tensor FusedPixelShuffle(const at::Tensor& input, int64_t factor);

}  // namespace enhance
