// SPDX-License-Identifier: GPL-3.0-or-later
//
// A model brought as a TorchScript archive plus manifest.json (docs/models.md).
// Load() validates the manifest, loads the archive straight onto the device, checks the
// output shape on a small dummy input (which also warms the model up), loads the domain
// check when the manifest declares one, and gives a clear error for anything wrong. One loaded
// instance is shared by all jobs; at most `maxConcurrentRuns` Run() calls execute at once, the
// others wait.
//
// On CUDA: fp16 when the manifest allows it, pinned host memory and asynchronous copies.
// When the device runs out of memory the batch is halved, then the tiles (down to 64
// pixels), each step with a warning through RunContext; after that a CUDA model runs the
// series on the CPU and a CPU model fails with Error(kUnsupported). The same path can be
// rehearsed without a GPU by giving the device a simulated amount of memory.
//
// Thread-safe: Run() may be called from several threads.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "enhance/inference/Model.h"

namespace enhance {

struct InferenceOptions {
  std::string device = "auto";  // "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
  size_t memoryBudgetBytes = size_t{1} << 30;
  int maxConcurrentRuns = 1;
  // CPU: time the graph as saved against the same graph in channels-last memory order and
  // against the frozen graph with fused convolutions (FusedConvolution.h) at load, and keep
  // the fastest. false: the graph runs as saved.
  bool optimizeForCpu = true;
  // CPU, for benchmarks and tests: "auto" (timed, as above), or one of "plain",
  // "channels-last", "fused", "optimised" (frozen, fused operators: torch::jit::
  // optimize_for_inference) to use that version without timing.
  std::string cpuLayout = "auto";
  // CPU: "auto" runs the network in bf16 (int8) when its manifest allows it, the processor
  // has bf16 (8-bit dot-product) instructions (CpuHasBf16, CpuHasInt8), its output on the
  // manifest's calibration input stays within the manifest's tolerance of float's, and it is
  // the fastest; "float" never; "bf16" or "int8" always (with the fused layout, untimed and
  // unchecked: benchmarks and evaluation; int8 still calibrated on the calibration input).
  std::string precision = "auto";
  int maxBatch = 0;  // > 0: overrides the manifest's max_batch (benchmarks)
  // > 0: overrides a diffusion model's `samples` (evaluation at several K, benchmarks);
  // refused for other models. 1 gives no uncertainty map.
  int diffusionSamples = 0;
  // >= 0: overrides a diffusion model's `seed` (evaluation over several seeds).
  int64_t diffusionSeed = -1;
  // true: a deterministic model gives an uncertainty map by test-time augmentation as if
  // its manifest said `"uncertainty": {"method": "augmentation"}` (evaluation); refused
  // for a diffusion model.
  bool augmentationUncertainty = false;
  // > 0: the model's device is taken to have only this much memory for activations
  // (estimated as for memoryBudgetBytes); a batch above it fails as an out-of-memory
  // would. For testing the fallbacks on a machine without a GPU.
  size_t simulatedDeviceMemoryBytes = 0;
};

class TorchModel final : public Model {
 public:
  // Throws Error naming the folder and what is wrong.
  static std::shared_ptr<const TorchModel> Load(const std::filesystem::path& folder,
                                                const InferenceOptions& options);
  ~TorchModel() override;

  const ModelInfo& Info() const override;
  std::string Parameters() const override;
  Volume Run(const Volume& input, const RunContext& context) const override;
  Volume RunReusing(Volume& input, const RunContext& context) const override;
  bool TakesPrecomputedSlices() const override;
  bool ProducesUncertainty() const override;
  const DomainCheck* Domain() const override;
  const LowPrecisionReport* LowPrecision() const override;

  // "cpu" or "cuda:N", where the model runs.
  std::string Device() const;

  // Multiply-accumulates per output pixel of the network's convolutions, counted at load
  // by running it once on a 64x64 input: exact for convolutions on any grid (pixel
  // shuffles, strides, through-plane models); other operations are not counted. 0 when
  // the count failed.
  double MacsPerPixel() const;

 private:
  struct Impl;
  explicit TorchModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The device "auto" resolves to: "cuda:0" when LibTorch sees a GPU, else "cpu".
// Throws Error(kBadInput) for a name that is not a device.
std::string ResolveDevice(const std::string& requested);

// Throws Error(kBadInput) unless `requested` is auto, cpu, cuda or cuda:N. Only the name
// is checked (no LibTorch call), so configuration parsing can use it anywhere.
void CheckDeviceName(const std::string& requested);

// Where models configured for `requested` actually run: ResolveDevice(), except that a
// CUDA device falls back to "cpu" on a machine where LibTorch sees no GPU.
std::string EffectiveDevice(const std::string& requested);

}  // namespace enhance
