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
//   "residual-cnn"  the middle channel plus 0.1 x a small convolution network of it (16
//                   features, ReLUs, one dilated layer; fixed random weights): what the
//                   fused operator and bf16 take
//   "domain-vae"    a domain check's autoencoder: (reconstruction, mu, logvar) from the
//                   means of 8x8 blocks
// and of forward(self, x, t, c) for diffusion models:
//   "diffusion-epsilon"  0.3 x_t + 0.1 condition + 0.001 t (an epsilon prediction)
//   "diffusion-sample"   the condition's middle channel (an x_0 prediction)
std::string FixtureSource(const std::string& kind);

// Writes a fixture of `kind` as a TorchScript archive.
void WriteFixtureArchive(const std::filesystem::path& file, const std::string& kind);

// Writes folder/<name>/{manifest.json, model.pt}, the "domain-vae" fixture as the
// domain check's archive when the manifest has a "domain_check" naming one, and a
// calibration input [2, 1, 32, 32] when it has a "low_precision" naming one; returns the
// model folder.
std::filesystem::path WriteFixtureModel(const std::filesystem::path& parent,
                                        const std::string& kind, const Json::Value& manifest);

// A "domain_check" section for the "domain-vae" fixture: archive domain.pt, reference
// log r ~ N(-3.7, 0.25), log k ~ N(-1.4, 0.25) (what the fixture gives for
// testing::PhantomSeries(48, 48, n, 10.0) through a window of [-1000, 1000]), the given
// threshold.
Json::Value DomainCheckSection(double threshold);

// A "low_precision" section allowing bf16 with these tolerances, calibration.pt.
Json::Value LowPrecisionSection(double meanTolerance, double p999Tolerance);

// A valid manifest for a denoise model named `name`.
Json::Value DenoiseManifest(const std::string& name);

}  // namespace enhance::testing
