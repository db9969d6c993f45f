// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/TorchModel.h"

#include <ATen/record_function.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <string_view>
#include <vector>

#include "CpuVersions.h"
#include "DiffusionSampler.h"
#include "FusedConvolution.h"
#include "SliceEngine.h"
#include "enhance/base/Error.h"
#include "enhance/base/Slots.h"
#include "enhance/base/Uid.h"
#include "enhance/inference/DomainCheck.h"
#include "enhance/inference/ModelSpec.h"
#include "enhance/inference/Runtime.h"

namespace enhance {
namespace {

// Multiply-accumulates of the convolutions this thread runs while CountMacsPerPixel()
// listens (LibTorch's RecordFunction callbacks are plain function pointers).
thread_local double* tlsMacs = nullptr;
thread_local int tlsDepth = 0;  // nested convolution ops (conv2d -> convolution -> ...)

bool IsConvolution(std::string_view name) {
  return name == "aten::conv1d" || name == "aten::conv2d" || name == "aten::conv3d" ||
         name == "aten::convolution" || name == "aten::_convolution" ||
         name == "aten::conv_transpose1d" || name == "aten::conv_transpose2d" ||
         name == "aten::conv_transpose3d";
}

std::unique_ptr<at::ObserverContext> OnOpStart(const at::RecordFunction& fn) {
  if (tlsMacs != nullptr && IsConvolution(fn.name())) ++tlsDepth;
  return nullptr;
}

// Counts the outermost convolution op of each call: every output element of a
// convolution takes (input channels / groups) x kernel size MACs, every input element of
// a transposed one (output channels / groups) x kernel size; both are the weight's
// elements per leading index.
void OnOpEnd(const at::RecordFunction& fn, at::ObserverContext*) {
  const std::string_view name = fn.name();
  if (tlsMacs == nullptr || !IsConvolution(name) || --tlsDepth > 0) return;
  const auto inputs = fn.inputs();
  const auto& outputs = fn.outputs();
  if (inputs.size() < 2 || !inputs[0].isTensor() || !inputs[1].isTensor() || outputs.empty() ||
      !outputs[0].isTensor()) {
    return;
  }
  const at::Tensor& weight = inputs[1].toTensor();
  if (weight.dim() < 3 || weight.size(0) == 0) return;
  const bool transposed = name.find("transpose") != std::string_view::npos ||
                          ((name == "aten::convolution" || name == "aten::_convolution") &&
                           inputs.size() > 6 && inputs[6].isBool() && inputs[6].toBool());
  const double perElement =
      static_cast<double>(weight.numel()) / static_cast<double>(weight.size(0));
  const at::Tensor& counted = transposed ? inputs[0].toTensor() : outputs[0].toTensor();
  *tlsMacs += static_cast<double>(counted.numel()) * perElement;
}

// Multiply-accumulates per output pixel, counted by running the network once on a small
// input and adding up the convolutions it runs, on whatever grid each one runs.
double CountMacsPerPixel(torch::jit::Module& module, const ModelSpec& spec) {
  const int64_t multiple = std::max(1, spec.sizeMultiple);
  const int64_t side = (64 + multiple - 1) / multiple * multiple;
  double macs = 0;
  tlsMacs = &macs;
  tlsDepth = 0;
  const at::CallbackHandle handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(OnOpStart, OnOpEnd).needsInputs(true).needsOutputs(true));
  struct Listening {
    at::CallbackHandle handle;
    ~Listening() {
      at::removeCallback(handle);
      tlsMacs = nullptr;
    }
  } listening{handle};
  c10::InferenceMode guard;
  module.forward(
      ForwardArguments(spec, at::zeros({1, spec.InputChannels(), side, side}, at::kFloat)));
  const double outputPixels =
      static_cast<double>(side * spec.inPlaneScale) * static_cast<double>(side * spec.inPlaneScale);
  return macs / outputPixels;
}

// Test-time augmentation: the network on the eight flips and 90-degree rotations of the
// batch, each prediction turned back; returns their mean and their standard deviation
// (population) as two channels, [B, 2, H, W].
at::Tensor Augmented(const at::Tensor& batch,
                     const std::function<at::Tensor(const at::Tensor&)>& network) {
  std::vector<at::Tensor> predictions;
  for (int flip = 0; flip < 2; ++flip) {
    for (int64_t turns = 0; turns < 4; ++turns) {
      at::Tensor x = flip ? batch.flip({3}) : batch;
      at::Tensor y = network(at::rot90(x, turns, {2, 3})).to(at::kFloat);
      y = at::rot90(y, -turns, {2, 3});
      predictions.push_back(flip ? y.flip({3}) : y);
    }
  }
  const at::Tensor all = at::stack(predictions);  // [8, B, 1, H, W]
  const at::Tensor mean = all.mean(0);
  const at::Tensor deviation = (all - mean).square_().mean(0).sqrt_();
  return at::cat({mean, deviation}, 1).contiguous();
}

// What InferenceOptions may change in the manifest's model (evaluation, benchmarks).
void ApplyOverrides(ModelSpec& spec, const InferenceOptions& options, const std::string& where) {
  if ((options.diffusionSamples > 0 || options.diffusionSeed >= 0) && !spec.isDiffusion) {
    throw Error(ErrorKind::kBadInput, where +
                                          ": diffusion samples or a seed were given for a model "
                                          "that is not a diffusion model");
  }
  if (options.diffusionSeed >= 0) spec.sampler.seed = static_cast<uint64_t>(options.diffusionSeed);
  if (options.diffusionSamples > 0) {
    if (options.diffusionSamples > 64) {
      throw Error(ErrorKind::kBadInput, where + ": at most 64 diffusion samples, not " +
                                            std::to_string(options.diffusionSamples));
    }
    spec.sampler.samples = options.diffusionSamples;
  }
  if (options.augmentationUncertainty) {
    if (spec.isDiffusion) {
      throw Error(ErrorKind::kBadInput,
                  where +
                      ": a diffusion model gives its uncertainty from its samples, not by "
                      "test-time augmentation");
    }
    spec.augmentationUncertainty = true;
  }
}

}  // namespace

std::string ResolveDevice(const std::string& requested) {
  CheckDeviceName(requested);
  if (requested == "auto") return torch::cuda::is_available() ? "cuda:0" : "cpu";
  return requested == "cuda" ? "cuda:0" : requested;
}

std::string EffectiveDevice(const std::string& requested) {
  const std::string device = ResolveDevice(requested);
  return device != "cpu" && !torch::cuda::is_available() ? "cpu" : device;
}

struct TorchModel::Impl {
  ModelSpec spec;
  c10::Device device{c10::kCPU};
  bool fp16 = false;
  InferenceOptions options;
  LoadedModule loaded;
  LowPrecisionReport lowPrecision;
  double macsPerPixel = 0;
  std::unique_ptr<const DomainCheck> domain;
  std::unique_ptr<Slots> slots;
  // Loaded on first need, when the GPU runs out of memory even at batch size 1.
  mutable std::mutex fallbackMutex;
  mutable LoadedModule cpuFallback;

  EngineOptions Engine(const c10::Device& d, bool half) const {
    EngineOptions e;
    e.device = d;
    e.fp16 = half;
    e.maxBatch = options.maxBatch > 0 ? options.maxBatch : spec.maxBatch;
    e.memoryBudgetBytes = options.memoryBudgetBytes;
    // The simulated limit stands for the memory of the model's own device only.
    if (d == device) e.simulatedDeviceMemoryBytes = options.simulatedDeviceMemoryBytes;
    return e;
  }

  // Runs `run` with the model's options, then with the fallbacks for out of memory.
  using EngineRun =
      std::function<Volume(const ModelSpec&, const LoadedModule&, const EngineOptions&)>;
  Volume RunWithFallbacks(const Volume& input, const RunContext& context,
                          const EngineRun& run) const {
    SlotGuard slot(*slots);
    // Out of memory first halves the batch (in the engine), then the tiles (here, down to
    // 64 pixels); at last a CUDA model runs the series on the CPU, and a CPU model fails.
    ModelSpec tiled = spec;
    const int smallest = 64;
    const int whole = static_cast<int>(std::max(input.rows, input.columns));
    std::string lastError;
    while (true) {
      try {
        return run(tiled, loaded, Engine(device, fp16));
      } catch (const Error& e) {
        const bool outOfMemory = std::string(e.what()).rfind("out of memory", 0) == 0;
        if (!outOfMemory) throw;
        lastError = e.what();
      }
      const int current = tiled.tileSize > 0 ? std::min(tiled.tileSize, whole) : whole;
      if (current / 2 < smallest) break;
      tiled.tileSize = current / 2;
      tiled.tileOverlap = std::min(tiled.tileOverlap, tiled.tileSize / 4);
      context.Warn("model '" + spec.name + "' ran out of memory on " + device.str() +
                   "; retrying with tiles of " + std::to_string(tiled.tileSize) + " pixels");
    }
    if (!device.is_cuda()) {
      throw Error(ErrorKind::kUnsupported,
                  "model '" + spec.name + "' ran out of memory on " + device.str() +
                      " even with tiles of " + std::to_string(tiled.tileSize) + " pixels (" +
                      lastError + "); lower Enhance.ConcurrentSeries or give the node more memory");
    }
    context.Warn("model '" + spec.name +
                 "' ran out of GPU memory even with small tiles; "
                 "this series was processed on the CPU");
    LoadedModule cpu;
    {
      std::lock_guard<std::mutex> lock(fallbackMutex);
      if (!cpuFallback.module) {
        cpuFallback = LoadModule(spec, c10::Device(c10::kCPU), false, options);
      }
      cpu = cpuFallback;
    }
    return run(spec, cpu, Engine(c10::Device(c10::kCPU), false));
  }

  bool ProducesUncertainty() const {
    return (spec.isDiffusion && spec.sampler.samples >= 2) || spec.augmentationUncertainty;
  }

  bool WantsUncertainty(const RunContext& context) const {
    return context.uncertainty != nullptr && ProducesUncertainty();
  }

  // The engine's options for a run: the uncertainty volume when it is wanted and given.
  EngineOptions ForRun(EngineOptions engine, const RunContext& context) const {
    engine.uncertainty = WantsUncertainty(context) ? context.uncertainty : nullptr;
    return engine;
  }

  // The function the slice engine runs: the network on a batch, or for a diffusion model
  // the whole sampling loop on it (its mean; cancellation is honoured between steps).
  PlacedSliceFunction Function(const LoadedModule& version, const RunContext& context) const {
    const auto m = version.module;
    const CpuLayout layout = version.layout;
    if (!spec.isDiffusion) {
      if (WantsUncertainty(context)) {
        return [m, layout](const at::Tensor& batch, const BatchPlacement&) {
          return Augmented(batch, [&](const at::Tensor& x) {
            return m->forward({Prepare(x, layout)}).toTensor();
          });
        };
      }
      return [m, layout](const at::Tensor& batch, const BatchPlacement&) {
        return m->forward({Prepare(batch, layout)}).toTensor().contiguous();
      };
    }
    const DenoiserFunction network = [m, layout](const at::Tensor& xt, const at::Tensor& t,
                                                 const at::Tensor& condition) {
      return m->forward({Prepare(xt, layout), t, Prepare(condition, layout)}).toTensor();
    };
    const SamplerSpec sampler = spec.sampler;
    const bool spread = WantsUncertainty(context);
    return [network, sampler, spread, &context](const at::Tensor& batch,
                                                const BatchPlacement& placement) {
      const SamplerProgress progress = [&context, &placement](int64_t done, int64_t total) {
        placement.partial(static_cast<double>(done) / static_cast<double>(total));
        return !(context.cancelled && context.cancelled());
      };
      const SampledBatch sampled =
          SampleBatch(sampler, network, batch, placement, context.randomKey, progress);
      return spread ? at::cat({sampled.mean, sampled.deviation}, 1).contiguous()
                    : sampled.mean.contiguous();
    };
  }
};

namespace {

// The archive's multiply-accumulates per pixel, counted on the graph as saved; 0 when they
// cannot be counted (they are informative only).
double CountArchiveMacs(const ModelSpec& spec) {
  try {
    torch::jit::Module plain = torch::jit::load(spec.archive.string(), c10::Device(c10::kCPU));
    plain.eval();
    return CountMacsPerPixel(plain, spec);
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

TorchModel::TorchModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TorchModel::~TorchModel() = default;

std::shared_ptr<const TorchModel> TorchModel::Load(const std::filesystem::path& folder,
                                                   const InferenceOptions& options) {
  UseConfiguredThreadsHere();  // the versions are timed with the threads they will run with
  auto impl = std::make_unique<Impl>();
  impl->spec = LoadManifest(folder);
  ModelSpec& spec = impl->spec;
  const std::string where = folder.string();
  if (!std::filesystem::is_regular_file(spec.archive)) {
    throw Error(ErrorKind::kNotFound, where + ": the archive " + spec.archive.filename().string() +
                                          " named in manifest.json does not exist");
  }
  if (spec.uid.empty()) {
    // The identity of a model is its weights: hash the archive.
    spec.uid = UidFromName(spec.name + "/" + spec.version + "/" + ReadWholeFile(spec.archive));
  }
  ApplyOverrides(spec, options, where);
  impl->options = options;
  impl->slots = std::make_unique<Slots>(options.maxConcurrentRuns);
  impl->device = c10::Device(EffectiveDevice(options.device));
  impl->fp16 = spec.allowFp16 && impl->device.is_cuda();

  try {
    impl->loaded = LoadModule(spec, impl->device, impl->fp16, options, &impl->lowPrecision);
  } catch (const c10::Error& e) {
    throw Error(ErrorKind::kBadInput,
                where + ": " + spec.archive.filename().string() +
                    " is not a loadable TorchScript archive: " + e.what_without_backtrace());
  }

  impl->macsPerPixel = CountArchiveMacs(spec);

  // Validate the contract on a small input; this also warms up the model.
  const int64_t side = (32 + spec.sizeMultiple - 1) / spec.sizeMultiple * spec.sizeMultiple;
  const int64_t channels = spec.InputChannels();
  try {
    c10::InferenceMode guard;
    at::Tensor dummy =
        at::rand({1, channels, side, side}).to(impl->device, impl->fp16 ? at::kHalf : at::kFloat);
    const c10::IValue result =
        impl->loaded.module->forward(ForwardArguments(spec, Prepare(dummy, impl->loaded.layout)));
    if (!result.isTensor()) {
      throw Error(ErrorKind::kBadInput, where + ": forward() must return one tensor");
    }
    const at::Tensor out = result.toTensor();
    const std::vector<int64_t> expected{1, 1, side * spec.inPlaneScale, side * spec.inPlaneScale};
    if (out.sizes().vec() != expected) {
      throw Error(ErrorKind::kBadInput,
                  where + ": for an input of shape [1, " + std::to_string(channels) + ", " +
                      std::to_string(side) + ", " + std::to_string(side) + "] the model returned " +
                      c10::str(out.sizes()) + "; a " + spec.task + " model with scale " +
                      std::to_string(spec.inPlaneScale) + " and " + std::to_string(channels) +
                      " input channel(s) must return " + c10::str(at::IntArrayRef(expected)));
    }
  } catch (const c10::Error& e) {
    const std::string shape = "[1, " + std::to_string(channels) + ", " + std::to_string(side) +
                              ", " + std::to_string(side) + "]";
    throw Error(
        ErrorKind::kBadInput,
        where + ": the model fails on " +
            (spec.isDiffusion ? "forward(x_t [1, 1, " + std::to_string(side) + ", " +
                                    std::to_string(side) + "], t [1], condition " + shape + ")"
                              : "a " + shape + " input") +
            " (" + std::to_string(channels) +
            " channels from the manifest's slice_context): " + e.what_without_backtrace());
  }
  // A defect of the calibration input shows on every machine, not only where the loader
  // has already read it to compare bf16 with float.
  if ((spec.lowPrecision.bf16 || spec.lowPrecision.int8) && !impl->lowPrecision.compared &&
      !impl->lowPrecision.int8.compared) {
    ReadCalibration(spec);
  }
  if (spec.hasDomainCheck) {
    impl->domain = DomainCheck::Load(
        spec.domainCheck, impl->device.str(), where,
        options.optimizeForCpu ? DomainCheckCpu::kFastest : DomainCheckCpu::kAsSaved);
  }
  return std::shared_ptr<const TorchModel>(new TorchModel(std::move(impl)));
}

const ModelInfo& TorchModel::Info() const { return impl_->spec; }

std::string TorchModel::Device() const { return impl_->device.str(); }

double TorchModel::MacsPerPixel() const { return impl_->macsPerPixel; }

std::string TorchModel::Parameters() const {
  const ModelSpec& s = impl_->spec;
  std::string text = "TorchScript on " + impl_->device.str();
  if (impl_->fp16) text += " fp16";
  if (impl_->device.is_cpu()) {
    text += std::string(" (") + Describe(impl_->loaded.layout);
    const LowPrecisionReport::Int8& int8 = impl_->lowPrecision.int8;
    if (impl_->loaded.layout == CpuLayout::kFusedInt8 && int8.layers < int8.wideLayers) {
      text += ", " + std::to_string(int8.layers) + " of " + std::to_string(int8.wideLayers) +
              " wide layers in int8";
    }
    text += ")";
  }
  if (s.sliceContext > 0) text += ", " + std::to_string(s.InputChannels()) + " slices as context";
  if (s.tileSize > 0) text += ", tiles " + std::to_string(s.tileSize) + " px";
  if (s.isDiffusion) {
    const SamplerSpec& d = s.sampler;
    text += ", diffusion: DDIM " + std::to_string(InferenceTimesteps(d).size()) + " steps, eta " +
            c10::str(d.eta) + ", " + std::to_string(d.samples) + " sample(s), seed " +
            std::to_string(d.seed);
  }
  return text;
}

Volume TorchModel::Run(const Volume& input, const RunContext& context) const {
  return impl_->RunWithFallbacks(
      input, context,
      [&](const ModelSpec& spec, const LoadedModule& module, const EngineOptions& options) {
        FusedOutputScope recycle;
        return RunSliceEngine(input, spec, impl_->Function(module, context),
                              impl_->ForRun(options, context), context);
      });
}

bool TorchModel::TakesPrecomputedSlices() const { return SlicesAreIndependent(impl_->spec); }

bool TorchModel::ProducesUncertainty() const { return impl_->ProducesUncertainty(); }

const DomainCheck* TorchModel::Domain() const { return impl_->domain.get(); }

const LowPrecisionReport* TorchModel::LowPrecision() const {
  return impl_->spec.lowPrecision.bf16 || impl_->spec.lowPrecision.int8 ||
                 impl_->lowPrecision.runs != "float"
             ? &impl_->lowPrecision
             : nullptr;
}

Volume TorchModel::RunReusing(Volume& input, const RunContext& context) const {
  if (!CanRunInPlace(impl_->spec)) return Run(input, context);
  // A run that fails part-way resumes where it stopped: finished slices hold output.
  EngineResume resume;
  impl_->RunWithFallbacks(
      input, context,
      [&](const ModelSpec& spec, const LoadedModule& module, const EngineOptions& options) {
        FusedOutputScope recycle;
        RunSliceEngineInPlace(input, spec, impl_->Function(module, context),
                              impl_->ForRun(options, context), context, resume);
        return Volume();
      });
  return std::move(input);
}

}  // namespace enhance
