// SPDX-License-Identifier: GPL-3.0-or-later
//
// The graph pass of the fused CPU layout (FusedConvolution.h): each convolution the fused
// operator takes, with a ReLU that is its only use, becomes one enhance::conv2d_fused node,
// in float or bf16.
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
#include <vector>

#include "FusedConvolution.h"

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

// Replaces `conv` (and a ReLU that is its only use) when its weights and parameters are
// constants the fused operator handles; returns the new node, or nullptr.
torch::jit::Node* Replace(torch::jit::Graph& graph, torch::jit::Node* conv, bool bf16) {
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
  const bool low =
      bf16 && !IsNarrowConvolution(w, dilation->toIntVector()) && w.size(1) >= kNarrowInputs;

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
  torch::jit::Value* precision = graph.insertConstant(
      static_cast<int64_t>(low ? FusedPrecision::kBFloat16FloatOutput : FusedPrecision::kFloat));
  torch::jit::Node* fused = graph.create(kFused,
                                         {conv->input(0), conv->input(1), conv->input(2),
                                          conv->input(4), reluFlag, conv->input(5), precision},
                                         1);
  fused->insertBefore(conv);
  fused->output()->setType(c10::TensorType::get());
  torch::jit::Node* last = relu ? relu : conv;
  last->output()->replaceAllUsesWith(fused->output());
  if (relu) relu->destroy();
  conv->destroy();
  return fused;
}

FusedPrecision PrecisionOf(torch::jit::Node* fused) {
  const auto value = torch::jit::toIValue(fused->input(6));
  return value && value->isInt() ? static_cast<FusedPrecision>(value->toInt())
                                 : FusedPrecision::kFloat;
}

}  // namespace

torch::jit::Module FuseConvolutions(const torch::jit::Module& module, int* replaced,
                                    FusedPrecision precision) {
  torch::jit::Module frozen = torch::jit::freeze(module);
  std::shared_ptr<torch::jit::Graph> graph = frozen.get_method("forward").graph();
  std::vector<torch::jit::Node*> convolutions;
  for (torch::jit::Node* node : graph->nodes()) {
    if (node->kind() == kConv2d || node->kind() == kGeneralConvolution) {
      convolutions.push_back(node);
    }
  }
  const bool bf16 = precision != FusedPrecision::kFloat;
  std::vector<torch::jit::Node*> fused;
  for (torch::jit::Node* conv : convolutions) {
    if (torch::jit::Node* node = Replace(*graph, conv, bf16)) fused.push_back(node);
  }
  // A bf16 convolution whose every reader is a bf16 convolution writes bfloat16: the
  // activations between such layers are never converted.
  for (torch::jit::Node* node : fused) {
    if (PrecisionOf(node) != FusedPrecision::kBFloat16FloatOutput) continue;
    const auto& uses = node->output()->uses();
    const bool allLow = !uses.empty() && std::all_of(uses.begin(), uses.end(), [](const auto& use) {
      return use.user->kind() == kFused && use.offset == 0 &&
             PrecisionOf(use.user) != FusedPrecision::kFloat;
    });
    if (!allLow) continue;
    torch::jit::WithInsertPoint insertPoint(node);
    node->replaceInput(6, graph->insertConstant(static_cast<int64_t>(FusedPrecision::kBFloat16)));
  }
  const int count = static_cast<int>(fused.size());
  torch::jit::EliminateDeadCode(graph);
  if (replaced) *replaced = count;
  return frozen;
}

}  // namespace enhance
