// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/TorchModel.h"

#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>

#include "SliceEngine.h"
#include "enhance/Error.h"
#include "enhance/ModelSpec.h"
#include "enhance/Slots.h"
#include "enhance/Uid.h"

namespace enhance {
namespace {

std::string ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  std::ostringstream content;
  content << stream.rdbuf();
  return content.str();
}

// Median seconds of a few forward passes on a tile-sized input.
double TimeForward(torch::jit::Module& module, const at::Tensor& input) {
  c10::InferenceMode guard;
  module.forward({input});  // warm-up (and, for a frozen graph, its one-time rewrites)
  std::vector<double> times;
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    module.forward({input});
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[1];
}

// Loads the archive onto the device. On the CPU, when asked, the graph is also frozen
// and optimised for inference (fused operators, oneDNN layouts), and that version is kept
// only if it is faster on this model: for tiny networks the layout conversions cost
// more than they save. `optimised` tells which was kept.
torch::jit::Module LoadModule(const ModelSpec& spec, const c10::Device& device, bool fp16,
                              bool optimize, int64_t batch, bool* optimised = nullptr) {
  torch::jit::Module module = torch::jit::load(spec.archive.string(), device);
  module.eval();
  if (fp16) module.to(torch::kHalf);
  if (optimised) *optimised = false;
  if (optimize && device.is_cpu()) {
    try {
      torch::jit::Module copy = module.clone();
      torch::jit::Module candidate = torch::jit::optimize_for_inference(copy);
      const int64_t side = spec.tileSize > 0 ? std::min(spec.tileSize, 256) : 256;
      const at::Tensor input =
          at::rand({std::max<int64_t>(1, batch), spec.InputChannels(), side, side});
      if (TimeForward(candidate, input) < TimeForward(module, input)) {
        if (optimised) *optimised = true;
        return candidate;
      }
    } catch (const c10::Error&) {
      // Models the optimiser cannot freeze (e.g. with mutable attributes) run as they are.
    }
  }
  return module;
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
  std::shared_ptr<torch::jit::Module> module;
  double macsPerPixel = 0;
  bool optimised = false;  // frozen and optimised for the CPU
  std::unique_ptr<Slots> slots;
  // Loaded on first need, when the GPU runs out of memory even at batch size 1.
  mutable std::mutex fallbackMutex;
  mutable std::shared_ptr<torch::jit::Module> cpuFallback;

  EngineOptions Engine(const c10::Device& d, bool half) const {
    EngineOptions e;
    e.device = d;
    e.fp16 = half;
    e.maxBatch = options.maxBatch > 0 ? options.maxBatch : spec.maxBatch;
    e.memoryBudgetBytes = options.memoryBudgetBytes;
    return e;
  }

  static SliceFunction Function(std::shared_ptr<torch::jit::Module> m) {
    return [m](const at::Tensor& batch) { return m->forward({batch}).toTensor(); };
  }
};

TorchModel::TorchModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TorchModel::~TorchModel() = default;

std::shared_ptr<const TorchModel> TorchModel::Load(const std::filesystem::path& folder,
                                                   const InferenceOptions& options) {
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
  impl->options = options;
  impl->slots = std::make_unique<Slots>(options.maxConcurrentRuns);
  impl->device = c10::Device(EffectiveDevice(options.device));
  impl->fp16 = spec.allowFp16 && impl->device.is_cuda();

  try {
    impl->module = std::make_shared<torch::jit::Module>(
        LoadModule(spec, impl->device, impl->fp16, options.optimizeForCpu,
                   options.maxBatch > 0 ? options.maxBatch : spec.maxBatch, &impl->optimised));
  } catch (const c10::Error& e) {
    throw Error(ErrorKind::kBadInput,
                where + ": " + spec.archive.filename().string() +
                    " is not a loadable TorchScript archive: " + e.what_without_backtrace());
  }

  try {
    const torch::jit::Module plain =
        torch::jit::load(spec.archive.string(), c10::Device(c10::kCPU));
    for (const auto& parameter : plain.parameters()) {
      if (parameter.dim() == 4) impl->macsPerPixel += static_cast<double>(parameter.numel());
    }
  } catch (const c10::Error&) {
    // Counting is informative only.
  }

  // Validate the contract on a small input; this also warms up the model.
  const int64_t side = 32;
  const int64_t channels = spec.InputChannels();
  try {
    c10::InferenceMode guard;
    at::Tensor dummy =
        at::rand({1, channels, side, side}).to(impl->device, impl->fp16 ? at::kHalf : at::kFloat);
    const c10::IValue result = impl->module->forward({dummy});
    if (!result.isTensor()) {
      throw Error(ErrorKind::kBadInput, where + ": forward() must return one tensor");
    }
    const at::Tensor out = result.toTensor();
    const std::vector<int64_t> expected{1, 1, side * spec.inPlaneScale, side * spec.inPlaneScale};
    if (out.sizes().vec() != expected) {
      throw Error(ErrorKind::kBadInput,
                  where + ": for an input of shape [1, " + std::to_string(channels) +
                      ", 32, 32] the model returned " + c10::str(out.sizes()) + "; a " + spec.task +
                      " model with scale " + std::to_string(spec.inPlaneScale) + " and " +
                      std::to_string(channels) + " input channel(s) must return " +
                      c10::str(at::IntArrayRef(expected)));
    }
  } catch (const c10::Error& e) {
    throw Error(ErrorKind::kBadInput,
                where + ": the model fails on a [1, " + std::to_string(channels) +
                    ", 32, 32] input (" + std::to_string(channels) +
                    " channels from the manifest's slice_context): " + e.what_without_backtrace());
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
  if (impl_->optimised) text += " (optimised graph)";
  if (s.sliceContext > 0) text += ", " + std::to_string(s.InputChannels()) + " slices as context";
  if (s.tileSize > 0) text += ", tiles " + std::to_string(s.tileSize) + " px";
  return text;
}

Volume TorchModel::Run(const Volume& input, const RunContext& context) const {
  SlotGuard slot(*impl_->slots);
  // On the GPU, out-of-memory first halves the batch (in the engine), then the tiles
  // (here, down to 64 pixels), and at last the series runs on the CPU.
  ModelSpec spec = impl_->spec;
  while (true) {
    try {
      return RunSliceEngine(input, spec, Impl::Function(impl_->module),
                            impl_->Engine(impl_->device, impl_->fp16), context);
    } catch (const Error& e) {
      const bool outOfMemory = std::string(e.what()).rfind("out of memory", 0) == 0;
      if (!outOfMemory || !impl_->device.is_cuda()) throw;
    }
    const int smallest = 64;
    const int current =
        spec.tileSize > 0 ? spec.tileSize : static_cast<int>(std::max(input.rows, input.columns));
    if (current / 2 < smallest) break;
    spec.tileSize = current / 2;
    spec.tileOverlap = std::min(spec.tileOverlap, spec.tileSize / 4);
    context.Warn("model '" + spec.name + "' ran out of GPU memory; retrying with tiles of " +
                 std::to_string(spec.tileSize) + " pixels");
  }
  context.Warn("model '" + impl_->spec.name +
               "' ran out of GPU memory even with small tiles; "
               "this series was processed on the CPU");
  std::shared_ptr<torch::jit::Module> cpu;
  {
    std::lock_guard<std::mutex> lock(impl_->fallbackMutex);
    if (!impl_->cpuFallback) {
      impl_->cpuFallback = std::make_shared<torch::jit::Module>(
          LoadModule(impl_->spec, c10::Device(c10::kCPU), false, impl_->options.optimizeForCpu,
                     impl_->options.maxBatch > 0 ? impl_->options.maxBatch : impl_->spec.maxBatch));
    }
    cpu = impl_->cpuFallback;
  }
  return RunSliceEngine(input, impl_->spec, Impl::Function(cpu),
                        impl_->Engine(c10::Device(c10::kCPU), false), context);
}

}  // namespace enhance
