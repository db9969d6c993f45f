// SPDX-License-Identifier: GPL-3.0-or-later
//
// enhance-benchmark: inference speed of every model on 512x512 CT slices, against the
// machine's matrix-multiply rate measured in the same run. Prints a Markdown table of
// medians (min-max) over repeated runs.
//
//   enhance-benchmark [--models DIR]... [--slices N] [--size N] [--repeats N]
//                     [--threads N] [--device cpu|cuda] [--batches 1,4,8] [--no-optimize]
//                     [--layouts auto,plain,channels-last,fused,optimised]
//                     [--precisions auto,float,bf16,int8] [--profile N]
//   enhance-benchmark --self-supervised [--slices N] [--size N] [--repeats N] [--threads N]
//                     [--device cpu|cuda] [--steps N] [--augmentations N]
//                     [--time-budget SECONDS] [--method auto|noise2noise|blind-spot]
// Beside each model's runs it measures the float matrix-multiply rate and, on the CPU, the
// bf16 one and the int8 one (1024^3 products; int8 through oneDNN), so that each row's
// share of the rate its precision has is taken in the same moment.
// --profile N runs each model once more, after its timed runs, with every operator timed
// (OperatorProfile.h), and prints the N operators with the most self time per slice.
// --self-supervised times the built-in self-supervised denoiser on one whole series instead
// (default 256 slices of 512x512 from a phantom of a body's length, 30 HU of noise): its
// training, its denoising and their sum, and the process's peak memory. Every step is
// taken unless --time-budget gives training the budget a node gives it
// (Enhance.SelfSupervised.TimeBudgetSeconds, 60 s by default). --method forces a method, as
// Enhance.SelfSupervised.Method does: the network's result is then taken without the
// comparison with the bilateral filter, so that the denoising time is the network's.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#if ENHANCE_BENCHMARK_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

#include <cstring>
#endif

#include "OperatorProfile.h"
#include "enhance/inference/ModelRegistry.h"
#include "enhance/inference/Runtime.h"
#include "enhance/inference/SelfSupervisedDenoiser.h"
#include "enhance/inference/TorchModel.h"
#include "enhance/samples/Phantom.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Stats {
  double median = 0, min = 0, max = 0;
};

Stats Summarise(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return {values[values.size() / 2], values.front(), values.back()};
}

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One timing of the matrix-multiply rate of a and b's type, in GFLOP/s.
#if ENHANCE_BENCHMARK_ONEDNN
// The int8 matrix-multiply rate (u8 x s8, 32-bit sums) through oneDNN, which the int8
// convolutions use: LibTorch has no int8 matrix product on the CPU.
class Int8Matmul {
 public:
  explicit Int8Matmul(int64_t n) : n_(n), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::desc a({n, n}, dt::u8, tag::ab), b({n, n}, dt::s8, tag::any),
        c({n, n}, dt::s32, tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), engine_);
    primitive_ = dnnl::matmul(pd);
    a_ = dnnl::memory(a, engine_);
    b_ = dnnl::memory(pd.weights_desc(), engine_);
    c_ = dnnl::memory(c, engine_);
    std::memset(a_.get_data_handle(), 3, a.get_size());
    std::memset(b_.get_data_handle(), 1, pd.weights_desc().get_size());
  }
  double Rate() {
    const auto start = Clock::now();
    for (int i = 0; i < 4; ++i) {
      primitive_.execute(stream_, {{DNNL_ARG_SRC, a_}, {DNNL_ARG_WEIGHTS, b_}, {DNNL_ARG_DST, c_}});
    }
    stream_.wait();
    const double n = static_cast<double>(n_);
    return 4 * 2.0 * n * n * n / Seconds(start) / 1e9;
  }

 private:
  int64_t n_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  dnnl::matmul primitive_;
  dnnl::memory a_, b_, c_;
};
#endif

double MatmulRate(const at::Tensor& a, const at::Tensor& b) {
  c10::InferenceMode guard;
  const auto start = Clock::now();
  at::Tensor c;
  for (int i = 0; i < 4; ++i) c = at::mm(a, b);
  c.sum().item<float>();  // waits for the GPU
  const double n = static_cast<double>(a.size(0));
  return 4 * 2.0 * n * n * n / Seconds(start) / 1e9;
}

// The self-supervised denoiser on one series: training, denoising, total, peak memory.
int BenchmarkSelfSupervised(int slices, int size, int repeats,
                            const enhance::SelfSupervisedParameters& p) {
  enhance::PhantomOptions phantom;
  phantom.rows = phantom.columns = size;
  phantom.slices = slices;
  phantom.noiseSigmaHu = 30;
  const enhance::Volume volume = enhance::MakeCtPhantom(phantom);
  const enhance::SelfSupervisedDenoiser model(p);
  std::printf("LibTorch %s, device %s, %d threads; %s\n%d slices of %dx%d, %d runs\n\n",
              enhance::TorchVersion().c_str(), enhance::EffectiveDevice(p.device).c_str(),
              enhance::TorchThreads(), model.Parameters().c_str(), slices, size, size, repeats);
  std::printf(
      "| run | steps | training s | denoising s | total s | ms per slice | peak RSS MB |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  std::vector<double> totals;
  for (int r = 0; r < repeats; ++r) {
    enhance::LearningReport report;
    Clock::time_point learned;
    enhance::RunContext context;
    context.randomKey = static_cast<uint64_t>(r);
    context.learned = [&](const enhance::LearningReport& l) {
      report = l;
      learned = Clock::now();
    };
    const auto start = Clock::now();
    model.Run(volume, context);
    const double total = Seconds(start);
    const double denoising = Seconds(learned);
    totals.push_back(total);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    // What gave the result: the fallback, or the network's share of a blend with the
    // bilateral filter and the estimated errors (SURE) behind it.
    char blend[160] = "";
    if (report.applied && report.comparedWithBilateral) {
      std::snprintf(blend, sizeof(blend),
                    " (network's share %.2f; estimated error %s, bilateral %s, blend %s)",
                    report.networkWeight,
                    enhance::DescribeEstimatedError(report.heldOutNetworkMeanSquare).c_str(),
                    enhance::DescribeEstimatedError(report.heldOutBilateralMeanSquare).c_str(),
                    enhance::DescribeEstimatedError(report.heldOutBlendMeanSquare).c_str());
    }
    const std::string note = report.applied ? blend : " (" + report.fallback + ")";
    std::printf("| %d | %d%s | %.1f | %.1f | %.1f | %.0f | %.0f |\n", r + 1, report.steps,
                note.c_str(), total - denoising, denoising, total, 1000 * total / slices,
                static_cast<double>(usage.ru_maxrss) / 1024.0);
  }
  const Stats t = Summarise(totals);
  std::printf("\nmedian %.1f s per series (%.1f-%.1f), training included\n", t.median, t.min,
              t.max);
  return 0;
}

std::vector<std::string> ParseWords(const std::string& text) {
  std::vector<std::string> words;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) words.push_back(item);
  return words;
}

std::vector<int> ParseList(const std::string& text) {
  std::vector<int> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) values.push_back(std::stoi(item));
  return values;
}

// What the loader decided about lower precisions for each model run, with the deviations
// from float it measured on the calibration input (network output units).
void PrintPrecisionDecisions(
    const std::vector<std::pair<std::shared_ptr<const enhance::Model>, int>>& runs) {
  bool header = false;
  for (const auto& run : runs) {
    const enhance::LowPrecisionReport* low = run.first->LowPrecision();
    if (!low) continue;
    if (!header) {
      std::printf(
          "\n| model | runs | bf16 mean / p99.9 deviation | int8 mean / p99.9 deviation | "
          "notes |\n| --- | --- | --- | --- | --- |\n");
      header = true;
    }
    const auto deviation = [](bool compared, double mean, double p999) {
      char text[64] = "-";
      if (compared) std::snprintf(text, sizeof text, "%.2e / %.2e", mean, p999);
      return std::string(text);
    };
    std::string notes = low->note;
    if (!low->int8.note.empty() && low->int8.note != notes)
      notes += (notes.empty() ? "" : "; ") + low->int8.note;
    std::printf(
        "| %s | %s | %s | %s | %s |\n", run.first->Info().name.c_str(), low->runs.c_str(),
        deviation(low->compared, low->meanDeviation, low->p999Deviation).c_str(),
        deviation(low->int8.compared, low->int8.meanDeviation, low->int8.p999Deviation).c_str(),
        notes.empty() ? "-" : notes.c_str());
  }
}

}  // namespace

// Runs `model` once on `volume` with every operator timed; prints the `count` operators
// with the most self time.
void PrintProfile(const enhance::Model& model, const std::string& runsAs,
                  const enhance::Volume& volume, int slices, int count) {
  std::vector<enhance::tools::OperatorTime> totals;
  double seconds = 0;
  {
    enhance::tools::OperatorProfile profile;
    const auto start = Clock::now();
    model.Run(volume, {});
    seconds = Seconds(start);
    totals = profile.Totals();
  }
  std::printf("\n%s (%s), profiled run: %.1f ms/slice\n\n", model.Info().name.c_str(),
              runsAs.c_str(), 1000 * seconds / slices);
  std::printf("| operator | calls/slice | self ms/slice | share |\n| --- | --- | --- | --- |\n");
  for (size_t i = 0; i < totals.size() && static_cast<int>(i) < count; ++i) {
    std::printf("| %s | %.1f | %.2f | %.0f%% |\n", totals[i].name.c_str(),
                static_cast<double>(totals[i].calls) / slices,
                1000 * totals[i].selfSeconds / slices, 100 * totals[i].selfSeconds / seconds);
  }
}

int main(int argc, char** argv) {
  std::vector<std::filesystem::path> directories;
  int slices = 16, size = 512, repeats = 3, threads = 0;
  std::string device = "cpu";
  std::vector<int> batches{1, 4, 8};
  bool optimize = true;
  bool selfSupervised = false;
  int steps = 0, augmentations = 0, profile = 0;
  double timeBudget = 0;
  enhance::SelfSupervisedMethod method = enhance::SelfSupervisedMethod::kAuto;
  std::vector<std::string> layouts{"auto"};
  std::vector<std::string> precisions{"auto"};
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--no-optimize") {
        optimize = false;
        continue;
      }
      if (arg == "--self-supervised") {
        selfSupervised = true;
        continue;
      }
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      const std::string value = argv[++i];
      if (arg == "--models")
        directories.push_back(value);
      else if (arg == "--slices")
        slices = std::stoi(value);
      else if (arg == "--size")
        size = std::stoi(value);
      else if (arg == "--repeats")
        repeats = std::stoi(value);
      else if (arg == "--threads")
        threads = std::stoi(value);
      else if (arg == "--device")
        device = value;
      else if (arg == "--batches")
        batches = ParseList(value);
      else if (arg == "--layouts")
        layouts = ParseWords(value);
      else if (arg == "--precisions")
        precisions = ParseWords(value);
      else if (arg == "--steps")
        steps = std::stoi(value);
      else if (arg == "--augmentations")
        augmentations = std::stoi(value);
      else if (arg == "--profile")
        profile = std::stoi(value);
      else if (arg == "--time-budget")
        timeBudget = std::stod(value);
      else if (arg == "--method") {
        const auto named = enhance::SelfSupervisedMethodNamed(value);
        if (!named)
          throw std::invalid_argument("--method must be auto, noise2noise or blind-spot, not '" +
                                      value + "'");
        method = *named;
      } else
        throw std::invalid_argument("unknown option " + arg);
    }
  } catch (const std::exception& e) {
    std::cerr
        << "enhance-benchmark: " << e.what()
        << "\nusage: enhance-benchmark [--models DIR]... [--slices N] [--size N] [--repeats N]"
           " [--threads N] [--device cpu|cuda] [--batches 1,4,8] [--no-optimize]"
           " [--layouts auto,plain,channels-last,fused,optimised]"
           " [--precisions auto,float,bf16,int8] [--profile N]\n"
           "       enhance-benchmark --self-supervised [--slices N] [--size N] [--repeats N]"
           " [--threads N] [--device cpu|cuda] [--steps N] [--augmentations N]"
           " [--time-budget SECONDS] [--method auto|noise2noise|blind-spot]\n";
    return 2;
  }

  try {
    enhance::ConfigureRuntime({threads});
    if (selfSupervised) {
      enhance::SelfSupervisedParameters p;
      p.device = device;
      if (steps > 0) p.steps = steps;
      if (augmentations > 0) p.augmentations = augmentations;
      // Without a budget, the steps as configured, whatever they take.
      p.timeBudgetSeconds = timeBudget > 0 ? timeBudget : 1e9;
      p.method = method;
      return BenchmarkSelfSupervised(slices == 16 ? 256 : slices, size, repeats == 3 ? 1 : repeats,
                                     p);
    }
    const std::string effective = enhance::EffectiveDevice(device);
    const c10::Device torchDevice(effective);
    enhance::PhantomOptions phantom;
    phantom.rows = phantom.columns = size;
    phantom.slices = slices;
    phantom.noiseSigmaHu = 30;
    const enhance::Volume volume = enhance::MakeCtPhantom(phantom);

    // The matrix-multiply rate is measured next to each model's runs (alternating), so
    // that the ratio holds even when other work shares the machine.
    const int64_t n = 1024;
    const at::Tensor a = at::rand({n, n}).to(torchDevice);
    const at::Tensor b = at::rand({n, n}).to(torchDevice);
    // bf16 on the CPU only (a GPU's rates are another table).
    const bool bf16 = torchDevice.is_cpu();
    const at::Tensor a16 = bf16 ? a.to(at::kBFloat16) : at::Tensor();
    const at::Tensor b16 = bf16 ? b.to(at::kBFloat16) : at::Tensor();
#if ENHANCE_BENCHMARK_ONEDNN
    std::unique_ptr<Int8Matmul> int8Matmul;
    if (bf16) int8Matmul = std::make_unique<Int8Matmul>(n);
    const auto int8Rate = [&] { return int8Matmul ? int8Matmul->Rate() : 0.0; };
#else
    const auto int8Rate = [] { return 0.0; };
#endif
    MatmulRate(a, b);  // warm-up
    if (bf16) MatmulRate(a16, b16);
    int8Rate();
    std::vector<double> allRates, allRates16, allRates8;
    for (int r = 0; r < std::max(3, repeats); ++r) {
      allRates.push_back(MatmulRate(a, b));
      if (bf16) allRates16.push_back(MatmulRate(a16, b16));
      allRates8.push_back(int8Rate());
    }
    const Stats peak = Summarise(allRates);
    std::printf("LibTorch %s, device %s, %d threads; %d slices of %dx%d, %d runs each\n\n",
                enhance::TorchVersion().c_str(), effective.c_str(), enhance::TorchThreads(), slices,
                size, size, repeats);
    std::printf("Matrix multiply (1024^3, fp32): %.1f GFLOP/s median (%.1f-%.1f)\n", peak.median,
                peak.min, peak.max);
    if (bf16) {
      const Stats peak16 = Summarise(allRates16);
      std::printf("Matrix multiply (1024^3, bf16): %.1f GFLOP/s median (%.1f-%.1f)\n",
                  peak16.median, peak16.min, peak16.max);
    }
    const Stats peak8 = Summarise(allRates8);
    if (peak8.median > 0) {
      std::printf("Matrix multiply (1024^3, int8 through oneDNN): %.1f GOP/s median (%.1f-%.1f)\n",
                  peak8.median, peak8.min, peak8.max);
    }
    std::printf(
        "\n| model | runs as | batch | ms/slice | slices/s | GMAC/slice | GFLOP/s | matmul "
        "GFLOP/s | of matmul rate | bf16 matmul GFLOP/s | of bf16 rate | int8 matmul GOP/s | "
        "of int8 rate |\n");
    std::printf(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");

    std::vector<std::pair<std::shared_ptr<const enhance::Model>, int>> runs;
    enhance::ModelRegistry builtins;
    for (const auto& model : builtins.List()) {
      // A model that learns from each series costs per series: --self-supervised.
      if (!model->LearnsFromSeries()) runs.push_back({model, 0});
    }
    for (const auto& dir : directories) {
      for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (!std::filesystem::exists(entry.path() / "manifest.json")) continue;
        for (const std::string& layout : layouts) {
          for (const std::string& precision : precisions) {
            if (precision != "auto" && precision != "float" && layout != "auto" &&
                layout != "fused") {
              continue;  // bf16 and int8 run with fused convolutions only
            }
            for (int batch : batches) {
              enhance::InferenceOptions options;
              options.device = device;
              options.maxBatch = batch;
              options.optimizeForCpu = optimize;
              options.cpuLayout = layout;
              options.precision = precision;
              runs.push_back({enhance::TorchModel::Load(entry.path(), options), batch});
            }
          }
        }
      }
    }
    for (const auto& [model, batch] : runs) {
      const auto* torchModel = dynamic_cast<const enhance::TorchModel*>(model.get());
      model->Run(volume, {});  // warm-up
      std::vector<double> times, rates, rates16, rates8;
      for (int r = 0; r < repeats; ++r) {
        rates.push_back(MatmulRate(a, b));
        if (bf16) rates16.push_back(MatmulRate(a16, b16));
        rates8.push_back(int8Rate());
        const auto start = Clock::now();
        model->Run(volume, {});
        times.push_back(Seconds(start));
      }
      const Stats t = Summarise(times);
      const double matmul = Summarise(rates).median;
      const double matmul16 = bf16 ? Summarise(rates16).median : 0;
      const double matmul8 = Summarise(rates8).median;
      const double msPerSlice = 1000 * t.median / slices;
      // Per input slice of size x size: the output slice has (size x scale)^2 pixels.
      const double outputSide = static_cast<double>(size) * model->Info().inPlaneScale;
      // A diffusion model runs its network once per step of every sample.
      const enhance::ModelInfo& info = model->Info();
      const double passes =
          info.isDiffusion
              ? static_cast<double>(info.sampler.samples) *
                    static_cast<double>(info.sampler.timesteps.empty()
                                            ? static_cast<size_t>(info.sampler.stepCount)
                                            : info.sampler.timesteps.size())
              : 1.0;
      const double gmac =
          torchModel ? passes * torchModel->MacsPerPixel() * outputSide * outputSide / 1e9 : 0;
      const double gflops = gmac > 0 ? 2 * gmac * slices / t.median : 0;
      std::string runsAs = "-";
      if (torchModel) {
        const std::string parameters = torchModel->Parameters();
        const auto open = parameters.find('('), close = parameters.find(')', open);
        if (open != std::string::npos && close != std::string::npos) {
          runsAs = parameters.substr(open + 1, close - open - 1);
        }
      }
      const auto share = [gflops](double rate) {
        return gflops > 0 && rate > 0 ? std::to_string(static_cast<int>(100 * gflops / rate)) + "%"
                                      : std::string("-");
      };
      std::printf(
          "| %s | %s | %s | %.1f (%.1f-%.1f) | %.2f | %s | %s | %.1f | %s | %s | %s | %s | "
          "%s |\n",
          model->Info().name.c_str(), runsAs.c_str(),
          batch > 0 ? std::to_string(batch).c_str() : "-", msPerSlice, 1000 * t.min / slices,
          1000 * t.max / slices, slices / t.median,
          gmac > 0 ? std::to_string(gmac).substr(0, 5).c_str() : "-",
          gflops > 0 ? std::to_string(gflops).substr(0, 5).c_str() : "-", matmul,
          share(matmul).c_str(), matmul16 > 0 ? std::to_string(matmul16).substr(0, 5).c_str() : "-",
          share(matmul16).c_str(), matmul8 > 0 ? std::to_string(matmul8).substr(0, 6).c_str() : "-",
          share(matmul8).c_str());
    }
    if (profile > 0) {
      for (const auto& [model, batch] : runs) {
        const auto* torchModel = dynamic_cast<const enhance::TorchModel*>(model.get());
        PrintProfile(*model, torchModel ? torchModel->Parameters() : "built in", volume, slices,
                     profile);
      }
    }
    PrintPrecisionDecisions(runs);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "enhance-benchmark: " << e.what() << "\n";
    return 1;
  }
}
