// SPDX-License-Identifier: GPL-3.0-or-later
//
// The graph pass of the fused CPU layout (FusedConvolution.h): each convolution the fused
// operator takes, with an addition and a ReLU (or SiLU) that it feeds alone, becomes one
// enhance::conv2d_fused node, in float or bf16, or for int8 (stride 1, no addition) one
// enhance::conv2d_int8 node (Int8Convolution.h). Transposed convolutions whose kernel equals
// their stride are first rewritten as convolutions (RewriteTransposed).
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
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

const c10::Symbol kConvTranspose2d = c10::Symbol::fromQualString("aten::conv_transpose2d");

const c10::Symbol kAdd = c10::Symbol::fromQualString("aten::add");
const c10::Symbol kRelu = c10::Symbol::fromQualString("aten::relu");
const c10::Symbol kReluInPlace = c10::Symbol::fromQualString("aten::relu_");
const c10::Symbol kSilu = c10::Symbol::fromQualString("aten::silu");
const c10::Symbol kSiluInPlace = c10::Symbol::fromQualString("aten::silu_");

// The activations the fused operators take: each operator, in place or not, the
// out-of-place one it stands for and the fused operators' code for it.
struct ActivationKind {
  c10::Symbol symbol;
  c10::Symbol outOfPlace;
  FusedActivation fused;
};
const ActivationKind kActivations[] = {{kRelu, kRelu, FusedActivation::kRelu},
                                       {kReluInPlace, kRelu, FusedActivation::kRelu},
                                       {kSilu, kSilu, FusedActivation::kSilu},
                                       {kSiluInPlace, kSilu, FusedActivation::kSilu}};

// The node of kind `kind` in `value`'s block that is its only use, or nullptr.
torch::jit::Node* OnlyUser(torch::jit::Value* value, c10::Symbol kind) {
  const auto& uses = value->uses();
  if (uses.size() != 1) return nullptr;
  torch::jit::Node* user = uses[0].user;
  return user->kind() == kind && user->owningBlock() == value->node()->owningBlock() ? user
                                                                                     : nullptr;
}

// The constant arguments of a transposed convolution, from aten::_convolution (transposed)
// or aten::conv_transpose2d; false when one of them is not a constant.
struct TransposedArguments {
  c10::optional<c10::IValue> weight, bias, stride, padding, outputPadding, dilation, groups;
};

bool ReadTransposed(torch::jit::Node* node, TransposedArguments& a) {
  using torch::jit::toIValue;
  if (node->kind() == kGeneralConvolution && node->inputs().size() >= 9) {
    const auto transposed = toIValue(node->input(6));
    if (!transposed || !transposed->isBool() || !transposed->toBool()) return false;
    a = {toIValue(node->input(1)), toIValue(node->input(2)), toIValue(node->input(3)),
         toIValue(node->input(4)), toIValue(node->input(7)), toIValue(node->input(5)),
         toIValue(node->input(8))};
    return true;
  }
  if (node->kind() == kConvTranspose2d && node->inputs().size() == 8) {
    a = {toIValue(node->input(1)), toIValue(node->input(2)), toIValue(node->input(3)),
         toIValue(node->input(4)), toIValue(node->input(5)), toIValue(node->input(7)),
         toIValue(node->input(6))};
    return true;
  }
  return false;
}

bool IntsEqual(const c10::optional<c10::IValue>& value, std::vector<int64_t> expected) {
  return value && value->isIntList() && value->toIntVector() == expected;
}

// A transposed convolution whose square kernel equals its stride, with no padding, output
// padding or dilation and one group, writes each input pixel's k x k block of outputs on
// its own: it is exactly a 1x1 convolution to k*k*C outputs (output channel o*k*k + a*k + b
// holding block position (a, b) of channel o) followed by a pixel shuffle by k. LibTorch's
// CPU kernel for the transposed form is a slow generic one; the rewritten form runs as a
// fused convolution. A ReLU that is the transposed convolution's only use moves before the
// shuffle (they commute), where the fused convolution takes it. True when rewritten.
bool RewriteTransposed(torch::jit::Graph& graph, torch::jit::Node* node) {
  TransposedArguments a;
  if (!ReadTransposed(node, a)) return false;
  if (!a.weight || !a.weight->isTensor() || !a.bias || !(a.bias->isNone() || a.bias->isTensor()))
    return false;
  const at::Tensor w = a.weight->toTensor();
  if (w.dim() != 4 || w.scalar_type() != at::kFloat || !w.device().is_cpu() ||
      w.size(2) != w.size(3)) {
    return false;
  }
  const int64_t k = w.size(2), inputs = w.size(0), outputs = w.size(1);
  if (!IntsEqual(a.stride, {k, k}) || !IntsEqual(a.padding, {0, 0}) ||
      !IntsEqual(a.outputPadding, {0, 0}) || !IntsEqual(a.dilation, {1, 1}) || !a.groups ||
      !a.groups->isInt() || a.groups->toInt() != 1) {
    return false;
  }
  const at::Tensor weight =
      w.permute({1, 2, 3, 0}).reshape({outputs * k * k, inputs, 1, 1}).contiguous();
  c10::IValue bias;
  if (a.bias->isTensor()) {
    const at::Tensor b = a.bias->toTensor();
    if (b.dim() != 1 || b.size(0) != outputs || b.scalar_type() != at::kFloat) return false;
    bias = b.repeat_interleave(k * k).contiguous();
  }
  torch::jit::Node* relu = OnlyUser(node->output(), kRelu);
  if (!relu) relu = OnlyUser(node->output(), kReluInPlace);
  torch::jit::WithInsertPoint insertPoint(node);
  const std::vector<int64_t> ones{1, 1}, zeros{0, 0};
  torch::jit::Value* value = graph.insert(
      kConv2d, {node->input(0), graph.insertConstant(weight), graph.insertConstant(bias),
                graph.insertConstant(ones), graph.insertConstant(zeros), graph.insertConstant(ones),
                graph.insertConstant(static_cast<int64_t>(1))});
  if (relu) value = graph.insert(kRelu, {value});
  value = graph.insert(c10::Symbol::fromQualString("aten::pixel_shuffle"),
                       {value, graph.insertConstant(k)});
  (relu ? relu : node)->output()->replaceAllUsesWith(value);
  if (relu) relu->destroy();
  node->destroy();
  return true;
}

const c10::Symbol kPixelShuffle = c10::Symbol::fromQualString("aten::pixel_shuffle");

// The graph's top-level nodes of these kinds, in order: a list that stays valid while they
// are rewritten.
std::vector<torch::jit::Node*> NodesOfKind(torch::jit::Graph& graph,
                                           std::initializer_list<c10::Symbol> kinds) {
  std::vector<torch::jit::Node*> nodes;
  for (torch::jit::Node* node : graph.nodes()) {
    if (std::find(kinds.begin(), kinds.end(), node->kind()) != kinds.end()) nodes.push_back(node);
  }
  return nodes;
}

// A ReLU or SiLU that is a pixel shuffle's only use moves before the shuffle (an elementwise
// function and a permutation commute), when the shuffle's input feeds it alone: there the
// fused convolution that computes that input takes it and applies it as it writes, instead
// of one more pass over the shuffled feature map (a VAE decoder's or an upsampling
// network's pixel shuffle, then its activation).
void MoveActivationsBeforeShuffles(torch::jit::Graph& graph) {
  for (torch::jit::Node* shuffle : NodesOfKind(graph, {kPixelShuffle})) {
    if (shuffle->input(0)->uses().size() != 1) continue;
    torch::jit::Node* activation = nullptr;
    c10::Symbol kind;
    for (const ActivationKind& candidate : kActivations) {
      if ((activation = OnlyUser(shuffle->output(), candidate.symbol))) {
        kind = candidate.outOfPlace;
        break;
      }
    }
    if (!activation) continue;
    torch::jit::WithInsertPoint insertPoint(shuffle);
    torch::jit::Value* before = graph.insert(kind, {shuffle->input(0)});
    shuffle->replaceInput(0, before);
    activation->output()->replaceAllUsesWith(shuffle->output());
    activation->destroy();
  }
}

const c10::Symbol kFused = c10::Symbol::fromQualString("enhance::conv2d_fused");
const c10::Symbol kFusedPixelShuffle = c10::Symbol::fromQualString("enhance::pixel_shuffle");
const c10::Symbol kInt8Operator = c10::Symbol::fromQualString("enhance::conv2d_int8");

enum class Mode { kFloat, kBf16, kInt8 };

// How a graph pass treats the wide convolutions in int8: calibrated (null while
// calibrating) and, per wide convolution in graph order, whether it runs in int8 (null: all
// do) or, when not, in bf16 (`demoteToBf16`) or float.
struct Int8Plan {
  const std::vector<at::Tensor>* calibrated = nullptr;
  const std::vector<bool>* int8 = nullptr;
  bool demoteToBf16 = false;
};

// The other operand of `add` (aten::add(a, b, alpha) with alpha 1) when `value` is exactly
// one of a and b and the other is a tensor; otherwise nullptr.
torch::jit::Value* AddedTo(torch::jit::Node* add, torch::jit::Value* value) {
  if (add->inputs().size() != 3) return nullptr;
  const auto alpha = torch::jit::toIValue(add->input(2));
  if (!alpha || !((alpha->isInt() && alpha->toInt() == 1) ||
                  (alpha->isDouble() && alpha->toDouble() == 1.0))) {
    return nullptr;
  }
  torch::jit::Value* a = add->input(0);
  torch::jit::Value* b = add->input(1);
  if ((a == value) == (b == value)) return nullptr;
  torch::jit::Value* other = a == value ? b : a;
  return other->type()->cast<c10::TensorType>() ? other : nullptr;
}

// The quantization tensor of a new int8 layer: calibrated, or to be calibrated.
at::Tensor QuantizationOf(size_t layer, const std::vector<at::Tensor>* calibrated) {
  if (calibrated) return (*calibrated).at(layer).clone();
  at::Tensor q = at::zeros({kQuantizationEntries});
  q[kObservedMin] = std::numeric_limits<float>::infinity();
  q[kObservedMax] = -std::numeric_limits<float>::infinity();
  q[kLayer] = static_cast<double>(layer);
  return q;
}

// What a convolution feeds alone, which its fused node takes: an addition (its other
// operand becomes the shift; not in int8), then a ReLU (or, not in int8, a SiLU).
struct Followers {
  torch::jit::Node* add = nullptr;
  torch::jit::Value* shift = nullptr;
  torch::jit::Node* activationNode = nullptr;
  FusedActivation activation = FusedActivation::kNone;
};

Followers FollowersOf(torch::jit::Node* conv, bool int8) {
  Followers f;
  f.add = int8 ? nullptr : OnlyUser(conv->output(), kAdd);
  f.shift = f.add ? AddedTo(f.add, conv->output()) : nullptr;
  if (!f.shift) f.add = nullptr;
  torch::jit::Value* before = (f.add ? f.add : conv)->output();
  for (const ActivationKind& candidate : kActivations) {
    if (int8 && candidate.fused != FusedActivation::kRelu) continue;
    if ((f.activationNode = OnlyUser(before, candidate.symbol))) {
      f.activation = candidate.fused;
      break;
    }
  }
  return f;
}

// Replaces `conv` (and what it feeds alone, FollowersOf) when its weights and parameters are
// constants the fused operator handles; returns the new node, or nullptr. In int8, wide
// convolution number `layer` (counted here) runs as `plan` says.
torch::jit::Node* Replace(torch::jit::Graph& graph, torch::jit::Node* conv, Mode mode,
                          size_t& layer, const Int8Plan& plan) {
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
      !TwoPositive(*stride) || (mode == Mode::kInt8 && !AllOnes(*stride)) || !dilation ||
      !TwoPositive(*dilation) || !groups || !groups->isInt() || groups->toInt() != 1 || !padding ||
      !padding->isIntList()) {
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

  bool int8 = false, bf16 = low && mode == Mode::kBf16;
  if (low && mode == Mode::kInt8) {
    int8 = !plan.int8 || plan.int8->at(layer);
    bf16 = !int8 && plan.demoteToBf16;
  }
  const Followers followers = FollowersOf(conv, int8);
  torch::jit::Node* add = followers.add;
  torch::jit::Value* shift = followers.shift;
  torch::jit::Node* relu = followers.activationNode;
  const FusedActivation activation = followers.activation;
  // The addition's other operand may be computed after the convolution (a timestep shift):
  // the fused node goes where the addition was.
  torch::jit::Node* position = add ? add : conv;
  torch::jit::WithInsertPoint insertPoint(position);
  torch::jit::Value* reluFlag = int8 ? graph.insertConstant(relu != nullptr)
                                     : graph.insertConstant(static_cast<int64_t>(activation));
  torch::jit::Value* last = graph.insertConstant(
      int8 ? c10::IValue(QuantizationOf(layer, plan.calibrated))
           : c10::IValue(static_cast<int64_t>(bf16 ? FusedPrecision::kBFloat16FloatOutput
                                                   : FusedPrecision::kFloat)));
  if (low && mode == Mode::kInt8) ++layer;
  std::vector<torch::jit::Value*> inputs{conv->input(0),
                                         conv->input(1),
                                         conv->input(2),
                                         conv->input(4),
                                         reluFlag,
                                         conv->input(5),
                                         last};
  if (!int8) {
    inputs.push_back(shift ? shift : graph.insertConstant(c10::IValue()));
    inputs.push_back(conv->input(3));  // the stride
  }
  torch::jit::Node* fused = graph.create(int8 ? kInt8Operator : kFused, inputs, 1);
  fused->insertBefore(position);
  fused->output()->setType(c10::TensorType::get());
  torch::jit::Node* replaced = relu ? relu : add ? add : conv;
  replaced->output()->replaceAllUsesWith(fused->output());
  if (relu) relu->destroy();
  if (add) add->destroy();
  conv->destroy();
  return fused;
}

FusedPrecision PrecisionOf(torch::jit::Node* fused) {
  const auto value = torch::jit::toIValue(fused->input(6));
  return value && value->isInt() ? static_cast<FusedPrecision>(value->toInt())
                                 : FusedPrecision::kFloat;
}

// The pass itself, on a frozen copy of `module`; `quantization` receives the int8 layers'
// quantization tensors, in graph order.
torch::jit::Module Fuse(const torch::jit::Module& module, Mode mode, const Int8Plan& plan,
                        int* replaced, std::vector<at::Tensor>* quantization) {
  torch::jit::Module frozen = torch::jit::freeze(module);
  std::shared_ptr<torch::jit::Graph> graph = frozen.get_method("forward").graph();
  for (torch::jit::Node* node : NodesOfKind(*graph, {kGeneralConvolution, kConvTranspose2d})) {
    RewriteTransposed(*graph, node);
  }
  MoveActivationsBeforeShuffles(*graph);
  const std::vector<torch::jit::Node*> convolutions =
      NodesOfKind(*graph, {kConv2d, kGeneralConvolution});
  std::vector<torch::jit::Node*> fused, int8;
  size_t wide = 0;
  for (torch::jit::Node* conv : convolutions) {
    if (torch::jit::Node* node = Replace(*graph, conv, mode, wide, plan)) {
      fused.push_back(node);
      if (node->kind() == kInt8Operator) int8.push_back(node);
    }
  }
  if (plan.calibrated && plan.calibrated->size() != wide) {
    throw std::runtime_error("int8: the graph has " + std::to_string(wide) +
                             " wide convolutions, calibrated for " +
                             std::to_string(plan.calibrated->size()));
  }
  // A bf16 convolution whose every reader is a bf16 convolution writes bfloat16, and an
  // int8 one whose every reader is an int8 convolution writes 8 bits in its readers' scale:
  // the activations between such layers are never converted.
  for (torch::jit::Node* node : fused) {
    const auto& uses = node->output()->uses();
    const auto all = [&uses](const auto& test) {
      return !uses.empty() && std::all_of(uses.begin(), uses.end(), [&](const auto& use) {
        return use.offset == 0 && test(use.user);
      });
    };
    if (node->kind() == kInt8Operator && plan.calibrated &&
        all([](torch::jit::Node* user) { return user->kind() == kInt8Operator; })) {
      at::Tensor q = torch::jit::toIValue(node->input(6))->toTensor();
      const at::Tensor reader = torch::jit::toIValue(uses[0].user->input(6))->toTensor();
      q[kOutputScale] = reader[kInputScale];
      q[kOutputSigned] = reader[kInputSigned];
    }
    if (node->kind() != kFused || PrecisionOf(node) != FusedPrecision::kBFloat16FloatOutput)
      continue;
    if (!all([](torch::jit::Node* user) {
          return user->kind() == kFused && PrecisionOf(user) != FusedPrecision::kFloat;
        })) {
      continue;
    }
    torch::jit::WithInsertPoint insertPoint(node);
    node->replaceInput(6, graph->insertConstant(static_cast<int64_t>(FusedPrecision::kBFloat16)));
  }
  if (quantization) {
    for (torch::jit::Node* node : int8)
      quantization->push_back(torch::jit::toIValue(node->input(6))->toTensor());
  }
  // Pixel shuffles write their outputs where the fused convolutions do.
  for (torch::jit::Node* shuffle : NodesOfKind(*graph, {kPixelShuffle})) {
    torch::jit::Node* ours =
        graph->create(kFusedPixelShuffle, {shuffle->input(0), shuffle->input(1)}, 1);
    ours->insertBefore(shuffle);
    ours->output()->setType(c10::TensorType::get());
    shuffle->output()->replaceAllUsesWith(ours->output());
    shuffle->destroy();
  }
  torch::jit::EliminateDeadCode(graph);
  if (replaced) *replaced = static_cast<int>(mode == Mode::kInt8 ? int8.size() : fused.size());
  return frozen;
}

// The input scale of each int8 layer from what calibration saw: an input never negative
// (after a ReLU) is read as unsigned 8-bit, [0, max] in 255 steps; any other as signed,
// [-m, m] in 2 x 127 steps. Outputs are float until a graph pass finds the readers.
std::vector<at::Tensor> Calibrated(const std::vector<at::Tensor>& observed) {
  std::vector<at::Tensor> result;
  for (const at::Tensor& q : observed) {
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
    c[kOutputScale] = 0.0f;
    result.push_back(c);
  }
  return result;
}

}  // namespace

torch::jit::Module FuseConvolutions(const torch::jit::Module& module, int* replaced,
                                    FusedPrecision precision) {
  return Fuse(module, precision != FusedPrecision::kFloat ? Mode::kBf16 : Mode::kFloat, {},
              replaced, nullptr);
}

Int8Calibration CalibrateInt8(const torch::jit::Module& module,
                              const std::vector<std::vector<c10::IValue>>& calibration) {
  std::vector<at::Tensor> observed;
  int count = 0;
  torch::jit::Module calibrating = Fuse(module, Mode::kInt8, {}, &count, &observed);
  if (count > 0) {
    c10::InferenceMode guard;
    FusedOutputScope recycle;
    for (const auto& arguments : calibration) calibrating.forward(arguments);
  }
  return {Calibrated(observed)};
}

torch::jit::Module FuseConvolutionsInt8(const torch::jit::Module& module,
                                        const Int8Calibration& calibration,
                                        const std::vector<bool>& int8, bool demoteToBf16,
                                        int* replaced) {
  if (int8.size() != calibration.quantization.size()) {
    throw std::invalid_argument("int8: " + std::to_string(int8.size()) + " layers chosen for " +
                                std::to_string(calibration.quantization.size()));
  }
  Int8Plan plan;
  plan.calibrated = &calibration.quantization;
  plan.int8 = &int8;
  plan.demoteToBf16 = demoteToBf16;
  return Fuse(module, Mode::kInt8, plan, replaced, nullptr);
}

torch::jit::Module FuseConvolutionsInt8(const torch::jit::Module& module,
                                        const std::vector<std::vector<c10::IValue>>& calibration,
                                        int* replaced) {
  const Int8Calibration calibrated = CalibrateInt8(module, calibration);
  return FuseConvolutionsInt8(
      module, calibrated, std::vector<bool>(calibrated.quantization.size(), true), false, replaced);
}

}  // namespace enhance
