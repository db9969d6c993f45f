// SPDX-License-Identifier: GPL-3.0-or-later
//
// enhance-train: simulates the training data of a shipped model, trains the network on
// the CPU and writes the model folder (model.pt + manifest.json). Deterministic for a
// thread count (default 1). See models/train_all.sh.
//
// Every model is one entry of the recipe table (Recipes() below): how its data is made,
// its network, its training options and what its manifest says beyond the common fields.
// Training one is the same sequence for all: data, network, Train(), manifest, folder.
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "CtDenoiseData.h"
#include "Mr2CtData.h"
#include "MrDenoiseData.h"
#include "Normalise.h"
#include "ResidualCnn.h"
#include "SuperResData.h"
#include "Training.h"

namespace {

using namespace enhance::models;

// Network inputs [S, C, H, W] and targets [S, 1, H * scale, W * scale] in network units.
struct TrainingData {
  at::Tensor inputs;
  at::Tensor targets;
};

struct Recipe {
  std::string name;
  std::string task;
  std::string modality;
  std::string intendedUse;
  std::string version;                 // the reason for the latest change is noted at the entry
  std::function<TrainingData()> data;  // simulates or reads it, saying what it does
  ResidualCnn network;
  uint64_t initialisationSeed = 1;
  TrainOptions options;
  std::function<void(Json::Value&)> manifest;  // fields beyond the common ones
  bool shipped = true;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Tile overlap whose quarter covers the receptive field (docs/models.md), in steps of 8.
int64_t OverlapFor(const ResidualCnn& net) { return (4 * ReceptiveRadius(net) + 7) / 8 * 8; }

Json::Value BaseManifest(const Recipe& recipe, const ResidualCnn& net) {
  Json::Value m;
  m["name"] = recipe.name;
  m["version"] = recipe.version;
  m["task"] = recipe.task;
  m["modalities"].append(recipe.modality);
  m["intended_use"] = recipe.intendedUse;
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

void SetNormalization(Json::Value& manifest, const char* key, const char* method, double low,
                      double high) {
  manifest[key]["method"] = method;
  manifest[key]["low"] = low;
  manifest[key]["high"] = high;
}

void CtWindowInput(Json::Value& m) {
  SetNormalization(m, "input_normalization", "window", kCtWindow.low, kCtWindow.high);
}

// As the engine will, an MR window comes from the input series (99.5th percentile).
void MrPercentileInput(Json::Value& m) {
  SetNormalization(m, "input_normalization", "percentile", 0, 99.5);
}

// Both images of each MR pair in network units, in the window of the noisy (input) image.
// A small random error on the window's width makes the network tolerant of other
// percentile estimates.
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

TrainingData CtDenoiseData() {
  std::cout << "simulating the training set (low dose = 25% of 1e6 photons per ray)\n";
  const CtPairs pairs = CtDenoiseTrainingSet(std::cout);
  return {ToNetwork(pairs.lowDose, kCtWindow), ToNetwork(pairs.fullDose, kCtWindow)};
}

TrainingData MrDenoiseData() {
  std::cout << "reading " << kMricronTemplates << "/ch2better.nii.gz, adding Rician noise\n";
  const std::vector<MrPair> pairs = MrDenoiseTrainingSet(kMricronTemplates);
  auto [inputs, targets] = NormalisedPairs(pairs, 11);
  for (const MrPair& p : pairs)
    std::cout << "  " << p.label << ": sigma " << p.sigma << " of the maximum\n";
  return {at::cat(inputs), at::cat(targets)};
}

TrainingData MrSuperResData() {
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
  return {at::cat(inputs), at::cat(targets)};
}

TrainingData CtSuperResData() {
  std::cout << "simulating phantoms (PSF 0.7 px), averaging 2x2 pixels\n";
  const SuperResPairs pairs = CtSuperResTrainingSet(std::cout);
  return {ToNetwork(pairs.low, kCtWindow), ToNetwork(pairs.high, kCtWindow)};
}

constexpr int64_t kThroughPlaneContext = 2;

TrainingData CtThroughPlaneData() {
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
  return {at::cat(inputs), at::cat(targets)};
}

TrainingData Mr2CtData() {
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
  return {at::cat(inputs), at::cat(targets)};
}

ResidualCnn Network(int64_t features, int64_t layers, double gain) {
  ResidualCnn net;
  net.features = features;
  net.layers = layers;
  net.gain = gain;
  return net;
}

TrainOptions Options(int64_t steps, int64_t batch, int64_t patch, uint64_t seed) {
  TrainOptions options;
  options.steps = steps;
  options.batch = batch;
  options.patch = patch;
  options.learningRate = 1e-3;
  options.seed = seed;
  return options;
}

Recipe CtDenoise() {
  Recipe r;
  r.name = "ct-denoise";
  r.task = "denoise";
  r.modality = "CT";
  r.intendedUse =
      "Noise reduction of low-dose CT (trained on simulated quarter-dose scans). "
      "Demonstration model, not for diagnosis.";
  r.version = "1.1.0";  // 1.1.0: 8 layers of 16 features instead of 7 of 20
  r.data = CtDenoiseData;
  // 16 features: a multiple of the CPU's 16-lane vectors, which oneDNN's convolutions run
  // at a larger share of the machine's matrix-multiply rate than 20 (docs/performance.md).
  r.network = Network(16, 8, ResidualCnn{}.gain);
  r.initialisationSeed = 1;
  r.options = Options(3000, 16, 64, TrainOptions{}.seed);
  r.manifest = CtWindowInput;
  return r;
}

// The experimental variant whose five convolutions of 48 features run at half resolution
// (pixel unshuffle 2): 4.3 GMAC per slice in layers wide enough for CPU convolution
// kernels to approach their matrix-multiply rate, and a receptive radius of 11 px. It is
// 2-3x faster than ct-denoise on the CPU but loses about half a dB on the held-out set, so
// it is not shipped (docs/performance.md).
Recipe CtDenoiseHalfResolution() {
  Recipe r = CtDenoise();
  r.name = "ct-denoise-halfres";
  r.network = Network(48, 5, ResidualCnn{}.gain);
  r.network.unshuffle = 2;
  r.shipped = false;
  return r;
}

Recipe MrDenoise() {
  Recipe r;
  r.name = "mr-denoise";
  r.task = "denoise";
  r.modality = "MR";
  r.intendedUse =
      "Noise reduction of magnitude MR images (trained on T1-weighted head images with "
      "simulated Rician noise). Demonstration model, not for diagnosis.";
  r.version = "1.0.0";
  r.data = MrDenoiseData;
  r.network = Network(20, 7, 5.0);
  r.initialisationSeed = 2;
  r.options = Options(1200, 16, 64, 2);
  r.options.backgroundLevel = 0.05;
  r.manifest = MrPercentileInput;
  return r;
}

// The network of both in-plane x2 models: it runs on the coarse grid, so it can afford
// more features than the denoisers for the same cost per output slice.
ResidualCnn SuperResNet(double gain) {
  ResidualCnn net = Network(28, 8, gain);
  net.scale = 2;
  return net;
}

Recipe MrSuperRes() {
  Recipe r;
  r.name = "mr-superres-x2";
  r.task = "superres";
  r.modality = "MR";
  r.intendedUse =
      "In-plane x2 super-resolution of MR images (trained on T1-weighted head images "
      "averaged 2x2). Demonstration model, not for diagnosis.";
  // 1.0.1: whole 512x512 slices instead of tiles of 256 (the same output, 2.25x less work).
  r.version = "1.0.1";
  r.data = MrSuperResData;
  r.network = SuperResNet(5.0);
  r.initialisationSeed = 3;
  r.options = Options(1000, 16, 48, 3);
  r.options.scale = 2;
  r.options.backgroundLevel = 0.05;
  r.manifest = [](Json::Value& m) {
    m["scale"]["in_plane"] = 2;
    MrPercentileInput(m);
  };
  return r;
}

Recipe CtSuperRes() {
  Recipe r;
  r.name = "ct-superres-x2";
  r.task = "superres";
  r.modality = "CT";
  r.intendedUse =
      "In-plane x2 super-resolution of CT (trained on simulated phantom slices "
      "averaged 2x2). Demonstration model, not for diagnosis.";
  // 1.0.1: whole 512x512 slices instead of tiles of 256 (the same output, 2.25x less work).
  r.version = "1.0.1";
  r.data = CtSuperResData;
  r.network = SuperResNet(20.0);
  r.initialisationSeed = 4;
  r.options = Options(1500, 16, 48, 4);
  r.options.scale = 2;
  r.manifest = [](Json::Value& m) {
    m["scale"]["in_plane"] = 2;
    CtWindowInput(m);
  };
  return r;
}

Recipe CtThroughPlane() {
  Recipe r;
  r.name = "ct-superres-z2";
  r.task = "superres";
  r.modality = "CT";
  r.intendedUse =
      "Through-plane x2 super-resolution of CT: a slice half-way between each pair "
      "of slices (trained on simulated thick-slice phantoms). Demonstration model, "
      "not for diagnosis.";
  r.version = "1.0.0";
  r.data = CtThroughPlaneData;
  r.network = Network(20, 7, 20.0);
  r.network.inChannels = 2 * kThroughPlaneContext;
  r.network.base = ResidualCnn::Base::kMiddlePair;
  r.initialisationSeed = 5;
  r.options = Options(700, 16, 64, 5);
  r.manifest = [](Json::Value& m) {
    m["scale"]["through_plane"] = 2;
    m["slice_context"] = Json::Int64(kThroughPlaneContext);
    CtWindowInput(m);
  };
  return r;
}

Recipe Mr2Ct() {
  Recipe r;
  r.name = "mr2ct";
  r.task = "mr2ct";
  r.modality = "MR";
  r.intendedUse =
      "Synthetic CT in HU from T1-weighted head MR (trained on one head with a "
      "segmentation-based pseudo-CT). Demonstration model, not for clinical use: not for dose "
      "planning, attenuation correction or diagnosis.";
  r.version = "1.0.0";
  r.data = Mr2CtData;
  r.network = Network(20, 7, 5.0);
  r.network.base = ResidualCnn::Base::kConstant;
  r.network.baseValue = (0.0 - kCtWindow.low) / (kCtWindow.high - kCtWindow.low);  // water
  r.network.dilations = {1, 2, 4, 8, 4, 2, 1};
  r.initialisationSeed = 6;
  r.options = Options(700, 8, 80, 6);
  r.options.learningRate = 1.5e-3;
  r.options.backgroundLevel = 0.05;
  // The mean absolute error in HU is what mr2ct is judged by; the squared error would
  // favour grey values half-way between bone and soft tissue where the MR is ambiguous.
  r.options.absoluteError = true;
  r.manifest = [](Json::Value& m) {
    MrPercentileInput(m);
    SetNormalization(m, "output_normalization", "window", kCtWindow.low, kCtWindow.high);
    m["output_range"].append(kCtWindow.low);
    m["output_range"].append(kCtWindow.high);
    m["output_units"] = "HU";
  };
  return r;
}

// The ct-denoise data and network trained with the mean absolute error plus a least-squares
// adversarial term (TrainOptions::adversarial): a regression loss alone averages the
// plausible outputs into an image whose noise is smoother and blotchier than a full-dose
// scan's; the patch discriminator pushes the output's texture towards the full-dose
// targets', at some cost in PSNR (the model card measures both). The first 1000 steps are
// the pixel loss alone, so that the discriminator starts against a denoiser, not noise.
// Weight 0.01 chosen over 0.03 on the validation phantoms (enhance-evaluate ct-denoise-gan
// --data validation): both moved the output's noise to the same high frequencies, 0.03 at
// 0.65 dB more loss of PSNR.
Recipe CtDenoiseGan() {
  Recipe r = CtDenoise();
  r.name = "ct-denoise-gan";
  r.intendedUse =
      "Noise reduction of low-dose CT keeping a full-dose-like noise texture (trained on "
      "simulated quarter-dose scans with an adversarial loss). Demonstration model, not for "
      "diagnosis.";
  r.version = "1.0.0";
  r.options.absoluteError = true;
  r.options.adversarial.weight = 0.01;
  r.options.adversarial.gain = r.network.gain;
  r.options.adversarial.warmupSteps = 1000;
  return r;
}

std::vector<Recipe> Recipes() {
  return {CtDenoise(),  CtDenoiseHalfResolution(), CtDenoiseGan(), MrDenoise(), MrSuperRes(),
          CtSuperRes(), CtThroughPlane(),          Mr2Ct()};
}

// What the command line may change in a recipe (0: keep the recipe's).
struct Overrides {
  int64_t steps = 0;
  int64_t features = 0;
  int64_t layers = 0;
  double adversarialWeight = -1;  // < 0: keep
};

// Trains one recipe and writes its folder; the exit code of the program.
int TrainRecipe(Recipe recipe, const Overrides& overrides, const std::string& out) {
  if (overrides.steps > 0) recipe.options.steps = overrides.steps;
  if (overrides.features > 0) recipe.network.features = overrides.features;
  if (overrides.layers > 0) recipe.network.layers = overrides.layers;
  if (overrides.adversarialWeight >= 0) {
    recipe.options.adversarial.weight = overrides.adversarialWeight;
  }
  const auto start = std::chrono::steady_clock::now();
  const TrainingData data = recipe.data();
  const double simulationSeconds = Seconds(start);

  torch::jit::Module module = BuildResidualCnn(recipe.network, recipe.initialisationSeed);
  Describe(recipe.network, module);
  const TrainResult result = Train(module, data.inputs, data.targets, recipe.options, std::cout);

  Json::Value manifest = BaseManifest(recipe, recipe.network);
  recipe.manifest(manifest);
  SaveModelFolder(module, manifest, out);
  std::cout << "data simulation: " << simulationSeconds << " s\n"
            << "training: " << result.steps << " steps in " << result.seconds
            << " s; loss (normalised units) " << result.firstLoss << " -> " << result.lastLoss
            << "\n";
  if (recipe.options.adversarial.weight > 0) {
    std::cout << "adversarial loss (weight " << recipe.options.adversarial.weight << ") "
              << result.lastAdversarialLoss << ", discriminator loss "
              << result.lastDiscriminatorLoss << " over the last 5% of the steps\n";
  }
  std::cout << "wrote " << out << "\n";
  return 0;
}

// Writes a recipe's training data for trainers outside this program (the Python trainer of
// the diffusion model, models/tools/train_diffusion.py): a tuple (inputs, targets) in
// torch::pickle_save's format, which Python reads with torch.load.
int ExportData(const Recipe& recipe, const std::string& file) {
  const TrainingData data = recipe.data();
  const std::vector<char> bytes =
      torch::jit::pickle_save(c10::ivalue::Tuple::create({data.inputs, data.targets}));
  std::ofstream out(file, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + file);
  std::cout << "wrote " << data.inputs.size(0) << " slices of inputs " << data.inputs.sizes()
            << " and targets " << data.targets.sizes() << " to " << file << "\n";
  return 0;
}

std::string Usage() {
  std::string models;
  for (const Recipe& r : Recipes()) {
    models += (models.empty() ? "" : " | ") + r.name + (r.shipped ? "" : " (not shipped)");
  }
  return "usage: enhance-train MODEL --out DIR [--steps N] [--threads N]\n"
         "                     [--features N] [--layers N]   (experiments: the network's "
         "width and depth)\n"
         "                     [--adversarial-weight W]   (experiments: 0 turns it off)\n"
         "       enhance-train MODEL --export-data FILE   (its training data, for torch.load)\n"
         "MODEL: " +
         models +
         "\n"
         "Writes DIR/model.pt and DIR/manifest.json; MODEL_CARD.md is written by hand.\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::cout << Usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string model = argv[1];
  std::string out, exportFile;
  int threads = 1;
  Overrides overrides;
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string arg = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      const std::string value = argv[++i];
      if (arg == "--out")
        out = value;
      else if (arg == "--export-data")
        exportFile = value;
      else if (arg == "--steps")
        overrides.steps = std::stoll(value);
      else if (arg == "--threads")
        threads = std::stoi(value);
      else if (arg == "--features")
        overrides.features = std::stoll(value);
      else if (arg == "--layers")
        overrides.layers = std::stoll(value);
      else if (arg == "--adversarial-weight")
        overrides.adversarialWeight = std::stod(value);
      else
        throw std::invalid_argument("unknown option " + arg);
    }
    if (out.empty() && exportFile.empty()) throw std::invalid_argument("--out is required");
    // Results depend (slightly) on the thread count through the order of floating-point
    // sums: the shipped models were trained with one thread, the default.
    at::set_num_threads(threads);
    std::cout << "LibTorch threads: " << at::get_num_threads() << "\n";
    for (Recipe& recipe : Recipes()) {
      if (recipe.name != model) continue;
      if (!exportFile.empty()) return ExportData(recipe, exportFile);
      return TrainRecipe(std::move(recipe), overrides, out);
    }
    throw std::invalid_argument("unknown model '" + model + "'");
  } catch (const std::exception& e) {
    std::cerr << "enhance-train: " << e.what() << "\n" << Usage();
    return 1;
  }
}
