// SPDX-License-Identifier: GPL-3.0-or-later
#include "ResidualCnn.h"

#include <ATen/CPUGeneratorImpl.h>
#include <json/reader.h>
#include <json/writer.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace enhance::models {

torch::jit::Module BuildResidualCnn(const ResidualCnn& net, uint64_t seed) {
  if (net.layers < 2 || net.features < 1 || net.inChannels < 1 ||
      (net.scale != 1 && net.scale != 2) ||
      (!net.dilations.empty() && static_cast<int64_t>(net.dilations.size()) != net.layers) ||
      (net.base == ResidualCnn::Base::kMiddlePair && (net.inChannels < 2 || net.scale != 1))) {
    throw std::invalid_argument(
        "ResidualCnn: needs 2+ layers, 1+ features, scale 1 or 2, one dilation per layer, "
        "and 2+ channels at scale 1 for through-plane");
  }
  if (net.unshuffle < 1 ||
      (net.unshuffle > 1 && (net.scale != 1 || net.base != ResidualCnn::Base::kMiddle))) {
    throw std::invalid_argument(
        "ResidualCnn: unshuffle must be 1, or above 1 for a denoiser (scale 1, middle base)");
  }
  const int64_t u = net.unshuffle;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::jit::Module module("ResidualCnn");
  std::ostringstream source;
  source << "def forward(self, x):\n"
         << "    middle = x.narrow(1, " << net.inChannels / 2 << ", 1)\n";
  if (net.base == ResidualCnn::Base::kMiddlePair) {
    source << "    middle = (x.narrow(1, " << net.inChannels / 2 - 1 << ", 1) + middle) * 0.5\n";
  }
  source << "    h = x * " << net.gain << "\n";
  if (u > 1) source << "    h = torch.pixel_unshuffle(h, " << u << ")\n";
  for (int64_t i = 0; i < net.layers; ++i) {
    const int64_t in = i == 0 ? net.inChannels * u * u : net.features;
    const bool last = i + 1 == net.layers;
    const int64_t out = last ? net.scale * net.scale * u * u : net.features;
    // He initialisation for the ReLU layers; the last layer starts small so that the
    // untrained network is close to the identity (or to bicubic interpolation).
    const double std = std::sqrt(2.0 / static_cast<double>(in * 9)) * (last ? 0.1 : 1.0);
    const std::string w = "w" + std::to_string(i);
    const std::string b = "b" + std::to_string(i);
    module.register_parameter(w, at::randn({out, in, 3, 3}, generator).mul_(std), false);
    module.register_parameter(b, at::zeros({out}), false);
    const int64_t d = net.dilations.empty() ? 1 : net.dilations[static_cast<size_t>(i)];
    source << "    h = torch.conv2d(h, self." << w << ", self." << b << ", [1, 1], [" << d << ", "
           << d << "], [" << d << ", " << d << "])\n";
    if (!last) source << "    h = torch.relu(h)\n";
  }
  if (net.base == ResidualCnn::Base::kConstant) {
    source << "    return h / " << net.gain << " + " << net.baseValue << "\n";
  } else if (u > 1) {
    source << "    return middle + torch.pixel_shuffle(h, " << u << ") / " << net.gain << "\n";
  } else if (net.scale == 1) {
    source << "    return middle + h / " << net.gain << "\n";
  } else {
    source << "    up = torch.upsample_bicubic2d(middle, [x.size(2) * " << net.scale
           << ", x.size(3) * " << net.scale << "], False)\n"
           << "    return up + torch.pixel_shuffle(h, " << net.scale << ") / " << net.gain << "\n";
  }
  module.define(source.str());
  return module;
}

int64_t ReceptiveRadius(const ResidualCnn& net) {
  int64_t radius = 0;
  for (int64_t i = 0; i < net.layers; ++i) {
    radius += net.dilations.empty() ? 1 : net.dilations[static_cast<size_t>(i)];
  }
  // At 1/u of the resolution each step reaches u pixels, and the unshuffle block itself
  // spans u - 1.
  radius = radius * net.unshuffle + net.unshuffle - 1;
  // Bicubic upsampling of the base reads two input pixels on each side.
  return net.scale > 1 ? std::max<int64_t>(radius, 2) : radius;
}

double GmacPer512Slice(const ResidualCnn& net) {
  const int64_t u2 = net.unshuffle * net.unshuffle;
  double perLowPixel = static_cast<double>(net.inChannels * u2 * net.features * 9);
  perLowPixel += static_cast<double>((net.layers - 2) * net.features * net.features * 9);
  perLowPixel += static_cast<double>(net.features * net.scale * net.scale * u2 * 9);
  return perLowPixel / static_cast<double>(u2) * 512.0 * 512.0 / 1e9;
}

double GmacPer512OutputSlice(const ResidualCnn& net) {
  return GmacPer512Slice(net) / static_cast<double>(net.scale * net.scale);
}

int64_t ParameterCount(const torch::jit::Module& module) {
  int64_t count = 0;
  for (const at::Tensor& p : module.parameters()) count += p.numel();
  return count;
}

void SaveModelFolder(torch::jit::Module& module, const Json::Value& manifest,
                     const std::filesystem::path& folder) {
  std::filesystem::create_directories(folder);
  module.save((folder / manifest["archive"].asString()).string());
  // The domain check describes the training data, which retraining does not change: an
  // existing "domain_check" section (enhance-domain calibrate) is kept.
  Json::Value written = manifest;
  std::ifstream previous(folder / "manifest.json");
  Json::Value old;
  Json::CharReaderBuilder reader;
  std::string errors;
  if (previous && Json::parseFromStream(reader, previous, &old, &errors) && old.isObject() &&
      old.isMember("domain_check") && !written.isMember("domain_check")) {
    written["domain_check"] = old["domain_check"];
  }
  previous.close();
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "  ";
  std::ofstream stream(folder / "manifest.json");
  stream << Json::writeString(builder, written) << "\n";
  if (!stream) throw std::runtime_error("cannot write " + (folder / "manifest.json").string());
}

}  // namespace enhance::models
