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
#include "Int8Convolution.h"
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

// The forward arguments of the calibration input. A diffusion model's x_t comes from a
// generator of its own: the same deviation at every load.
std::vector<c10::IValue> CalibrationArguments(const ModelSpec& spec) {
  const at::Tensor calibration = ReadCalibration(spec);
  return ForwardArguments(spec, calibration.contiguous(at::MemoryFormat::ChannelsLast),
                          at::detail::createCPUGenerator(0));
}

// The calibration input during one load: its forward arguments, read from the file once,
// and the reference (fused float) version's output on it, computed once however many lower-
// precision versions are compared with it. Not thread-safe: one load uses it.
class CalibrationRun {
 public:
  explicit CalibrationRun(const ModelSpec& spec) : spec_(spec) {}

  const std::vector<c10::IValue>& Arguments() {
    if (arguments_.empty()) arguments_ = CalibrationArguments(spec_);
    return arguments_;
  }

  // |candidate - reference| on the calibration input: its mean and 99.9th percentile.
  std::pair<double, double> Deviation(torch::jit::Module& reference,
                                      torch::jit::Module& candidate) {
    c10::InferenceMode guard;
    FusedOutputScope recycle;
    if (&reference != reference_) {
      expected_ = reference.forward(Arguments()).toTensor().to(at::kFloat);
      reference_ = &reference;
    }
    const at::Tensor actual = candidate.forward(Arguments()).toTensor().to(at::kFloat);
    const at::Tensor deviation = (actual - expected_).abs().flatten().to(at::kDouble);
    const int64_t rank = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(0.999 * static_cast<double>(deviation.numel()))));
    return {deviation.mean().item<double>(), std::get<0>(deviation.kthvalue(rank)).item<double>()};
  }

 private:
  const ModelSpec& spec_;
  std::vector<c10::IValue> arguments_;
  const torch::jit::Module* reference_ = nullptr;
  at::Tensor expected_;
};

// The int8 version: the fused graph with every wide convolution in int8, calibrated on the
// calibration input (the scales go to `scales`, for MixInt8); null when it has none.
std::shared_ptr<torch::jit::Module> BuildInt8(CalibrationRun& run, const torch::jit::Module& module,
                                              LowPrecisionReport& decided,
                                              Int8Calibration& scales) {
  scales = CalibrateInt8(module, {run.Arguments()});
  int replaced = 0;
  torch::jit::Module int8 = FuseConvolutionsInt8(
      module, scales, std::vector<bool>(scales.Layers(), true), false, &replaced);
  if (replaced == 0) return nullptr;
  decided.int8.layers = decided.int8.wideLayers = replaced;
  return std::make_shared<torch::jit::Module>(int8);
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

// One lower precision being considered: its layout, what the manifest allows, and where
// the report on it goes.
struct Trial {
  const char* name;  // "bf16" | "int8"
  CpuLayout layout;
  double meanTolerance, p999Tolerance;
  bool& compared;
  double &meanDeviation, &p999Deviation, &seconds;
  std::string& note;
};

Trial Bf16Trial(const ModelSpec& spec, LowPrecisionReport& r) {
  return {"bf16",
          CpuLayout::kFusedBf16,
          spec.lowPrecision.meanTolerance,
          spec.lowPrecision.p999Tolerance,
          r.compared,
          r.meanDeviation,
          r.p999Deviation,
          r.bf16Seconds,
          r.note};
}

Trial Int8Trial(const ModelSpec& spec, LowPrecisionReport& r) {
  return {"int8",
          CpuLayout::kFusedInt8,
          spec.lowPrecision.int8MeanTolerance,
          spec.lowPrecision.int8P999Tolerance,
          r.int8.compared,
          r.int8.meanDeviation,
          r.int8.p999Deviation,
          r.int8.seconds,
          r.int8.note};
}

// Why a lower precision is not tried for this model with these options ("" when it is).
std::string WhyNot(const Trial& trial, const InferenceOptions& options) {
  if (options.precision == "float") return "float is forced by the options";
  if (options.precision != "auto") {
    return std::string("the options force ") + options.precision;
  }
  if (options.cpuLayout != "auto" && options.cpuLayout != "fused") {
    return std::string(trial.name) + " runs with fused convolutions only; the " +
           options.cpuLayout + " layout was asked for";
  }
  if (trial.layout == CpuLayout::kFusedBf16 && !CpuHasBf16()) {
    return "this processor has no bf16 instructions (AVX-512 BF16 or AMX), or this build does "
           "not call oneDNN";
  }
  if (trial.layout == CpuLayout::kFusedInt8 && !CpuHasInt8()) {
    return "this processor has no 8-bit dot-product instructions (AVX-512 VNNI, AVX-VNNI or "
           "AMX), or this build does not call oneDNN";
  }
  return "";
}

// Compares the lower-precision version with the fused float one on the calibration input,
// and drops it (with the reason in the report) beyond the manifest's tolerance or when it
// was not built.
void Check(const ModelSpec& spec, CalibrationRun& run, std::vector<Candidate>& candidates,
           const Trial& trial) {
  Candidate* low = Find(candidates, trial.layout);
  Candidate* high = Find(candidates, CpuLayout::kFused);
  if (!low || !high) {
    trial.note =
        "the network has no convolution the fused operator takes in " + std::string(trial.name);
    candidates.erase(
        std::remove_if(candidates.begin(), candidates.end(),
                       [&](const Candidate& c) { return c.loaded.layout == trial.layout; }),
        candidates.end());
    return;
  }
  std::tie(trial.meanDeviation, trial.p999Deviation) =
      run.Deviation(*high->loaded.module, *low->loaded.module);
  trial.compared = true;
  if (trial.meanDeviation > trial.meanTolerance || trial.p999Deviation > trial.p999Tolerance ||
      !std::isfinite(trial.meanDeviation)) {
    trial.note = std::string(trial.name) + " deviates from float by a mean of " +
                 Figure(trial.meanDeviation) + " (tolerance " + Figure(trial.meanTolerance) +
                 ") and a 99.9th percentile of " + Figure(trial.p999Deviation) + " (tolerance " +
                 Figure(trial.p999Tolerance) + ") on " +
                 spec.lowPrecision.calibration.filename().string() + "; " + trial.name +
                 " does not run";
    low->failed = true;
  }
}

// An int8 version beyond its tolerance: the wide convolutions whose int8 costs the least
// accuracy are kept in int8, cheapest first (each ranked by the mean deviation it causes
// alone), as long as the whole stays within the tolerance; the others run in bf16 (float
// on a processor without bf16 instructions). The int8 candidate becomes that mix when at
// least one layer stays in int8. 2n + 1 graphs are built and compared for n wide layers.
void MixInt8(CalibrationRun& run, const torch::jit::Module& module,
             const Int8Calibration& calibration, std::vector<Candidate>& candidates,
             const Trial& trial, LowPrecisionReport& decided) {
  Candidate* low = Find(candidates, CpuLayout::kFusedInt8);
  Candidate* high = Find(candidates, CpuLayout::kFused);
  if (!low || !high || !low->failed || !trial.compared) return;
  const size_t n = calibration.Layers();
  const bool bf16 = CpuHasBf16();
  const auto build = [&](const std::vector<bool>& int8) {
    return std::make_shared<torch::jit::Module>(
        FuseConvolutionsInt8(module, calibration, int8, bf16, nullptr));
  };
  std::vector<std::pair<double, size_t>> cost;
  for (size_t i = 0; i < n; ++i) {
    std::vector<bool> alone(n, false);
    alone[i] = true;
    auto version = build(alone);
    cost.emplace_back(run.Deviation(*high->loaded.module, *version).first, i);
  }
  std::sort(cost.begin(), cost.end());
  std::vector<bool> chosen(n, false);
  std::shared_ptr<torch::jit::Module> best;
  std::pair<double, double> bestDeviation;
  int layers = 0;
  for (const auto& [alone, layer] : cost) {
    chosen[layer] = true;
    auto version = build(chosen);
    const auto deviation = run.Deviation(*high->loaded.module, *version);
    if (deviation.first <= trial.meanTolerance && deviation.second <= trial.p999Tolerance) {
      best = version;
      bestDeviation = deviation;
      ++layers;
    } else {
      chosen[layer] = false;
    }
  }
  if (!best) {
    trial.note += "; no wide convolution alone stays within it in int8";
    return;
  }
  low->loaded.module = best;
  low->failed = false;
  std::tie(trial.meanDeviation, trial.p999Deviation) = bestDeviation;
  trial.note.clear();
  decided.int8.layers = layers;
  decided.int8.wideLayers = static_cast<int>(n);
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

// What the timing decided about a lower precision, into its report.
void Explain(std::vector<Candidate>& candidates, const Candidate& best, const Trial& trial,
             LowPrecisionReport& decided) {
  const Candidate* low = Find(candidates, trial.layout);
  const Candidate* high = Find(candidates, CpuLayout::kFused);
  if (low && high && trial.note.empty()) {
    decided.floatSeconds = high->fastest;
    trial.seconds = low->fastest;
    if (low->failed) {
      trial.note = std::string(trial.name) + " failed on the timing input; it does not run";
    } else if (&best != low) {
      trial.note = std::string(trial.name) + " was not the fastest (" +
                   Figure(low->fastest * 1000) + " ms against " + Figure(best.fastest * 1000) +
                   " ms a pass, " + Describe(best.loaded.layout) + ")";
    }
  }
  if (best.loaded.layout == trial.layout) decided.runs = trial.name;
}

// The layouts asked for: each by name, or "auto"; Error(kBadInput) for an unknown name or
// a precision that cannot run with them (bf16 and int8 run on the CPU, `cpu`, only).
std::vector<CpuLayout> LayoutsAsked(const InferenceOptions& options, bool cpu) {
  const std::string& wanted = options.cpuLayout;
  const std::string& precision = options.precision;
  if (precision != "auto" && precision != "float" && precision != "bf16" && precision != "int8") {
    throw Error(ErrorKind::kBadInput,
                "CPU precision '" + precision + "' must be auto, float, bf16 or int8");
  }
  const bool low = precision == "bf16" || precision == "int8";
  if (low && (!cpu || (wanted != "auto" && wanted != "fused"))) {
    throw Error(ErrorKind::kBadInput, precision +
                                          " runs on the CPU with fused convolutions only (layout "
                                          "auto or fused)");
  }
  if (precision == "bf16") return {CpuLayout::kFusedBf16};
  if (precision == "int8") return {CpuLayout::kFusedInt8};
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
    case CpuLayout::kFusedInt8:
      return "fused convolutions, int8";
    case CpuLayout::kOptimised:
      return "optimised graph";
    default:
      return "plain graph";
  }
}

at::Tensor Prepare(const at::Tensor& batch, CpuLayout layout) {
  return layout == CpuLayout::kChannelsLast || layout == CpuLayout::kFused ||
                 layout == CpuLayout::kFusedBf16 || layout == CpuLayout::kFusedInt8
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
  CalibrationRun run(spec);
  Int8Calibration scales;
  if (options.precision == "bf16" || options.precision == "int8") {
    const bool int8 = options.precision == "int8";
    auto built =
        int8 ? BuildInt8(run, module, decided, scales) : Build(module, CpuLayout::kFusedBf16);
    if (!built) {
      throw Error(ErrorKind::kBadInput,
                  "model '" + spec.name + "': " + options.precision +
                      " was asked for, but the network has no convolution the fused operator "
                      "takes in it (2-D, stride 1, one group, constant weights, 8 inputs or "
                      "more); run it in float");
    }
    decided.runs = options.precision;
    return {built, int8 ? CpuLayout::kFusedInt8 : CpuLayout::kFusedBf16};
  }
  std::vector<Trial> trials;  // those the manifest allows and the options and processor permit
  const auto consider = [&](const Trial& trial) {
    trial.note = WhyNot(trial, options);
    if (trial.note.empty()) trials.push_back(trial);
  };
  if (spec.lowPrecision.bf16) consider(Bf16Trial(spec, decided));
  if (spec.lowPrecision.int8) consider(Int8Trial(spec, decided));

  std::vector<Candidate> candidates;
  for (CpuLayout layout : layouts) {
    try {
      if (auto built = Build(module, layout)) candidates.push_back({{built, layout}, {}});
    } catch (const std::exception&) {
      // A graph that insists on contiguous tensors, or that cannot be frozen (mutable
      // attributes), runs in the other ways.
    }
  }
  for (const Trial& trial : trials) {
    try {
      auto built = trial.layout == CpuLayout::kFusedInt8 ? BuildInt8(run, module, decided, scales)
                                                         : Build(module, trial.layout);
      if (built) candidates.push_back({{built, trial.layout}, {}});
    } catch (const Error&) {
      throw;  // the calibration input: the manifest's defect
    } catch (const std::exception& e) {
      trial.note = std::string(trial.name) + " could not be built: " + e.what();
      continue;
    }
    Check(spec, run, candidates, trial);
    if (trial.layout == CpuLayout::kFusedInt8)
      MixInt8(run, module, scales, candidates, trial, decided);
  }
  if (candidates.empty()) return plain;
  if (candidates.size() == 1) return candidates.front().loaded;
  const Candidate* best = Fastest(spec, candidates);
  if (!best) return plain;
  for (const Trial& trial : trials) Explain(candidates, *best, trial, decided);
  return best->loaded;
}

}  // namespace enhance
