// SPDX-License-Identifier: GPL-3.0-or-later
//
// enhance-train: simulates the training data of a shipped model, trains the network on
// the CPU and writes the model folder (model.pt + manifest.json). Deterministic for a
// thread count (default 1). See models/train_all.sh.
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <string>

#include "CtDenoiseData.h"
#include "Mr2CtData.h"
#include "MrDenoiseData.h"
#include "Normalise.h"
#include "ResidualCnn.h"
#include "SuperResData.h"
#include "Training.h"

namespace {

using namespace enhance::models;

constexpr const char* kUsage =
    "usage: enhance-train MODEL --out DIR [--steps N] [--threads N]\n"
    "                     [--features N] [--layers N]   (the denoisers only)\n"
    "MODEL: ct-denoise | mr-denoise | ct-superres-x2 | mr-superres-x2 | ct-superres-z2 | mr2ct\n"
    "       | ct-denoise-halfres (not shipped)\n"
    "Writes DIR/model.pt and DIR/manifest.json; MODEL_CARD.md is written by hand.\n";

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Tile overlap whose quarter covers the receptive field (docs/models.md), in steps of 8.
int64_t OverlapFor(const ResidualCnn& net) { return (4 * ReceptiveRadius(net) + 7) / 8 * 8; }

Json::Value BaseManifest(const std::string& name, const std::string& task,
                         const std::string& modality, const std::string& use,
                         const ResidualCnn& net) {
  Json::Value m;
  m["name"] = name;
  m["version"] = "1.0.0";
  m["task"] = task;
  m["modalities"].append(modality);
  m["intended_use"] = use;
  m["archive"] = "model.pt";
  m["slice_context"] = Json::Int64(net.inChannels / 2);
  // Whole 512x512 slices in one piece: tiling would compute the overlaps twice.
  m["tile"]["size"] = 512;
  m["tile"]["overlap"] = Json::Int64(OverlapFor(net));
  if (net.unshuffle > 1) m["size_multiple"] = Json::Int64(net.unshuffle);
  m["fp16"] = false;
  m["max_batch"] = 8;
  return m;
}

void Describe(const ResidualCnn& net, const torch::jit::Module& module) {
  std::cout << "network: " << net.layers << " 3x3 convolutions, " << net.features << " features, "
            << net.inChannels << " input channel(s), scale " << net.scale << ", unshuffle "
            << net.unshuffle << "; " << ParameterCount(module) << " parameters; "
            << GmacPer512OutputSlice(net) << " GMAC per 512x512 output slice; receptive radius "
            << ReceptiveRadius(net) << " px\n";
}

// Writes the model folder and reports what the run cost; the exit code of a trainer.
int Finish(torch::jit::Module& module, const Json::Value& manifest, const std::string& out,
           const TrainResult& result, double simulationSeconds) {
  SaveModelFolder(module, manifest, out);
  std::cout << "data simulation: " << simulationSeconds << " s\n"
            << "training: " << result.steps << " steps in " << result.seconds
            << " s; loss (normalised units) " << result.firstLoss << " -> " << result.lastLoss
            << "\n";
  std::cout << "wrote " << out << "\n";
  return 0;
}

// `halfResolution`: the experimental variant whose five convolutions of 48 features run
// at half resolution (pixel unshuffle 2): 4.3 GMAC per slice in layers wide enough for
// CPU convolution kernels to approach their matrix-multiply rate, and a receptive radius
// of 11 px. It is 2-3x faster than ct-denoise on the CPU but loses about half a dB on
// the held-out set, so it is not shipped (docs/performance.md).
// `features` and `layers`, when positive, replace the shipped network's width and depth
// (for experiments; the shipped folder is trained with the defaults).
int TrainCtDenoise(const std::string& out, int64_t steps, bool halfResolution, int64_t features,
                   int64_t layers) {
  auto start = std::chrono::steady_clock::now();
  std::cout << "simulating the training set (low dose = 25% of 1e6 photons per ray)\n";
  const CtPairs pairs = CtDenoiseTrainingSet(std::cout);
  const double simulation = Seconds(start);
  const at::Tensor inputs = ToNetwork(pairs.lowDose, kCtWindow);
  const at::Tensor targets = ToNetwork(pairs.fullDose, kCtWindow);

  // 16 features: a multiple of the CPU's 16-lane vectors, which oneDNN's convolutions run
  // at a larger share of the machine's matrix-multiply rate than 20 (docs/performance.md).
  ResidualCnn net;
  net.features = 16;
  net.layers = 8;
  if (halfResolution) {
    net.features = 48;
    net.layers = 5;
    net.unshuffle = 2;
  }
  if (features > 0) net.features = features;
  if (layers > 0) net.layers = layers;
  torch::jit::Module module = BuildResidualCnn(net, 1);
  Describe(net, module);
  TrainOptions options;
  options.steps = steps > 0 ? steps : 3000;
  options.batch = 16;
  options.patch = 64;
  options.learningRate = 1e-3;
  const TrainResult result = Train(module, inputs, targets, options, std::cout);

  Json::Value manifest =
      BaseManifest(halfResolution ? "ct-denoise-halfres" : "ct-denoise", "denoise", "CT",
                   "Noise reduction of low-dose CT (trained on simulated quarter-dose scans). "
                   "Demonstration model, not for diagnosis.",
                   net);
  // 1.1.0: 8 layers of 16 features instead of 7 of 20.
  manifest["version"] = "1.1.0";
  manifest["input_normalization"]["method"] = "window";
  manifest["input_normalization"]["low"] = kCtWindow.low;
  manifest["input_normalization"]["high"] = kCtWindow.high;
  return Finish(module, manifest, out, result, simulation);
}

// Both images of each MR pair in network units. As the engine will, the window comes from
// the input series (99.5th percentile); a small random error on its width makes the
// network tolerant of other percentile estimates.
std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> NormalisedPairs(
    const std::vector<MrPair>& pairs, uint64_t seed) {
  std::vector<at::Tensor> inputs, targets;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> jitter(0.9, 1.1);
  for (const MrPair& p : pairs) {
    auto [low, high] = PercentileWindow(p.noisy, 99.5);
    high = low + (high - low) * jitter(rng);
    inputs.push_back(ToNetwork(p.noisy, {low, high}));
    targets.push_back(ToNetwork(p.clean, {low, high}));
  }
  return {std::move(inputs), std::move(targets)};
}

int TrainMrDenoise(const std::string& out, int64_t steps, int64_t features, int64_t layers) {
  auto start = std::chrono::steady_clock::now();
  std::cout << "reading " << kMricronTemplates << "/ch2better.nii.gz, adding Rician noise\n";
  const std::vector<MrPair> pairs = MrDenoiseTrainingSet(kMricronTemplates);
  auto [inputs, targets] = NormalisedPairs(pairs, 11);
  for (const MrPair& p : pairs)
    std::cout << "  " << p.label << ": sigma " << p.sigma << " of the maximum\n";
  const double simulation = Seconds(start);

  ResidualCnn net;
  net.features = 20;
  net.layers = 7;
  net.gain = 5.0;
  if (features > 0) net.features = features;
  if (layers > 0) net.layers = layers;
  torch::jit::Module module = BuildResidualCnn(net, 2);
  Describe(net, module);
  TrainOptions options;
  options.steps = steps > 0 ? steps : 1200;
  options.batch = 16;
  options.patch = 64;
  options.learningRate = 1e-3;
  options.backgroundLevel = 0.05;
  options.seed = 2;
  const TrainResult result = Train(module, at::cat(inputs), at::cat(targets), options, std::cout);

  Json::Value manifest = BaseManifest(
      "mr-denoise", "denoise", "MR",
      "Noise reduction of magnitude MR images (trained on T1-weighted head images with "
      "simulated Rician noise). Demonstration model, not for diagnosis.",
      net);
  manifest["input_normalization"]["method"] = "percentile";
  manifest["input_normalization"]["low"] = 0;
  manifest["input_normalization"]["high"] = 99.5;
  return Finish(module, manifest, out, result, simulation);
}

// The network of both in-plane x2 models: it runs on the coarse grid, so it can afford
// more features than the denoisers for the same cost per output slice.
ResidualCnn SuperResNet(double gain) {
  ResidualCnn net;
  net.features = 28;
  net.layers = 8;
  net.scale = 2;
  net.gain = gain;
  return net;
}

int TrainMrSuperRes(const std::string& out, int64_t steps) {
  auto start = std::chrono::steady_clock::now();
  std::cout << "reading ch2better and jhu189 from " << kMricronTemplates
            << ", averaging 2x2 pixels\n";
  const std::vector<MrPair> pairs = MrSuperResTrainingSet(kMricronTemplates);
  auto [inputs, targets] = NormalisedPairs(pairs, 13);
  int64_t slices = 0;
  for (const MrPair& p : pairs) slices += p.noisy.slices;
  std::cout << "  " << pairs.size() << " slabs, " << slices << " slices\n";
  // Slabs differ in size: pad each to the largest with background.
  int64_t rows = 0, columns = 0;
  for (const at::Tensor& t : inputs) {
    rows = std::max(rows, t.size(2));
    columns = std::max(columns, t.size(3));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int64_t dr = rows - inputs[i].size(2), dc = columns - inputs[i].size(3);
    inputs[i] = at::constant_pad_nd(inputs[i], {0, dc, 0, dr}, 0.0);
    targets[i] = at::constant_pad_nd(targets[i], {0, 2 * dc, 0, 2 * dr}, 0.0);
  }
  const double simulation = Seconds(start);

  const ResidualCnn net = SuperResNet(5.0);
  torch::jit::Module module = BuildResidualCnn(net, 3);
  Describe(net, module);
  TrainOptions options;
  options.steps = steps > 0 ? steps : 1000;
  options.batch = 16;
  options.patch = 48;
  options.scale = 2;
  options.learningRate = 1e-3;
  options.backgroundLevel = 0.05;
  options.seed = 3;
  const TrainResult result = Train(module, at::cat(inputs), at::cat(targets), options, std::cout);

  Json::Value manifest =
      BaseManifest("mr-superres-x2", "superres", "MR",
                   "In-plane x2 super-resolution of MR images (trained on T1-weighted head images "
                   "averaged 2x2). Demonstration model, not for diagnosis.",
                   net);
  manifest["scale"]["in_plane"] = 2;
  // 1.0.1: whole 512x512 slices instead of tiles of 256 (the same output, 2.25x less work).
  manifest["version"] = "1.0.1";
  manifest["input_normalization"]["method"] = "percentile";
  manifest["input_normalization"]["low"] = 0;
  manifest["input_normalization"]["high"] = 99.5;
  return Finish(module, manifest, out, result, simulation);
}

int TrainCtSuperRes(const std::string& out, int64_t steps) {
  auto start = std::chrono::steady_clock::now();
  std::cout << "simulating phantoms (PSF 0.7 px), averaging 2x2 pixels\n";
  const SuperResPairs pairs = CtSuperResTrainingSet(std::cout);
  const at::Tensor inputs = ToNetwork(pairs.low, kCtWindow);
  const at::Tensor targets = ToNetwork(pairs.high, kCtWindow);
  const double simulation = Seconds(start);

  const ResidualCnn net = SuperResNet(20.0);
  torch::jit::Module module = BuildResidualCnn(net, 4);
  Describe(net, module);
  TrainOptions options;
  options.steps = steps > 0 ? steps : 1500;
  options.batch = 16;
  options.patch = 48;
  options.scale = 2;
  options.learningRate = 1e-3;
  options.seed = 4;
  const TrainResult result = Train(module, inputs, targets, options, std::cout);

  Json::Value manifest =
      BaseManifest("ct-superres-x2", "superres", "CT",
                   "In-plane x2 super-resolution of CT (trained on simulated phantom slices "
                   "averaged 2x2). Demonstration model, not for diagnosis.",
                   net);
  manifest["scale"]["in_plane"] = 2;
  // 1.0.1: whole 512x512 slices instead of tiles of 256 (the same output, 2.25x less work).
  manifest["version"] = "1.0.1";
  manifest["input_normalization"]["method"] = "window";
  manifest["input_normalization"]["low"] = kCtWindow.low;
  manifest["input_normalization"]["high"] = kCtWindow.high;
  return Finish(module, manifest, out, result, simulation);
}

constexpr int64_t kThroughPlaneContext = 2;

int TrainCtThroughPlane(const std::string& out, int64_t steps) {
  auto start = std::chrono::steady_clock::now();
  std::cout << "simulating thin-slice phantoms with 3-D lesions, averaging 4 thin slices\n";
  const ThroughPlanePairs pairs = CtThroughPlaneTrainingSet(std::cout);
  std::vector<at::Tensor> inputs, targets;
  for (size_t p = 0; p < pairs.thick.size(); ++p) {
    for (int64_t g = 0; g + 1 < pairs.thick[p].slices; ++g) {
      const enhance::Volume channels = GapChannels(pairs.thick[p], g, kThroughPlaneContext);
      inputs.push_back(ToNetwork(channels, kCtWindow)
                           .view({1, channels.slices, channels.rows, channels.columns}));
      targets.push_back(ToNetwork(SliceRange(pairs.gaps[p], g, 1), kCtWindow));
    }
  }
  std::cout << "  " << inputs.size() << " gaps\n";
  const double simulation = Seconds(start);

  ResidualCnn net;
  net.inChannels = 2 * kThroughPlaneContext;
  net.features = 20;
  net.layers = 7;
  net.gain = 20.0;
  net.base = ResidualCnn::Base::kMiddlePair;
  torch::jit::Module module = BuildResidualCnn(net, 5);
  Describe(net, module);
  TrainOptions options;
  options.steps = steps > 0 ? steps : 700;
  options.batch = 16;
  options.patch = 64;
  options.learningRate = 1e-3;
  options.seed = 5;
  const TrainResult result = Train(module, at::cat(inputs), at::cat(targets), options, std::cout);

  Json::Value manifest =
      BaseManifest("ct-superres-z2", "superres", "CT",
                   "Through-plane x2 super-resolution of CT: a slice half-way between each pair "
                   "of slices (trained on simulated thick-slice phantoms). Demonstration model, "
                   "not for diagnosis.",
                   net);
  manifest["scale"]["through_plane"] = 2;
  manifest["slice_context"] = Json::Int64(kThroughPlaneContext);
  manifest["input_normalization"]["method"] = "window";
  manifest["input_normalization"]["low"] = kCtWindow.low;
  manifest["input_normalization"]["high"] = kCtWindow.high;
  return Finish(module, manifest, out, result, simulation);
}

int TrainMr2Ct(const std::string& out, int64_t steps) {
  auto start = std::chrono::steady_clock::now();
  std::cout << "reading ch2 and ch2bet from " << kMricronTemplates
            << ", pseudo-CT by segmentation, MR with bias field, gamma and Rician noise\n";
  const std::vector<Mr2CtPair> pairs = Mr2CtTrainingSet(kMricronTemplates);
  std::vector<at::Tensor> inputs, targets;
  std::mt19937_64 rng(23);
  std::uniform_real_distribution<double> jitter(0.9, 1.1);
  for (const Mr2CtPair& p : pairs) {
    auto [low, high] = PercentileWindow(p.mr, 99.5);
    high = low + (high - low) * jitter(rng);
    inputs.push_back(ToNetwork(p.mr, {low, high}));
    targets.push_back(ToNetwork(p.ct, kCtWindow));
  }
  std::cout << "  " << pairs.size() << " slabs of " << pairs.front().mr.slices << " slices, "
            << pairs.front().mr.rows << "x" << pairs.front().mr.columns << "\n";
  const double simulation = Seconds(start);

  ResidualCnn net;
  net.features = 20;
  net.layers = 7;
  net.gain = 5.0;
  net.base = ResidualCnn::Base::kConstant;
  net.baseValue = (0.0 - kCtWindow.low) / (kCtWindow.high - kCtWindow.low);  // water
  net.dilations = {1, 2, 4, 8, 4, 2, 1};
  torch::jit::Module module = BuildResidualCnn(net, 6);
  Describe(net, module);
  TrainOptions options;
  options.steps = steps > 0 ? steps : 700;
  options.batch = 8;
  options.patch = 80;
  options.learningRate = 1.5e-3;
  options.backgroundLevel = 0.05;
  options.seed = 6;
  // The mean absolute error in HU is what mr2ct is judged by; the squared error would
  // favour grey values half-way between bone and soft tissue where the MR is ambiguous.
  options.absoluteError = true;
  const TrainResult result = Train(module, at::cat(inputs), at::cat(targets), options, std::cout);

  Json::Value manifest = BaseManifest(
      "mr2ct", "mr2ct", "MR",
      "Synthetic CT in HU from T1-weighted head MR (trained on one head with a "
      "segmentation-based pseudo-CT). Demonstration model, not for clinical use: not for dose "
      "planning, attenuation correction or diagnosis.",
      net);
  manifest["input_normalization"]["method"] = "percentile";
  manifest["input_normalization"]["low"] = 0;
  manifest["input_normalization"]["high"] = 99.5;
  manifest["output_normalization"]["method"] = "window";
  manifest["output_normalization"]["low"] = kCtWindow.low;
  manifest["output_normalization"]["high"] = kCtWindow.high;
  manifest["output_range"].append(kCtWindow.low);
  manifest["output_range"].append(kCtWindow.high);
  manifest["output_units"] = "HU";
  return Finish(module, manifest, out, result, simulation);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string model = argv[1];
  std::string out;
  int64_t steps = 0;
  int threads = 1;
  int64_t features = 0;
  int64_t layers = 0;
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string arg = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      const std::string value = argv[++i];
      if (arg == "--out")
        out = value;
      else if (arg == "--steps")
        steps = std::stoll(value);
      else if (arg == "--threads")
        threads = std::stoi(value);
      else if (arg == "--features")
        features = std::stoll(value);
      else if (arg == "--layers")
        layers = std::stoll(value);
      else
        throw std::invalid_argument("unknown option " + arg);
    }
    if (out.empty()) throw std::invalid_argument("--out is required");
    // Results depend (slightly) on the thread count through the order of floating-point
    // sums: the shipped models were trained with one thread, the default.
    at::set_num_threads(threads);
    std::cout << "LibTorch threads: " << at::get_num_threads() << "\n";
    if (model == "ct-denoise") return TrainCtDenoise(out, steps, false, features, layers);
    if (model == "ct-denoise-halfres") return TrainCtDenoise(out, steps, true, features, layers);
    if (model == "mr-denoise") return TrainMrDenoise(out, steps, features, layers);
    if (model == "mr-superres-x2") return TrainMrSuperRes(out, steps);
    if (model == "ct-superres-x2") return TrainCtSuperRes(out, steps);
    if (model == "ct-superres-z2") return TrainCtThroughPlane(out, steps);
    if (model == "mr2ct") return TrainMr2Ct(out, steps);
    throw std::invalid_argument("unknown model '" + model + "'");
  } catch (const std::exception& e) {
    std::cerr << "enhance-train: " << e.what() << "\n" << kUsage;
    return 1;
  }
}
