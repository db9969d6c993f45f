// SPDX-License-Identifier: GPL-3.0-or-later
#include "SliceEngine.h"

#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

#include "enhance/base/Error.h"
#include "enhance/base/OrderStatistics.h"
#include "enhance/inference/Runtime.h"

namespace enhance {
namespace {

// Affine map y = x * scale + offset from physical values to network values.
struct Affine {
  double scale = 1.0;
  double offset = 0.0;
};

// Voxels that belong to the patient, for statistics: above -500 HU for CT, above 2% of
// the bright end for other units (MR background is close to zero). At most ~1M samples,
// into `body`.
void BodySample(const float* voxels, size_t total, const std::string& units,
                std::vector<float>& body) {
  const size_t stride = std::max<size_t>(1, total / 1000000);
  std::vector<float> strided;
  if (stride > 1) {
    strided.reserve(total / stride + 1);
    for (size_t i = 0; i < total; i += stride) strided.push_back(voxels[i]);
  }
  const float* sample = stride > 1 ? strided.data() : voxels;
  const size_t count = stride > 1 ? strided.size() : total;
  float threshold = -500.0f;
  if (units != "HU") threshold = static_cast<float>(0.02 * Percentile(sample, count, 99.5));
  // Without a branch: about half of an MR slice is background, in no predictable order.
  body.resize(count);
  size_t inBody = 0;
  for (size_t i = 0; i < count; ++i) {
    body[inBody] = sample[i];
    inBody += sample[i] > threshold ? 1 : 0;
  }
  body.resize(inBody);
  if (inBody < 16) body.assign(sample, sample + count);
}

Affine InputMapping(const Normalization& n, const float* voxels, size_t count,
                    const std::string& units, std::vector<float>* kept = nullptr) {
  std::vector<float> own;
  std::vector<float>& body = kept ? *kept : own;
  switch (n.method) {
    case Normalization::Method::kNone:
      return {};
    case Normalization::Method::kWindow:
      return {1.0 / (n.high - n.low), -n.low / (n.high - n.low)};
    case Normalization::Method::kPercentile: {
      BodySample(voxels, count, units, body);
      const double lo = Percentile(body.data(), body.size(), n.low);
      const double hi = std::max(Percentile(body.data(), body.size(), n.high), lo + 1e-6);
      return {1.0 / (hi - lo), -lo / (hi - lo)};
    }
    case Normalization::Method::kZScore: {
      BodySample(voxels, count, units, body);
      double sum = 0, sum2 = 0;
      for (float x : body) {
        sum += x;
        sum2 += static_cast<double>(x) * x;
      }
      const double samples = static_cast<double>(std::max<size_t>(1, body.size()));
      const double mean = sum / samples;
      const double sd = std::sqrt(std::max(sum2 / samples - mean * mean, 1e-12));
      return {1.0 / sd, -mean / sd};
    }
  }
  return {};
}

// Output network values back to physical values.
Affine OutputMapping(const ModelSpec& spec, const Affine& input) {
  if (spec.output.method == Normalization::Method::kWindow) {
    return {spec.output.high - spec.output.low, spec.output.low};
  }
  return {1.0 / input.scale, -input.offset / input.scale};
}

struct WorkItem {
  int64_t output;                 // output slice index
  std::vector<int64_t> channels;  // input slice index of each channel
};

std::vector<WorkItem> PlanWorkItems(int64_t slices, const ModelSpec& spec) {
  std::vector<WorkItem> items;
  auto clampIndex = [&](int64_t i) { return std::clamp<int64_t>(i, 0, slices - 1); };
  if (spec.throughPlaneScale > 1) {
    const int64_t c = std::max(1, spec.sliceContext);
    for (int64_t gap = 0; gap + 1 < slices; ++gap) {
      WorkItem item{2 * gap + 1, {}};
      for (int64_t i = gap - c + 1; i <= gap + c; ++i) item.channels.push_back(clampIndex(i));
      items.push_back(std::move(item));
    }
  } else {
    const int64_t c = spec.sliceContext;
    for (int64_t k = 0; k < slices; ++k) {
      WorkItem item{k, {}};
      for (int64_t i = k - c; i <= k + c; ++i) item.channels.push_back(clampIndex(i));
      items.push_back(std::move(item));
    }
  }
  return items;
}

// CUDA's allocator throws OutOfMemoryError ("CUDA out of memory"); the CPU allocator a
// plain c10::Error ("DefaultCPUAllocator: not enough memory").
bool IsOutOfMemory(const c10::Error& e) {
  const std::string what = e.what();
  return dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr ||
         what.find("out of memory") != std::string::npos ||
         what.find("not enough memory") != std::string::npos;
}

}  // namespace

NormalisationMap MapFor(const Normalization& normalization, const Volume& volume) {
  const Affine a =
      InputMapping(normalization, volume.voxels.data(), volume.voxels.size(), volume.units);
  return {a.scale, a.offset};
}

NormalisationMap MapForSlice(const Normalization& normalization, const float* values, int64_t rows,
                             int64_t columns, const std::string& units, std::vector<float>* body) {
  const Affine a =
      InputMapping(normalization, values, static_cast<size_t>(rows * columns), units, body);
  return {a.scale, a.offset};
}

std::vector<int64_t> TileStarts(int64_t length, int64_t size, int64_t overlap) {
  if (size <= 0 || length <= size) return {0};
  std::vector<int64_t> starts;
  const int64_t stride = size - overlap;
  for (int64_t start = 0;; start += stride) {
    if (start + size >= length) {
      starts.push_back(length - size);
      break;
    }
    starts.push_back(start);
  }
  return starts;
}

std::vector<float> BlendRamp(int64_t length, int64_t rampAtStart, int64_t rampAtEnd) {
  std::vector<float> w(static_cast<size_t>(length), 1.0f);
  auto ramp = [](int64_t distance, int64_t overlap) -> float {
    if (overlap <= 0) return 1.0f;
    const double zero = overlap / 4.0;
    const double one = 3.0 * overlap / 4.0;
    const double d = static_cast<double>(distance) + 0.5;
    if (d <= zero) return 1e-6f;  // never exactly 0: every output pixel keeps some weight
    if (d >= one) return 1.0f;
    return static_cast<float>((d - zero) / (one - zero));
  };
  for (int64_t i = 0; i < length; ++i) {
    w[static_cast<size_t>(i)] = std::min(ramp(i, rampAtStart), ramp(length - 1 - i, rampAtEnd));
  }
  return w;
}

bool CanRunInPlace(const ModelSpec& spec) {
  return spec.sliceContext == 0 && spec.throughPlaneScale == 1 && spec.inPlaneScale == 1;
}

namespace {

// One tile of the input grid and its blending weights on the output grid.
struct Tile {
  int64_t row = 0;
  int64_t column = 0;
  at::Tensor weight;
};

// The input grid cut into overlapping tiles; the overlap only matters where a tile edge is
// not the border. `weights` is the sum of the tiles' weights on the output grid.
struct TileGrid {
  int64_t rows = 0;  // of each tile, on the input grid
  int64_t columns = 0;
  std::vector<Tile> tiles;
  at::Tensor weights;
};

TileGrid PlanTiles(int64_t rows, int64_t columns, const ModelSpec& spec) {
  const int64_t scale = spec.inPlaneScale;
  TileGrid grid;
  grid.rows = spec.tileSize > 0 ? std::min<int64_t>(spec.tileSize, rows) : rows;
  grid.columns = spec.tileSize > 0 ? std::min<int64_t>(spec.tileSize, columns) : columns;
  const std::vector<int64_t> rowStarts = TileStarts(rows, grid.rows, spec.tileOverlap);
  const std::vector<int64_t> columnStarts = TileStarts(columns, grid.columns, spec.tileOverlap);
  grid.weights = at::zeros({rows * scale, columns * scale}, at::kFloat);
  const int64_t overlap = spec.tileOverlap * scale;
  for (size_t ty = 0; ty < rowStarts.size(); ++ty) {
    for (size_t tx = 0; tx < columnStarts.size(); ++tx) {
      const std::vector<float> wy = BlendRamp(grid.rows * scale, ty > 0 ? overlap : 0,
                                              ty + 1 < rowStarts.size() ? overlap : 0);
      const std::vector<float> wx = BlendRamp(grid.columns * scale, tx > 0 ? overlap : 0,
                                              tx + 1 < columnStarts.size() ? overlap : 0);
      Tile tile{rowStarts[ty], columnStarts[tx],
                at::outer(at::tensor(wy, at::kFloat), at::tensor(wx, at::kFloat))};
      grid.weights.slice(0, tile.row * scale, (tile.row + grid.rows) * scale)
          .slice(1, tile.column * scale, (tile.column + grid.columns) * scale)
          .add_(tile.weight);
      grid.tiles.push_back(std::move(tile));
    }
  }
  return grid;
}

// The model behind a function that pads each tile at the bottom and right to a multiple of
// what the network accepts, with 0 in normalised units (as the network's own zero
// padding), and crops the prediction back.
PlacedSliceFunction PaddedToMultiple(const PlacedSliceFunction& model, int64_t multiple,
                                     int64_t scale) {
  return [&model, multiple, scale](const at::Tensor& batch, const BatchPlacement& placement) {
    const int64_t h = batch.size(2), w = batch.size(3);
    const int64_t padRows = (multiple - h % multiple) % multiple;
    const int64_t padColumns = (multiple - w % multiple) % multiple;
    if (padRows == 0 && padColumns == 0) return model(batch, placement);
    return model(at::constant_pad_nd(batch, {0, padColumns, 0, padRows}, 0.0), placement)
        .narrow(2, 0, h * scale)
        .narrow(3, 0, w * scale);
  };
}

// A function that does not look at where its batch lies.
PlacedSliceFunction Placed(const SliceFunction& function) {
  return [&function](const at::Tensor& batch, const BatchPlacement&) { return function(batch); };
}

// Each slice's position along the normal, or its index when the volume has none.
std::vector<double> SlicePositions(const Volume& volume) {
  const Geometry& g = volume.geometry;
  std::vector<double> positions;
  for (int64_t k = 0; k < volume.slices; ++k) {
    positions.push_back(static_cast<int64_t>(g.slicePositions.size()) == volume.slices
                            ? Dot(g.slicePositions[static_cast<size_t>(k)], g.sliceDirection)
                            : static_cast<double>(k));
  }
  return positions;
}

// One run of the engine over a volume. `output` is a separate volume, or `input` itself
// (in place: CanRunInPlace), in which case output slice k is written over input slice k
// once its group of slices is complete and flagged in resume.finished.
//
// Groups of slices: every tile of a group is predicted and blended, then the group's
// output slices are final and written out. Besides the volume(s), memory holds one group's
// predictions and one batch.
class EngineRun {
 public:
  EngineRun(const Volume& input, Volume& output, const ModelSpec& spec,
            const PlacedSliceFunction& model, const EngineOptions& options,
            const RunContext& context, EngineResume& resume)
      : input_(input),
        output_(output),
        spec_(spec),
        options_(options),
        context_(context),
        resume_(resume),
        scale_(spec.inPlaneScale),
        inPlace_(&input == &output),
        perOutputSlice_(static_cast<size_t>(input.rows * scale_ * input.columns * scale_)),
        function_(PaddedToMultiple(model, spec.sizeMultiple, scale_)),
        positions_(SlicePositions(output)),
        channels_(options.uncertainty ? 2 : 1) {}

  void Run() {
    UseConfiguredThreadsHere();
    MapValues();
    PlanItems();
    if (options_.uncertainty) {
      Volume& u = *options_.uncertainty;
      if (u.slices != output_.slices || u.rows != output_.rows || u.columns != output_.columns) {
        u.Resize(output_.slices, output_.rows, output_.columns);
      }
      u.geometry = output_.geometry;
      u.units = spec_.outputUnits.empty() ? input_.units : spec_.outputUnits;
    } else {
      TakePrecomputed();
    }
    c10::InferenceMode inferenceMode;
    source_ = at::from_blob(const_cast<float*>(input_.voxels.data()),
                            {input_.slices, input_.rows, input_.columns}, at::kFloat);
    grid_ = PlanTiles(input_.rows, input_.columns, spec_);
    batchSize_ = InitialBatchSize();
    totalWork_ = static_cast<int64_t>(items_.size() * grid_.tiles.size());
    for (size_t groupStart = 0; groupStart < items_.size();) {
      const size_t groupSize =
          std::min<size_t>(static_cast<size_t>(batchSize_), items_.size() - groupStart);
      StoreGroup(groupStart, groupSize, PredictGroup(groupStart, groupSize));
      groupStart += groupSize;
    }
    if (spec_.throughPlaneScale > 1) KeepSourceSlices();
  }

 private:
  // The mapping is computed once, from the untouched input, and kept for a resumed run.
  void MapValues() {
    if (!resume_.mapped) {
      const Affine in =
          InputMapping(spec_.input, input_.voxels.data(), input_.voxels.size(), input_.units);
      resume_.inputScale = in.scale;
      resume_.inputOffset = in.offset;
      resume_.mapped = true;
    }
    in_ = Affine{resume_.inputScale, resume_.inputOffset};
    out_ = OutputMapping(spec_, in_);
  }

  // The output slices still to compute: those a resumed run has not finished yet.
  void PlanItems() {
    if (resume_.finished.empty()) {
      resume_.finished.assign(static_cast<size_t>(output_.slices), false);
    }
    for (WorkItem& item : PlanWorkItems(input_.slices, spec_)) {
      if (!resume_.finished[static_cast<size_t>(item.output)]) items_.push_back(std::move(item));
    }
  }

  // Slices computed before (RunContext::precomputed) are not computed again.
  void TakePrecomputed() {
    if (!context_.precomputed || !SlicesAreIndependent(spec_)) return;
    std::vector<WorkItem> remaining;
    for (WorkItem& item : items_) {
      std::vector<float> values = context_.precomputed(item.output);
      if (values.size() == perOutputSlice_) {
        std::copy(values.begin(), values.end(), output_.Slice(item.output));
        resume_.finished[static_cast<size_t>(item.output)] = true;
        if (inPlace_ && context_.outputReady) context_.outputReady(item.output);
      } else {
        remaining.push_back(std::move(item));
      }
    }
    items_ = std::move(remaining);
  }

  int64_t InitialBatchSize() {
    perItemBytes_ = static_cast<size_t>(grid_.rows * grid_.columns) * options_.bytesPerInputPixel;
    int64_t limit = std::min<int64_t>(options_.maxBatch, spec_.maxBatch);
    if (!options_.device.is_cuda()) {
      // CPU kernels are as fast on one 512x512 slice as on several (their threads already
      // share each image), so larger batches would only cost memory.
      limit =
          std::min<int64_t>(limit, std::max<int64_t>(1, 512 * 512 / (grid_.rows * grid_.columns)));
    }
    return std::clamp<int64_t>(
        static_cast<int64_t>(options_.memoryBudgetBytes / std::max<size_t>(1, perItemBytes_)), 1,
        limit);
  }

  // Every tile of the group's slices, predicted in batches and blended on the output grid.
  at::Tensor PredictGroup(size_t groupStart, size_t groupSize) {
    at::Tensor group = at::zeros(
        {static_cast<int64_t>(groupSize), channels_, input_.rows * scale_, input_.columns * scale_},
        at::kFloat);
    for (const Tile& t : grid_.tiles) {
      const at::Tensor tile =
          source_.slice(1, t.row, t.row + grid_.rows).slice(2, t.column, t.column + grid_.columns);
      for (size_t first = 0; first < groupSize;) {
        context_.ThrowIfCancelled();
        const size_t count = std::min<size_t>(static_cast<size_t>(batchSize_), groupSize - first);
        std::vector<at::Tensor> stack;
        for (size_t i = first; i < first + count; ++i) {
          stack.push_back(
              tile.index_select(0, at::tensor(items_[groupStart + i].channels, at::kLong)));
        }
        BatchPlacement placement{
            t.row, t.column, {}, [&, count](double share) {
              context_.Report((static_cast<double>(done_) + share * static_cast<double>(count)) /
                              static_cast<double>(totalWork_));
            }};
        for (size_t i = first; i < first + count; ++i) {
          placement.positions.push_back(
              positions_.at(static_cast<size_t>(items_[groupStart + i].output)));
        }
        const at::Tensor prediction = PredictBatch(stack, placement);
        if (!prediction.defined()) continue;  // out of memory: batchSize_ was halved
        for (size_t i = 0; i < count; ++i) {
          group[static_cast<int64_t>(first + i)]
              .slice(1, t.row * scale_, (t.row + grid_.rows) * scale_)
              .slice(2, t.column * scale_, (t.column + grid_.columns) * scale_)
              .addcmul_(prediction[static_cast<int64_t>(i)], t.weight);
        }
        first += count;
        done_ += static_cast<int64_t>(count);
        context_.Report(static_cast<double>(done_) / static_cast<double>(totalWork_));
      }
    }
    return group;
  }

  // The network's prediction for one batch of tiles, on the CPU in network units; an
  // undefined tensor when the batch did not fit and batchSize_ was halved to retry it.
  at::Tensor PredictBatch(const std::vector<at::Tensor>& stack, const BatchPlacement& placement) {
    const size_t count = stack.size();
    at::Tensor prediction;
    std::string outOfMemory;  // why this batch did not fit, when it did not
    const size_t estimate = count * perItemBytes_;
    if (options_.simulatedDeviceMemoryBytes > 0 && estimate > options_.simulatedDeviceMemoryBytes) {
      outOfMemory = "a batch of " + std::to_string(count) + " tile(s) of " +
                    std::to_string(grid_.rows) + "x" + std::to_string(grid_.columns) +
                    " needs about " + std::to_string(estimate >> 20) + " MB, more than the " +
                    std::to_string(options_.simulatedDeviceMemoryBytes >> 20) +
                    " MB the device is simulated to have";
    } else {
      try {
        const bool cuda = options_.device.is_cuda();
        at::Tensor batch = at::stack(stack).mul_(in_.scale).add_(in_.offset);
        if (cuda) batch = batch.pin_memory();
        batch = batch.to(options_.device, options_.fp16 ? at::kHalf : at::kFloat,
                         /*non_blocking=*/cuda);
        prediction = function_(batch, placement).to(at::kCPU, at::kFloat);
      } catch (const c10::Error& e) {
        if (!IsOutOfMemory(e)) {
          throw Error(ErrorKind::kInternal,
                      std::string("the model failed: ") + e.what_without_backtrace());
        }
        outOfMemory = e.what_without_backtrace();
      } catch (const std::exception& e) {
        // Errors raised inside the TorchScript interpreter (torch::jit::JITException).
        throw Error(ErrorKind::kInternal, std::string("the model failed: ") + e.what());
      }
    }
    if (!outOfMemory.empty()) {
      if (count == 1) {
        throw Error(ErrorKind::kUnsupported, "out of memory on " + options_.device.str() +
                                                 " with a batch of one: " + outOfMemory);
      }
      batchSize_ = static_cast<int64_t>(count / 2);
      context_.Warn("out of memory on " + options_.device.str() + " with a batch of " +
                    std::to_string(count) + "; retrying with batches of " +
                    std::to_string(batchSize_));
      return {};
    }
    const std::vector<int64_t> expected{static_cast<int64_t>(count), channels_, grid_.rows * scale_,
                                        grid_.columns * scale_};
    if (prediction.sizes().vec() != expected) {
      throw Error(ErrorKind::kInternal, "the model returned shape " + c10::str(prediction.sizes()) +
                                            " instead of " + c10::str(at::IntArrayRef(expected)));
    }
    return prediction;
  }

  // The group's blended predictions back in physical units, checked and written out; the
  // second channel (a standard deviation) is scaled to output units but not offset.
  void StoreGroup(size_t groupStart, size_t groupSize, at::Tensor group) {
    group.div_(grid_.weights);
    at::Tensor values = group.select(1, 0).mul_(out_.scale).add_(out_.offset);
    if (spec_.hasOutputRange) values.clamp_(spec_.outputMin, spec_.outputMax);
    if (channels_ > 1) group.select(1, 1).mul_(std::abs(out_.scale));
    if (!at::isfinite(group).all().item<bool>()) {
      throw Error(
          ErrorKind::kInternal,
          "model '" + spec_.name + "' produced values that are not finite (NaN or infinity)");
    }
    group = group.contiguous();
    const float* data = group.data_ptr<float>();
    for (size_t i = 0; i < groupSize; ++i) {
      const int64_t slice = items_[groupStart + i].output;
      const float* item = data + i * channels_ * perOutputSlice_;
      std::copy_n(item, perOutputSlice_, output_.Slice(slice));
      if (channels_ > 1) {
        std::copy_n(item + perOutputSlice_, perOutputSlice_, options_.uncertainty->Slice(slice));
      }
      if (inPlace_) resume_.finished[static_cast<size_t>(slice)] = true;
    }
    if (inPlace_ && context_.outputReady) {
      for (size_t i = 0; i < groupSize; ++i) context_.outputReady(items_[groupStart + i].output);
    }
  }

  // Through-plane models: source slices are kept exactly; the model only fills the gaps.
  void KeepSourceSlices() {
    for (int64_t k = 0; k < input_.slices; ++k) {
      std::copy(input_.Slice(k), input_.Slice(k) + input_.VoxelsPerSlice(), output_.Slice(2 * k));
    }
  }

  const Volume& input_;
  Volume& output_;
  const ModelSpec& spec_;
  const EngineOptions& options_;
  const RunContext& context_;
  EngineResume& resume_;
  const int64_t scale_;
  const bool inPlace_;
  const size_t perOutputSlice_;
  const PlacedSliceFunction function_;
  const std::vector<double> positions_;  // of the output slices
  const int64_t channels_;               // 2 with an uncertainty channel
  Affine in_, out_;
  std::vector<WorkItem> items_;
  at::Tensor source_;
  TileGrid grid_;
  size_t perItemBytes_ = 0;
  int64_t batchSize_ = 1;
  int64_t totalWork_ = 0;
  int64_t done_ = 0;
};

void CheckInput(const Volume& input, const ModelSpec& spec) {
  if (input.slices == 0 || input.rows == 0 || input.columns == 0) {
    throw Error(ErrorKind::kBadInput, "the volume is empty");
  }
  if (spec.throughPlaneScale > 1 && input.slices < 2) {
    throw Error(ErrorKind::kBadInput, "through-plane super-resolution needs at least two slices");
  }
}

}  // namespace

Volume RunSliceEngine(const Volume& input, const ModelSpec& spec, const PlacedSliceFunction& model,
                      const EngineOptions& options, const RunContext& context) {
  CheckInput(input, spec);
  const int64_t scale = spec.inPlaneScale;
  Volume output;
  output.units = spec.outputUnits.empty() ? input.units : spec.outputUnits;
  output.geometry = spec.throughPlaneScale > 1
                        ? UpsampleThroughPlane(input.geometry, spec.throughPlaneScale)
                        : UpsampleInPlane(input.geometry, static_cast<int>(scale));
  const int64_t outSlices = spec.throughPlaneScale > 1 ? 2 * input.slices - 1 : input.slices;
  output.Resize(outSlices, input.rows * scale, input.columns * scale);
  EngineResume resume;
  EngineRun(input, output, spec, model, options, context, resume).Run();
  return output;
}

Volume RunSliceEngine(const Volume& input, const ModelSpec& spec, const SliceFunction& model,
                      const EngineOptions& options, const RunContext& context) {
  return RunSliceEngine(input, spec, Placed(model), options, context);
}

void RunSliceEngineInPlace(Volume& volume, const ModelSpec& spec, const PlacedSliceFunction& model,
                           const EngineOptions& options, const RunContext& context,
                           EngineResume& resume) {
  if (!CanRunInPlace(spec)) {
    throw Error(ErrorKind::kInternal, "model '" + spec.name +
                                          "' cannot run in place: its output slices are not "
                                          "computed from the same input slice on the same grid");
  }
  CheckInput(volume, spec);
  EngineRun(volume, volume, spec, model, options, context, resume).Run();
  if (!spec.outputUnits.empty()) volume.units = spec.outputUnits;
}

void RunSliceEngineInPlace(Volume& volume, const ModelSpec& spec, const SliceFunction& model,
                           const EngineOptions& options, const RunContext& context,
                           EngineResume& resume) {
  RunSliceEngineInPlace(volume, spec, Placed(model), options, context, resume);
}

}  // namespace enhance
