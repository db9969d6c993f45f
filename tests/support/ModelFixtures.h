// SPDX-License-Identifier: GPL-3.0-or-later
//
// Tiny TorchScript models built in C++ (register_parameter + define), written with a
// manifest into a temporary folder, for the model registry and runtime tests.
#pragma once

#include <json/value.h>

#include <filesystem>
#include <string>

namespace enhance::testing {

// A fresh empty folder under the system temporary directory, removed by the destructor.
class TemporaryFolder {
 public:
  TemporaryFolder();
  ~TemporaryFolder();
  TemporaryFolder(const TemporaryFolder&) = delete;
  TemporaryFolder& operator=(const TemporaryFolder&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// TorchScript body of forward(self, x) for the fixtures, by kind:
//   "identity"      returns the middle channel
//   "mean3x3"       3x3 mean filter (a registered parameter) of the middle channel
//   "upsample2"     nearest-neighbour x2 of the middle channel
//   "wrong-shape"   drops the first row
//   "nan"           returns NaN everywhere
//   "interpolate"   mean of the two channels (through-plane)
//   "shift"         the middle channel moved one column to the right (not symmetric: its
//                   flips and rotations disagree)
// and of forward(self, x, t, c) for diffusion models:
//   "diffusion-epsilon"  0.3 x_t + 0.1 condition + 0.001 t (an epsilon prediction)
//   "diffusion-sample"   the condition's middle channel (an x_0 prediction)
std::string FixtureSource(const std::string& kind);

// Writes folder/<name>/{manifest.json, model.pt}; returns the model folder.
std::filesystem::path WriteFixtureModel(const std::filesystem::path& parent,
                                        const std::string& kind, const Json::Value& manifest);

// A valid manifest for a denoise model named `name`.
Json::Value DenoiseManifest(const std::string& name);

}  // namespace enhance::testing
