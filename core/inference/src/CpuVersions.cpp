// SPDX-License-Identifier: GPL-3.0-or-later
#include "CpuVersions.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "DiffusionSampler.h"
#include "FusedConvolution.h"
#include "enhance/base/Error.h"

namespace enhance {
namespace {

// Seconds of one forward pass.
double TimeOnce(torch::jit::Module& module, const std::vector<c10::IValue>& arguments) {
  c10::InferenceMode guard;
  const auto start = std::chrono::steady_clock::now();
  module.forward(arguments);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One way of running the model on the CPU, built from the module as loaded.
std::shared_ptr<torch::jit::Module> Build(const torch::jit::Module& module, CpuLayout layout) {
  switch (layout) {
    case CpuLayout::kChannelsLast: {
      torch::jit::Module channelsLast = module.clone();
      torch::NoGradGuard noGrad;
      for (at::Tensor parameter : channelsLast.parameters()) {
        if (parameter.dim() == 4) {
          parameter.set_data(parameter.contiguous(at::MemoryFormat::ChannelsLast));
        }
      }
      return std::make_shared<torch::jit::Module>(channelsLast);
    }
    case CpuLayout::kFused:
    case CpuLayout::kFusedBf16: {
      int replaced = 0;
      torch::jit::Module fused = FuseConvolutions(
          module, &replaced,
          layout == CpuLayout::kFusedBf16 ? FusedPrecision::kBFloat16 : FusedPrecision::kFloat);
      // Nothing to fuse: the same graph as channels-last, and not worth a place.
      if (replaced == 0) return nullptr;
      return std::make_shared<torch::jit::Module>(fused);
    }
    case CpuLayout::kOptimised: {
      torch::jit::Module copy = module.clone();
      return std::make_shared<torch::jit::Module>(torch::jit::optimize_for_inference(copy));
    }
    default:
      return std::make_shared<torch::jit::Module>(module);
  }
}

// |a - b| of the two versions on the calibration input: its mean and 99.9th percentile.
void CompareOnCalibration(const ModelSpec& spec, torch::jit::Module& reference,
                          torch::jit::Module& candidate, LowPrecisionReport& report) {
  c10::InferenceMode guard;
  FusedOutputScope recycle;
  const at::Tensor calibration = ReadCalibration(spec);
  // A diffusion model's x_t from a generator of its own: the same deviation at every load.
  const std::vector<c10::IValue> arguments =
      ForwardArguments(spec, calibration.contiguous(at::MemoryFormat::ChannelsLast),
                       at::detail::createCPUGenerator(0));
  const at::Tensor expected = reference.forward(arguments).toTensor().to(at::kFloat);
  const at::Tensor actual = candidate.forward(arguments).toTensor().to(at::kFloat);
  const at::Tensor deviation = (actual - expected).abs().flatten().to(at::kDouble);
  report.compared = true;
  report.meanDeviation = deviation.mean().item<double>();
  const int64_t rank = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(0.999 * static_cast<double>(deviation.numel()))));
  report.p999Deviation = std::get<0>(deviation.kthvalue(rank)).item<double>();
}

std::string Figure(double value) {
  std::ostringstream text;
  text.precision(2);
  text << std::scientific << value;
  return text.str();
}

// A version being considered, with its timing.
struct Candidate {
  LoadedModule loaded;
  std::vector<c10::IValue> arguments;  // the timing input in the layout this version takes
  double fastest = std::numeric_limits<double>::infinity();
  bool failed = false;
};

Candidate* Find(std::vector<Candidate>& candidates, CpuLayout layout) {
  for (Candidate& c : candidates) {
    if (c.loaded.layout == layout) return &c;
  }
  return nullptr;
}

// Why bf16 is not tried for this model with these options ("" when it is, or when the
// manifest does not allow it).
std::string WhyNotBf16(const InferenceOptions& options) {
  if (options.precision == "float") return "float is forced by the options";
  if (options.cpuLayout != "auto" && options.cpuLayout != "fused") {
    return "bf16 runs with fused convolutions only; the " + options.cpuLayout +
           " layout was asked for";
  }
  if (!CpuHasBf16()) {
    return "this processor has no bf16 instructions (AVX-512 BF16 or AMX), or this build does "
           "not call oneDNN";
  }
  return "";
}

// Compares the bf16 version with the float one on the calibration input, and drops it
// (with the reason in `decided`) beyond the manifest's tolerance or when it was not built.
void CheckBf16(const ModelSpec& spec, std::vector<Candidate>& candidates,
               LowPrecisionReport& decided) {
  Candidate* low = Find(candidates, CpuLayout::kFusedBf16);
  Candidate* high = Find(candidates, CpuLayout::kFused);
  if (!low || !high) {
    decided.note = "the network has no convolution the fused operator takes";
    candidates.erase(
        std::remove_if(candidates.begin(), candidates.end(),
                       [](const Candidate& c) { return c.loaded.layout == CpuLayout::kFusedBf16; }),
        candidates.end());
    return;
  }
  CompareOnCalibration(spec, *high->loaded.module, *low->loaded.module, decided);
  const LowPrecisionSpec& allowed = spec.lowPrecision;
  if (decided.meanDeviation > allowed.meanTolerance ||
      decided.p999Deviation > allowed.p999Tolerance || !std::isfinite(decided.meanDeviation)) {
    decided.note = "bf16 deviates from float by a mean of " + Figure(decided.meanDeviation) +
                   " (tolerance " + Figure(allowed.meanTolerance) +
                   ") and a 99.9th percentile of " + Figure(decided.p999Deviation) +
                   " (tolerance " + Figure(allowed.p999Tolerance) + ") on " +
                   allowed.calibration.filename().string() + "; float runs";
    low->failed = true;
  }
}

// One small item: enough to rank the versions, cheap enough for start-up. They are timed
// in turns, keeping each one's fastest of five passes (after one to warm up), so that a
// moment of other work on the machine does not decide between them. A version that fails
// on the input drops out. Returns the fastest, or null when every one failed.
const Candidate* Fastest(const ModelSpec& spec, std::vector<Candidate>& candidates) {
  const int64_t side = (spec.tileSize > 0 ? std::min(spec.tileSize, 128) : 128) /
                       spec.sizeMultiple * spec.sizeMultiple;
  const at::Tensor input = at::rand({1, spec.InputChannels(), side, side});
  for (Candidate& candidate : candidates) {
    candidate.arguments = ForwardArguments(spec, Prepare(input, candidate.loaded.layout));
  }
  for (int round = 0; round < 6; ++round) {
    for (Candidate& candidate : candidates) {
      if (candidate.failed) continue;
      try {
        FusedOutputScope recycle;
        const double time = TimeOnce(*candidate.loaded.module, candidate.arguments);
        if (round > 0) candidate.fastest = std::min(candidate.fastest, time);
      } catch (const std::exception&) {
        candidate.failed = true;
      }
    }
  }
  const Candidate* best = nullptr;
  for (const Candidate& candidate : candidates) {
    if (!candidate.failed && (!best || candidate.fastest < best->fastest)) best = &candidate;
  }
  return best;
}

// What the timing decided about bf16, into `decided`.
void ExplainBf16(std::vector<Candidate>& candidates, const Candidate& best,
                 LowPrecisionReport& decided) {
  const Candidate* low = Find(candidates, CpuLayout::kFusedBf16);
  const Candidate* high = Find(candidates, CpuLayout::kFused);
  if (low && high && decided.note.empty()) {
    decided.floatSeconds = high->fastest;
    decided.bf16Seconds = low->fastest;
    if (low->failed) {
      decided.note = "bf16 failed on the timing input; float runs";
    } else if (&best != low) {
      decided.note = "bf16 was not the fastest (" + Figure(low->fastest * 1000) + " ms against " +
                     Figure(best.fastest * 1000) + " ms a pass); float runs";
    }
  }
  if (best.loaded.layout == CpuLayout::kFusedBf16) decided.runs = "bf16";
}

// The layouts asked for: each by name, or "auto"; Error(kBadInput) for an unknown name or
// a precision that cannot run with them (bf16 runs on the CPU, `cpu`, only).
std::vector<CpuLayout> LayoutsAsked(const InferenceOptions& options, bool cpu) {
  const std::string& wanted = options.cpuLayout;
  const std::string& precision = options.precision;
  if (precision != "auto" && precision != "float" && precision != "bf16") {
    throw Error(ErrorKind::kBadInput,
                "CPU precision '" + precision + "' must be auto, float or bf16");
  }
  if (precision == "bf16" && (!cpu || (wanted != "auto" && wanted != "fused"))) {
    throw Error(ErrorKind::kBadInput,
                "bf16 runs on the CPU with fused convolutions only (layout auto or fused)");
  }
  if (precision == "bf16") return {CpuLayout::kFusedBf16};
  if (wanted == "auto") return {CpuLayout::kPlain, CpuLayout::kChannelsLast, CpuLayout::kFused};
  const std::map<std::string, CpuLayout> named{{"plain", CpuLayout::kPlain},
                                               {"channels-last", CpuLayout::kChannelsLast},
                                               {"fused", CpuLayout::kFused},
                                               {"optimised", CpuLayout::kOptimised}};
  if (named.count(wanted) == 0) {
    throw Error(ErrorKind::kBadInput, "CPU layout '" + wanted +
                                          "' must be auto, plain, channels-last, fused or "
                                          "optimised");
  }
  return {named.at(wanted)};
}

}  // namespace

std::vector<c10::IValue> ForwardArguments(const ModelSpec& spec, const at::Tensor& condition,
                                          c10::optional<at::Generator> generator) {
  if (!spec.isDiffusion) return {condition};
  const std::vector<int> steps = InferenceTimesteps(spec.sampler);
  const double first = steps.empty() ? 0.0 : steps.front();
  const double time = spec.sampler.timeInput == SamplerSpec::TimeInput::kFraction
                          ? first / spec.sampler.trainingTimesteps
                          : first;
  at::Tensor xt = at::randn({condition.size(0), 1, condition.size(2), condition.size(3)}, generator,
                            condition.options());
  if (condition.is_contiguous(at::MemoryFormat::ChannelsLast) && !condition.is_contiguous()) {
    xt = xt.contiguous(at::MemoryFormat::ChannelsLast);
  }
  return {xt, at::full({condition.size(0)}, time, condition.options()), condition};
}

std::string ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  std::ostringstream content;
  content << stream.rdbuf();
  return content.str();
}

const char* Describe(CpuLayout layout) {
  switch (layout) {
    case CpuLayout::kChannelsLast:
      return "channels-last";
    case CpuLayout::kFused:
      return "fused convolutions";
    case CpuLayout::kFusedBf16:
      return "fused convolutions, bf16";
    case CpuLayout::kOptimised:
      return "optimised graph";
    default:
      return "plain graph";
  }
}

at::Tensor Prepare(const at::Tensor& batch, CpuLayout layout) {
  return layout == CpuLayout::kChannelsLast || layout == CpuLayout::kFused ||
                 layout == CpuLayout::kFusedBf16
             ? batch.contiguous(at::MemoryFormat::ChannelsLast)
             : batch;
}

at::Tensor ReadCalibration(const ModelSpec& spec) {
  const std::filesystem::path& file = spec.lowPrecision.calibration;
  const std::string where = file.string() + " (the manifest's low_precision.calibration)";
  if (!std::filesystem::is_regular_file(file)) {
    throw Error(ErrorKind::kNotFound, where + " does not exist");
  }
  const std::string bytes = ReadWholeFile(file);
  at::Tensor tensor;
  try {
    const c10::IValue value =
        torch::jit::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
    if (value.isTensor()) tensor = value.toTensor();
  } catch (const c10::Error& e) {
    throw Error(ErrorKind::kBadInput, where + " is not a tensor file written by torch.save: " +
                                          e.what_without_backtrace());
  }
  if (!tensor.defined() || tensor.dim() != 4 || tensor.size(0) < 1 ||
      tensor.size(1) != spec.InputChannels() || tensor.size(2) % spec.sizeMultiple != 0 ||
      tensor.size(3) % spec.sizeMultiple != 0 || tensor.size(2) < 8 || tensor.size(3) < 8) {
    throw Error(ErrorKind::kBadInput,
                where + " must hold one tensor [N, " + std::to_string(spec.InputChannels()) +
                    ", H, W] of network inputs, H and W multiples of " +
                    std::to_string(spec.sizeMultiple) + " (at least 8)" +
                    (tensor.defined() ? "; it holds " + c10::str(tensor.sizes()) : ""));
  }
  return tensor.to(at::kFloat).contiguous();
}

LoadedModule LoadModule(const ModelSpec& spec, const c10::Device& device, bool fp16,
                        const InferenceOptions& options, LowPrecisionReport* report) {
  LowPrecisionReport unused;
  LowPrecisionReport& decided = report ? *report : unused;
  decided = LowPrecisionReport();
  torch::jit::Module module = torch::jit::load(spec.archive.string(), device);
  module.eval();
  if (fp16) module.to(torch::kHalf);
  const LoadedModule plain{std::make_shared<torch::jit::Module>(module), CpuLayout::kPlain};
  const bool cpu = device.is_cpu() && options.optimizeForCpu;
  std::vector<CpuLayout> layouts = LayoutsAsked(options, cpu);
  if (!cpu || layouts == std::vector<CpuLayout>{CpuLayout::kPlain}) return plain;
  if (options.precision == "bf16") {
    auto built = Build(module, CpuLayout::kFusedBf16);
    if (!built) {
      throw Error(ErrorKind::kBadInput,
                  "model '" + spec.name +
                      "': bf16 was asked for, but the network has no convolution the fused "
                      "operator takes (2-D, stride 1, one group, constant weights); run it in "
                      "float");
    }
    decided.runs = "bf16";
    return {built, CpuLayout::kFusedBf16};
  }
  if (spec.lowPrecision.bf16) decided.note = WhyNotBf16(options);
  const bool tryBf16 = spec.lowPrecision.bf16 && decided.note.empty();
  if (tryBf16) layouts.push_back(CpuLayout::kFusedBf16);

  std::vector<Candidate> candidates;
  for (CpuLayout layout : layouts) {
    try {
      if (auto built = Build(module, layout)) candidates.push_back({{built, layout}, {}});
    } catch (const std::exception&) {
      // A graph that insists on contiguous tensors, or that cannot be frozen (mutable
      // attributes), runs in the other ways.
    }
  }
  if (tryBf16) CheckBf16(spec, candidates, decided);
  if (candidates.empty()) return plain;
  if (candidates.size() == 1) return candidates.front().loaded;
  const Candidate* best = Fastest(spec, candidates);
  if (!best) return plain;
  ExplainBf16(candidates, *best, decided);
  return best->loaded;
}

}  // namespace enhance
