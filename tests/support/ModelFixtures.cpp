// SPDX-License-Identifier: GPL-3.0-or-later
#include "ModelFixtures.h"

#include <json/writer.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>

#include <cmath>
#include <fstream>
#include <random>
#include <vector>

namespace enhance::testing {

TemporaryFolder::TemporaryFolder() {
  std::random_device device;
  path_ = std::filesystem::temp_directory_path() /
          ("enhance-test-" + std::to_string(device()) + "-" + std::to_string(device()));
  std::filesystem::create_directories(path_);
}

TemporaryFolder::~TemporaryFolder() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string FixtureSource(const std::string& kind) {
  const std::string middle = "x.narrow(1, x.size(1) // 2, 1)";
  if (kind == "identity") return "  return " + middle + "\n";
  if (kind == "mean3x3") return "  return torch.conv2d(" + middle + ", self.weight, None, 1, 1)\n";
  if (kind == "upsample2") {
    return "  return " + middle + ".repeat_interleave(2, 2).repeat_interleave(2, 3)\n";
  }
  if (kind == "wrong-shape") return "  return " + middle + "[:, :, 1:, :]\n";
  if (kind == "nan") return "  return " + middle + " * float('nan')\n";
  if (kind == "unshuffle2") {
    // Identity that only accepts even sizes, as networks starting with a pixel unshuffle.
    return "  return torch.pixel_shuffle(torch.pixel_unshuffle(" + middle + ", 2), 2)\n";
  }
  if (kind == "interpolate") return "  return (x[:, 0:1] + x[:, 1:2]) * 0.5\n";
  if (kind == "shift") return "  return torch.roll(" + middle + ", [1], [3])\n";
  if (kind == "residual-cnn") {
    return "  h = torch.relu(torch.conv2d(" + middle +
           ", self.w0, self.b0, 1, 1))\n"
           "  h = torch.relu(torch.conv2d(h, self.w1, self.b1, 1, 1))\n"
           "  h = torch.relu(torch.conv2d(h, self.w2, self.b2, 1, 2, 2))\n"
           "  return " +
           middle + " + 0.1 * torch.conv2d(h, self.w3, self.b3, 1, 1)\n";
  }
  // Denoisers of a diffusion model, forward(self, x, t, c): an epsilon that depends on x_t,
  // the time and the condition; and an x_0 prediction that is the condition itself.
  const std::string condition = "c.narrow(1, c.size(1) // 2, 1)";
  const std::string time = "t.view([-1, 1, 1, 1])";
  if (kind == "diffusion-epsilon") {
    return "  return x * 0.3 + " + condition + " * 0.1 + " + time + " * 0.001\n";
  }
  if (kind == "diffusion-sample")
    return "  return " + condition + " + x * 0.0 + " + time + " * 0.0\n";
  // A domain check's autoencoder, forward(self, x) -> (reconstruction, mu, logvar): the
  // mean of each 8x8 block, repeated; mu the block means less 0.5; logvar -1.
  if (kind == "domain-vae") {
    return "  low = torch.avg_pool2d(x, [8, 8])\n"
           "  reconstruction = low.repeat_interleave(8, 2).repeat_interleave(8, 3)\n"
           "  return (reconstruction, low - 0.5, low * 0.0 - 1.0)\n";
  }
  throw std::invalid_argument("unknown fixture " + kind);
}

void WriteFixtureArchive(const std::filesystem::path& file, const std::string& kind) {
  torch::jit::Module module("Fixture");
  module.register_parameter("weight", torch::full({1, 1, 3, 3}, 1.0f / 9.0f), false);
  if (kind == "residual-cnn") {
    // Fixed weights of a He initialisation: 16 features, the third layer dilated.
    torch::manual_seed(11);
    const int64_t shapes[4][2] = {{16, 1}, {16, 16}, {16, 16}, {1, 16}};
    for (int k = 0; k < 4; ++k) {
      const int64_t out = shapes[k][0], in = shapes[k][1];
      const double scale = std::sqrt(2.0 / (9.0 * static_cast<double>(in)));
      module.register_parameter("w" + std::to_string(k), torch::randn({out, in, 3, 3}) * scale,
                                false);
      module.register_parameter("b" + std::to_string(k), torch::randn({out}) * 0.05, false);
    }
  }
  const bool diffusion = kind.rfind("diffusion-", 0) == 0;
  module.define((diffusion ? "def forward(self, x, t, c):\n" : "def forward(self, x):\n") +
                FixtureSource(kind));
  module.save(file.string());
}

std::filesystem::path WriteFixtureModel(const std::filesystem::path& parent,
                                        const std::string& kind, const Json::Value& manifest) {
  const std::filesystem::path folder = parent / manifest["name"].asString();
  std::filesystem::create_directories(folder);
  WriteFixtureArchive(folder / "model.pt", kind);
  const Json::Value& domain = manifest["domain_check"];
  if (domain.isObject() && domain["archive"].isString() && !domain["archive"].asString().empty() &&
      domain["archive"].asString().find('/') == std::string::npos) {
    WriteFixtureArchive(folder / domain["archive"].asString(), "domain-vae");
  }
  const Json::Value& low = manifest["low_precision"];
  if (low.isObject() && low["calibration"].isString() &&
      low["calibration"].asString().find('/') == std::string::npos) {
    // Inputs like the tests' volumes: uniform over the window's middle.
    torch::manual_seed(12);
    const std::vector<char> bytes =
        torch::jit::pickle_save(torch::rand({2, 1, 32, 32}) * 0.9 + 0.05);
    std::ofstream(folder / low["calibration"].asString(), std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  Json::StreamWriterBuilder builder;
  std::ofstream(folder / "manifest.json") << Json::writeString(builder, manifest);
  return folder;
}

Json::Value LowPrecisionSection(double meanTolerance, double p999Tolerance) {
  Json::Value l;
  l["allow"].append("bf16");
  l["calibration"] = "calibration.pt";
  l["tolerance"]["mean"] = meanTolerance;
  l["tolerance"]["p999"] = p999Tolerance;
  return l;
}

Json::Value DenoiseManifest(const std::string& name) {
  Json::Value m;
  m["name"] = name;
  m["version"] = "0.1.0";
  m["task"] = "denoise";
  m["modalities"].append("CT");
  m["intended_use"] = "unit test fixture";
  m["archive"] = "model.pt";
  m["input_normalization"]["method"] = "window";
  m["input_normalization"]["low"] = -1000;
  m["input_normalization"]["high"] = 1000;
  return m;
}

Json::Value DomainCheckSection(double threshold) {
  Json::Value d;
  d["archive"] = "domain.pt";
  d["reference"]["log_reconstruction"].append(-3.7);
  d["reference"]["log_reconstruction"].append(0.25);
  d["reference"]["log_kl"].append(-1.4);
  d["reference"]["log_kl"].append(0.25);
  d["threshold"] = threshold;
  d["trained_on"] = "unit test fixtures";
  return d;
}

}  // namespace enhance::testing
