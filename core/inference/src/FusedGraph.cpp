// SPDX-License-Identifier: GPL-3.0-or-later
//
// The graph pass of the fused CPU layout (FusedConvolution.h): each convolution the fused
// operator takes, with a ReLU that is its only use, becomes one enhance::conv2d_fused node,
// in float or bf16, or for int8 one enhance::conv2d_int8 node (Int8Convolution.h).
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "FusedConvolution.h"
#include "Int8Convolution.h"

namespace enhance {
namespace {

// Fewer channels than this: a layer that stays in float in bf16 (see Replace()).
constexpr int64_t kNarrowInputs = 8;

const char* const kConvolutionSchema =
    "aten::conv2d(Tensor input, Tensor weight, Tensor? bias=None, int[2] stride=1, "
    "int[2] padding=0, int[2] dilation=1, int groups=1) -> Tensor";

bool AllOnes(const c10::IValue& value) {
  if (!value.isIntList()) return false;
  for (int64_t v : value.toIntVector()) {
    if (v != 1) return false;
  }
  return true;
}

bool TwoPositive(const c10::IValue& value) {
  if (!value.isIntList()) return false;
  const std::vector<int64_t> values = value.toIntVector();
  return values.size() == 2 && values[0] >= 1 && values[1] >= 1;
}

const c10::Symbol kConv2d = c10::Symbol::fromQualString("aten::conv2d");
// What torch.jit.trace records for nn.Conv2d: the general convolution, with `transposed`
// (input 6), `output_padding` (7) and `groups` (8).
const c10::Symbol kGeneralConvolution = c10::Symbol::fromQualString("aten::_convolution");

// A general convolution that is a plain 2-D one: not transposed, on a 4-D weight.
bool IsPlainGeneralConvolution(torch::jit::Node* conv) {
  if (conv->kind() != kGeneralConvolution || conv->inputs().size() < 9) return false;
  const auto transposed = torch::jit::toIValue(conv->input(6));
  return transposed && transposed->isBool() && !transposed->toBool();
}

const c10::Symbol kFused = c10::Symbol::fromQualString("enhance::conv2d_fused");
const c10::Symbol kInt8Operator = c10::Symbol::fromQualString("enhance::conv2d_int8");

enum class Mode { kFloat, kBf16, kInt8 };

// The int8 layers of a graph: each one's quantization tensor, in graph order, and the
// layers reading its output when every reader is one (empty otherwise).
struct Int8Layers {
  std::vector<at::Tensor> quantization;
  std::vector<std::vector<size_t>> int8Readers;
};

// The quantization tensor of a new int8 layer: calibrated, or to be calibrated.
at::Tensor QuantizationOf(size_t layer, const std::vector<at::Tensor>* calibrated) {
  if (calibrated) return (*calibrated).at(layer).clone();
  at::Tensor q = at::zeros({kQuantizationEntries});
  q[kObservedMin] = std::numeric_limits<float>::infinity();
  q[kObservedMax] = -std::numeric_limits<float>::infinity();
  q[kLayer] = static_cast<double>(layer);
  return q;
}

// Replaces `conv` (and a ReLU that is its only use) when its weights and parameters are
// constants the fused operator handles; returns the new node, or nullptr. In int8, a wide
// convolution becomes int8 layer number `layer`, quantized as `calibrated` says (or to be
// calibrated).
torch::jit::Node* Replace(torch::jit::Graph& graph, torch::jit::Node* conv, Mode mode, size_t layer,
                          const std::vector<at::Tensor>* calibrated) {
  using torch::jit::toIValue;
  const bool general = IsPlainGeneralConvolution(conv);
  if (!general && !conv->matches(kConvolutionSchema)) return nullptr;
  const auto weight = toIValue(conv->input(1));
  const auto bias = toIValue(conv->input(2));
  const auto stride = toIValue(conv->input(3));
  const auto padding = toIValue(conv->input(4));
  const auto dilation = toIValue(conv->input(5));
  const auto groups = toIValue(conv->input(general ? 8 : 6));
  if (!weight || !weight->isTensor() || !bias || !(bias->isNone() || bias->isTensor()) || !stride ||
      !AllOnes(*stride) || !dilation || !TwoPositive(*dilation) || !groups || !groups->isInt() ||
      groups->toInt() != 1 || !padding || !padding->isIntList()) {
    return nullptr;
  }
  const at::Tensor& w = weight->toTensor();
  if (w.dim() != 4 || w.scalar_type() != at::kFloat || !w.device().is_cpu()) return nullptr;
  const std::vector<int64_t> pads = padding->toIntVector();
  if (pads.size() != 2 || pads[0] < 0 || pads[1] < 0) return nullptr;
  // In bf16, every wide convolution computes in bfloat16 and writes float; FuseConvolutions
  // then lets those whose only readers are other bf16 convolutions write bfloat16. Those
  // reading few channels (a network's first layer, reading the image itself) stay in
  // float: bfloat16 would round the image to 3 significant digits, and they cost little.
  const bool low = mode != Mode::kFloat && !IsNarrowConvolution(w, dilation->toIntVector()) &&
                   w.size(1) >= kNarrowInputs;

  torch::jit::Node* relu = nullptr;
  const auto& uses = conv->output()->uses();
  if (uses.size() == 1) {
    torch::jit::Node* user = uses[0].user;
    const bool isRelu = user->kind() == c10::Symbol::fromQualString("aten::relu") ||
                        user->kind() == c10::Symbol::fromQualString("aten::relu_");
    if (isRelu && user->owningBlock() == conv->owningBlock()) relu = user;
  }
  torch::jit::WithInsertPoint insertPoint(conv);
  torch::jit::Value* reluFlag = graph.insertConstant(relu != nullptr);
  const bool int8 = low && mode == Mode::kInt8;
  torch::jit::Value* last = graph.insertConstant(
      int8 ? c10::IValue(QuantizationOf(layer, calibrated))
           : c10::IValue(static_cast<int64_t>(low ? FusedPrecision::kBFloat16FloatOutput
                                                  : FusedPrecision::kFloat)));
  torch::jit::Node* fused = graph.create(int8 ? kInt8Operator : kFused,
                                         {conv->input(0), conv->input(1), conv->input(2),
                                          conv->input(4), reluFlag, conv->input(5), last},
                                         1);
  fused->insertBefore(conv);
  fused->output()->setType(c10::TensorType::get());
  (relu ? relu : conv)->output()->replaceAllUsesWith(fused->output());
  if (relu) relu->destroy();
  conv->destroy();
  return fused;
}

FusedPrecision PrecisionOf(torch::jit::Node* fused) {
  const auto value = torch::jit::toIValue(fused->input(6));
  return value && value->isInt() ? static_cast<FusedPrecision>(value->toInt())
                                 : FusedPrecision::kFloat;
}

// The pass itself, on a frozen copy of `module`; `layers` receives the int8 layers.
torch::jit::Module Fuse(const torch::jit::Module& module, Mode mode,
                        const std::vector<at::Tensor>* calibrated, int* replaced,
                        Int8Layers* layers) {
  torch::jit::Module frozen = torch::jit::freeze(module);
  std::shared_ptr<torch::jit::Graph> graph = frozen.get_method("forward").graph();
  std::vector<torch::jit::Node*> convolutions;
  for (torch::jit::Node* node : graph->nodes()) {
    if (node->kind() == kConv2d || node->kind() == kGeneralConvolution) {
      convolutions.push_back(node);
    }
  }
  std::vector<torch::jit::Node*> fused, int8;
  for (torch::jit::Node* conv : convolutions) {
    if (torch::jit::Node* node = Replace(*graph, conv, mode, int8.size(), calibrated)) {
      fused.push_back(node);
      if (node->kind() == kInt8Operator) int8.push_back(node);
    }
  }
  if (calibrated && calibrated->size() != int8.size()) {
    throw std::runtime_error("int8: the graph has " + std::to_string(int8.size()) +
                             " int8 layers, calibrated for " + std::to_string(calibrated->size()));
  }
  // A bf16 convolution whose every reader is a bf16 convolution writes bfloat16: the
  // activations between such layers are never converted.
  for (torch::jit::Node* node : fused) {
    if (node->kind() != kFused || PrecisionOf(node) != FusedPrecision::kBFloat16FloatOutput)
      continue;
    const auto& uses = node->output()->uses();
    const bool allLow = !uses.empty() && std::all_of(uses.begin(), uses.end(), [](const auto& use) {
      return use.user->kind() == kFused && use.offset == 0 &&
             PrecisionOf(use.user) != FusedPrecision::kFloat;
    });
    if (!allLow) continue;
    torch::jit::WithInsertPoint insertPoint(node);
    node->replaceInput(6, graph->insertConstant(static_cast<int64_t>(FusedPrecision::kBFloat16)));
  }
  if (layers) {
    for (torch::jit::Node* node : int8) {
      layers->quantization.push_back(torch::jit::toIValue(node->input(6))->toTensor());
      std::vector<size_t> readers;
      for (const auto& use : node->output()->uses()) {
        const auto found = std::find(int8.begin(), int8.end(), use.user);
        if (found == int8.end() || use.offset != 0) {
          readers.clear();
          break;
        }
        readers.push_back(static_cast<size_t>(found - int8.begin()));
      }
      layers->int8Readers.push_back(readers);
    }
  }
  torch::jit::EliminateDeadCode(graph);
  if (replaced) *replaced = static_cast<int>(mode == Mode::kInt8 ? int8.size() : fused.size());
  return frozen;
}

// The scales of int8 layer `i` from what calibration saw: an input never negative (after a
// ReLU) is read as unsigned 8-bit, [0, max] in 255 steps; any other as signed, [-m, m] in
// 2 x 127 steps. A layer whose every reader is an int8 layer writes in its readers' scale.
std::vector<at::Tensor> Calibrated(const Int8Layers& layers) {
  std::vector<at::Tensor> result;
  for (const at::Tensor& q : layers.quantization) {
    at::Tensor c = q.clone();
    const float low = q[kObservedMin].item<float>(), high = q[kObservedMax].item<float>();
    if (!(low <= high) || !std::isfinite(low) || !std::isfinite(high)) {
      throw std::runtime_error("int8 calibration: layer " + std::to_string(result.size()) +
                               " saw no finite input");
    }
    const bool isSigned = low < 0;
    const float range = isSigned ? std::max(-low, high) / 127.0f : high / 255.0f;
    c[kInputScale] = range > 0 ? range : 1.0f;
    c[kInputSigned] = isSigned ? 1.0f : 0.0f;
    result.push_back(c);
  }
  for (size_t i = 0; i < result.size(); ++i) {
    const auto& readers = layers.int8Readers[i];
    if (readers.empty()) continue;
    result[i][kOutputScale] = result[readers.front()][kInputScale];
    result[i][kOutputSigned] = result[readers.front()][kInputSigned];
  }
  return result;
}

}  // namespace

torch::jit::Module FuseConvolutions(const torch::jit::Module& module, int* replaced,
                                    FusedPrecision precision) {
  return Fuse(module, precision != FusedPrecision::kFloat ? Mode::kBf16 : Mode::kFloat, nullptr,
              replaced, nullptr);
}

torch::jit::Module FuseConvolutionsInt8(const torch::jit::Module& module,
                                        const std::vector<std::vector<c10::IValue>>& calibration,
                                        int* replaced) {
  Int8Layers layers;
  int count = 0;
  torch::jit::Module calibrating = Fuse(module, Mode::kInt8, nullptr, &count, &layers);
  if (count > 0) {
    c10::InferenceMode guard;
    FusedOutputScope recycle;
    for (const auto& arguments : calibration) calibrating.forward(arguments);
  }
  const std::vector<at::Tensor> scales = Calibrated(layers);
  return Fuse(module, Mode::kInt8, &scales, replaced, nullptr);
}

}  // namespace enhance
