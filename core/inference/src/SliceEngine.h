// SPDX-License-Identifier: GPL-3.0-or-later
//
// Runs a slice-wise network (or any function of the same shape) over a whole volume:
// normalisation, neighbouring slices as channels, batching under a memory budget,
// overlapping tiles blended smoothly, device transfers, and the inverse mapping back to
// physical units. Internal to core/. Reentrant: no shared state.
//
// The function maps a batch [B, C, h, w] to [B, 1, h * s, w * s] on the engine's device,
// where C = spec.InputChannels() and s = spec.inPlaneScale. For through-plane models
// (spec.throughPlaneScale == 2) it predicts the slice half-way between the two middle
// channels; the source slices are kept as they are.
#pragma once

#include <ATen/ATen.h>

#include <functional>

#include "enhance/base/Volume.h"
#include "enhance/inference/Model.h"
#include "enhance/inference/ModelSpec.h"

namespace enhance {

using SliceFunction = std::function<at::Tensor(const at::Tensor& batch)>;

// Where a batch lies: the origin of its tile on the whole input slice, and each item's
// slice position (mm along the slice normal; the slice index when the volume has no
// positions). For functions whose result depends on it (diffusion sampling draws its
// noise from it).
struct BatchPlacement {
  int64_t row = 0;
  int64_t column = 0;
  std::vector<double> positions;
  // For a function that takes long on one batch (diffusion sampling): reports the share
  // of this batch done so far, in [0, 1], as part of the run's progress. Never empty.
  std::function<void(double)> partial = [](double) {};
};

using PlacedSliceFunction =
    std::function<at::Tensor(const at::Tensor& batch, const BatchPlacement& placement)>;

struct EngineOptions {
  c10::Device device = c10::Device(c10::kCPU);
  bool fp16 = false;
  int64_t maxBatch = 8;
  // Batches are sized so that about this many bytes of activations are in flight,
  // assuming `bytesPerInputPixel` per pixel of each item (a 6-layer, 24-channel CNN
  // keeps about 2 x 24 feature maps of 4 bytes alive).
  size_t memoryBudgetBytes = size_t{1} << 30;
  size_t bytesPerInputPixel = 256;
  // The memory the device is taken to have, for rehearsing the out-of-memory fallbacks
  // without a GPU: a batch whose estimate (as above) exceeds it fails exactly as a real
  // allocation failure does. 0: no such limit.
  size_t simulatedDeviceMemoryBytes = 0;
  // When set, the function returns a second channel, [B, 2, h, w]: the standard deviation
  // of its prediction in network units. The engine blends it like the first, maps it to
  // output units (scaled, not offset) and writes it here, on the output grid; slices
  // computed before (RunContext::precomputed) are then computed again, as they carry none.
  Volume* uncertainty = nullptr;
};

// Out of memory, real or simulated: the batch is halved (with a warning) and the batch
// run again; at batch size 1 RunSliceEngine throws Error(kUnsupported) whose message
// starts with "out of memory", for the caller to try smaller tiles or another device.

Volume RunSliceEngine(const Volume& input, const ModelSpec& spec, const SliceFunction& function,
                      const EngineOptions& options, const RunContext& context);
Volume RunSliceEngine(const Volume& input, const ModelSpec& spec,
                      const PlacedSliceFunction& function, const EngineOptions& options,
                      const RunContext& context);

// Whether output slice k is computed from input slice k alone, on the same grid: then the
// output can be written over the input (RunSliceEngineInPlace).
bool CanRunInPlace(const ModelSpec& spec);

// What an in-place run has done, so that a run that failed part-way (out of memory) can
// be resumed with other options: which slices already hold their output, and the input
// normalisation computed from the untouched volume.
struct EngineResume {
  std::vector<bool> finished;
  bool mapped = false;
  double inputScale = 1.0;
  double inputOffset = 0.0;
};

// As RunSliceEngine, writing each output slice over its input slice once computed, so
// that memory holds one volume instead of two. Only for CanRunInPlace models (else
// Error kInternal). On an exception, `volume` holds output slices where
// resume.finished says so and input slices elsewhere; run again with the same `resume`
// to complete it.
void RunSliceEngineInPlace(Volume& volume, const ModelSpec& spec, const SliceFunction& function,
                           const EngineOptions& options, const RunContext& context,
                           EngineResume& resume);
void RunSliceEngineInPlace(Volume& volume, const ModelSpec& spec,
                           const PlacedSliceFunction& function, const EngineOptions& options,
                           const RunContext& context, EngineResume& resume);

// The affine map of a normalisation for the values of `volume` (percentiles and z-scores
// from its body voxels): network value = physical value * scale + offset. For the domain
// check, which normalises each slice on its own.
struct NormalisationMap {
  double scale = 1.0;
  double offset = 0.0;
};
NormalisationMap MapFor(const Normalization& normalization, const Volume& volume);
// The same for one slice of rows x columns values in `units`. A normalisation that reads
// them (percentiles and z-scores) copies the slice's body into `body` when given (memory a
// caller keeps from slice to slice), else into a vector of its own.
NormalisationMap MapForSlice(const Normalization& normalization, const float* values, int64_t rows,
                             int64_t columns, const std::string& units,
                             std::vector<float>* body = nullptr);

// Linear ramps that blend overlapping tiles: 0 within overlap/4 of an inner tile edge,
// 1 from 3 overlap/4 on, so a model whose receptive field radius is at most overlap/4
// gives the same result tiled as untiled. Exposed for tests.
std::vector<float> BlendRamp(int64_t length, int64_t rampAtStart, int64_t rampAtEnd);

// Tile start positions along one axis of `length` for tiles of `size` overlapping by
// `overlap`; the last tile ends at the border. Exposed for tests.
std::vector<int64_t> TileStarts(int64_t length, int64_t size, int64_t overlap);

}  // namespace enhance
