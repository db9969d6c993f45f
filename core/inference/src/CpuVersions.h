// SPDX-License-Identifier: GPL-3.0-or-later
//
// The versions of a TorchScript model on the CPU that TorchModel's loader chooses between
// (layouts, and bf16 or int8 where the manifest allows it), and the calling convention of a model's
// forward(). Internal to the inference layer. Thread-safety: the functions keep no state;
// a LoadedModule is run as TorchModel says (one forward per module at a time is not
// required: TorchScript modules may run from several threads).
#pragma once

#include <torch/script.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "enhance/inference/Model.h"
#include "enhance/inference/ModelSpec.h"
#include "enhance/inference/TorchModel.h"

namespace enhance {

// How a model runs on the CPU; chosen at load time by timing.
enum class CpuLayout {
  kPlain,         // the graph as saved, NCHW tensors
  kChannelsLast,  // same graph, 4-D weights and inputs in channels-last (NHWC) memory order
  kFused,         // frozen, convolutions (+ ReLU) replaced by enhance::conv2d_fused, NHWC
  kFusedBf16,     // the same, the wide convolutions in bf16 (FusedConvolution.h)
  kFusedInt8,     // the same, the wide convolutions in int8, calibrated (Int8Convolution.h)
  kOptimised,     // frozen and optimised for inference (fused operators, oneDNN layouts)
};

const char* Describe(CpuLayout layout);

struct LoadedModule {
  std::shared_ptr<torch::jit::Module> module;
  CpuLayout layout = CpuLayout::kPlain;
};

// The batch in the memory order `layout` takes.
at::Tensor Prepare(const at::Tensor& batch, CpuLayout layout);

// The arguments of forward() for a batch of conditions: the batch itself, or for a
// diffusion model (x_t standard normal from `generator`, or the global one; t at the first
// inference step; the condition).
std::vector<c10::IValue> ForwardArguments(const ModelSpec& spec, const at::Tensor& condition,
                                          c10::optional<at::Generator> generator = c10::nullopt);

std::string ReadWholeFile(const std::filesystem::path& path);

// The manifest's calibration input [N, C, H, W]; Error naming the file when it is missing or
// does not fit the network.
at::Tensor ReadCalibration(const ModelSpec& spec);

// Loads the archive onto the device. On the CPU, when asked ("auto"), the graph as saved is
// timed against the same graph with weights and inputs in channels-last memory order
// (oneDNN's direct convolutions are several times faster in that order for the narrow
// layers of small networks) and against the frozen graph with fused convolutions
// (FusedConvolution.h), and the fastest is kept; for tiny networks layout conversions can
// cost more than they save, so none is assumed to win. The graph frozen and optimised by
// LibTorch is used only when asked for by name. A model whose manifest allows bf16 (int8)
// also has its fused graph in bf16 (in int8, calibrated on the calibration input) timed,
// when the processor has the instructions for it and its output on the calibration input
// stays within the manifest's tolerance; `report` says what was decided and why.
LoadedModule LoadModule(const ModelSpec& spec, const c10::Device& device, bool fp16,
                        const InferenceOptions& options, LowPrecisionReport* report = nullptr);

}  // namespace enhance
