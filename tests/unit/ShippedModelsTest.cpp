// SPDX-License-Identifier: GPL-3.0-or-later
//
// The model folders shipped under models/ load through the same path as in the plugin
// and keep their contract on a small phantom; the CT denoiser lowers noise.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "enhance/Phantom.h"
#include "enhance/TorchModel.h"

namespace enhance {
namespace {

const std::filesystem::path kShipped = ENHANCE_SHIPPED_MODELS;

InferenceOptions Cpu() {
  InferenceOptions o;
  o.device = "cpu";
  return o;
}

std::vector<std::filesystem::path> ShippedFolders() {
  std::vector<std::filesystem::path> folders;
  for (const auto& entry : std::filesystem::directory_iterator(kShipped)) {
    if (std::filesystem::is_regular_file(entry.path() / "manifest.json")) {
      folders.push_back(entry.path());
    }
  }
  return folders;
}

Volume SmallPhantom(double noiseSigmaHu) {
  PhantomOptions o;
  o.rows = 96;
  o.columns = 96;
  o.slices = 2;
  o.pixelSpacing = 4.0;
  o.noiseSigmaHu = noiseSigmaHu;
  o.seed = 3;
  return MakeCtPhantom(o);
}

// A 256x256 phantom slice with the mild blur of a reconstructed image (3x3 binomial): the
// raw phantom's perfectly sharp 2000 HU edges never occur in a real scan.
Volume ReconstructedLikePhantom() {
  PhantomOptions o;
  o.rows = 256;
  o.columns = 256;
  o.slices = 1;
  o.pixelSpacing = 1.6;
  o.seed = 3;
  const Volume sharp = MakeCtPhantom(o);
  Volume v = sharp;
  for (int64_t r = 1; r + 1 < v.rows; ++r) {
    for (int64_t c = 1; c + 1 < v.columns; ++c) {
      float sum = 0;
      for (int dr = -1; dr <= 1; ++dr) {
        for (int dc = -1; dc <= 1; ++dc) {
          sum += sharp.At(0, r + dr, c + dc) * static_cast<float>((dr ? 1 : 2) * (dc ? 1 : 2));
        }
      }
      v.At(0, r, c) = sum / 16;
    }
  }
  return v;
}

double RmseInBody(const Volume& reference, const Volume& test) {
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < reference.voxels.size(); ++i) {
    if (reference.voxels[i] > -500) {
      const double d = static_cast<double>(test.voxels[i]) - reference.voxels[i];
      sum += d * d;
      ++count;
    }
  }
  return std::sqrt(sum / static_cast<double>(count));
}

}  // namespace

TEST(ShippedModels, EachLoadsAndKeepsItsContract) {
  const auto folders = ShippedFolders();
  ASSERT_FALSE(folders.empty()) << "no model folders in " << kShipped;
  for (const auto& folder : folders) {
    SCOPED_TRACE(folder.string());
    const auto model = TorchModel::Load(folder, Cpu());
    const ModelInfo& info = model->Info();
    EXPECT_EQ(info.name, folder.filename().string());
    EXPECT_TRUE(std::filesystem::is_regular_file(folder / "MODEL_CARD.md"));
    EXPECT_LE(std::filesystem::file_size(info.archive), 5u << 20);

    Volume input = SmallPhantom(0.0);
    if (info.modalities.front() != "CT") {
      // A magnitude-image stand-in: non-negative, arbitrary units.
      for (float& x : input.voxels) x = std::max(0.0f, x + 1000.0f);
      input.units = "";
    }
    const Volume output = model->Run(input, {});
    EXPECT_EQ(output.slices, info.throughPlaneScale > 1 ? 2 * input.slices - 1 : input.slices);
    EXPECT_EQ(output.rows, input.rows * info.inPlaneScale);
    EXPECT_EQ(output.columns, input.columns * info.inPlaneScale);
    for (float x : output.voxels) ASSERT_TRUE(std::isfinite(x));
  }
}

TEST(ShippedModels, CtDenoiserLowersNoise) {
  const auto model = TorchModel::Load(kShipped / "ct-denoise", Cpu());
  const Volume clean = ReconstructedLikePhantom();
  Volume noisy = clean;
  std::mt19937 rng(1);
  std::normal_distribution<float> noise(0.0f, 30.0f);
  for (float& x : noisy.voxels) x += noise(rng);
  const double before = RmseInBody(clean, noisy);
  const double after = RmseInBody(clean, model->Run(noisy, {}));
  // About 30 HU -> 10 HU with the shipped weights.
  EXPECT_LT(after, 0.5 * before) << "RMSE " << before << " HU -> " << after << " HU";
}

}  // namespace enhance
