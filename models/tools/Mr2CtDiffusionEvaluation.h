// SPDX-License-Identifier: GPL-3.0-or-later
//
// The evaluation of a diffusion synthetic-CT model (mr2ct-diffusion) beside the regression
// model mr2ct on the same held-out slices (Mr2CtTestSet): MAE, PSNR, SSIM and bone Dice of
// the mean of K = 1, 2, 4 and 8 samples over several sampling seeds, the CPU time per
// 512x512 slice at each K, and how well the uncertainty map ranks the voxels by their
// actual error (Spearman correlation inside the body), beside the map that mr2ct gives by
// test-time augmentation. Prints markdown tables to stdout.
#pragma once

#include <filesystem>
#include <string>

namespace enhance::models {

// `models`: the folder holding mr2ct and `name`. Returns the program's exit code.
int EvaluateMr2CtDiffusion(const std::filesystem::path& models, const std::string& name);

}  // namespace enhance::models
