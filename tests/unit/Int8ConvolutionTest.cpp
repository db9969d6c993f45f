// SPDX-License-Identifier: GPL-3.0-or-later
#include "Int8Convolution.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "TestNetworks.h"

#include "FusedConvolution.h"

namespace enhance {
namespace {

at::Tensor Expected(const at::Tensor& input, const at::Tensor& weight,
                    const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding, bool relu,
                    c10::IntArrayRef dilation) {
  at::Tensor output = at::conv2d(input.contiguous(), weight, bias, 1, padding, dilation);
  return relu ? output.relu() : output;
}

at::Tensor Quantization(float inputScale, bool inputSigned, float outputScale = 0,
                        bool outputSigned = false) {
  at::Tensor q = at::zeros({kQuantizationEntries});
  q[kInputScale] = inputScale;
  q[kInputSigned] = inputSigned ? 1 : 0;
  q[kOutputScale] = outputScale;
  q[kOutputSigned] = outputSigned ? 1 : 0;
  return q;
}

// The largest error of an int8 convolution against float, relative to the output's range:
// 8-bit inputs and per-channel weights keep it within about one percent.
double RelativeError(const at::Tensor& actual, const at::Tensor& expected) {
  EXPECT_EQ(actual.sizes(), expected.sizes());
  return (actual.to(at::kFloat).contiguous() - expected).abs().max().item<double>() /
         (expected.abs().max().item<double>() + 1e-6);
}

TEST(Int8Convolution, IsCloseToFloatForSignedAndUnsignedInputs) {
  torch::manual_seed(31);
  struct Case {
    int64_t inputs, outputs, kernel, padding, dilation;
    bool relu, bias, nonNegative;
  };
  const std::vector<Case> cases{{16, 16, 3, 1, 1, true, true, true},
                                {16, 20, 3, 1, 1, false, true, false},
                                {28, 28, 3, 2, 2, true, false, true},
                                {20, 8, 1, 0, 1, true, true, false},
                                {12, 16, 5, 2, 1, false, false, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.inputs) + "->" + std::to_string(c.outputs) + " k" +
                 std::to_string(c.kernel));
    at::Tensor input = at::randn({2, c.inputs, 37, 29});
    if (c.nonNegative) input = input.relu();
    const at::Tensor weight = at::randn({c.outputs, c.inputs, c.kernel, c.kernel}) * 0.1;
    const c10::optional<at::Tensor> bias =
        c.bias ? c10::optional<at::Tensor>(at::randn({c.outputs}) * 0.1) : c10::nullopt;
    const float range = input.abs().max().item<float>();
    const at::Tensor q = Quantization(c.nonNegative ? range / 255 : range / 127, !c.nonNegative);
    const at::Tensor expected =
        Expected(input, weight, bias, {c.padding, c.padding}, c.relu, {c.dilation, c.dilation});
    const at::Tensor actual =
        Int8Conv2d(input.contiguous(at::MemoryFormat::ChannelsLast), weight, bias,
                   {c.padding, c.padding}, c.relu, {c.dilation, c.dilation}, q);
    EXPECT_EQ(actual.scalar_type(), at::kFloat);
    const double error = RelativeError(actual, expected);
    EXPECT_GT(error, 0.0);  // it did quantize
    EXPECT_LT(error, 0.02);
  }
}

TEST(Int8Convolution, WritesEightBitsInTheReadersScaleAndReadsThemBack) {
  torch::manual_seed(32);
  const at::Tensor input = at::randn({1, 16, 24, 24}).relu();
  const at::Tensor w1 = at::randn({16, 16, 3, 3}) * 0.1, w2 = at::randn({16, 16, 3, 3}) * 0.1;
  const at::Tensor middle = Expected(input, w1, c10::nullopt, {1, 1}, true, {1, 1});
  const at::Tensor expected = Expected(middle, w2, c10::nullopt, {1, 1}, false, {1, 1});
  const float inScale = input.max().item<float>() / 255,
              midScale = middle.max().item<float>() / 255;
  const at::Tensor first =
      Int8Conv2d(input.contiguous(at::MemoryFormat::ChannelsLast), w1, c10::nullopt, {1, 1}, true,
                 {1, 1}, Quantization(inScale, false, midScale, false));
  ASSERT_EQ(first.scalar_type(), at::kByte);
  EXPECT_LT(RelativeError(first.to(at::kFloat) * midScale, middle), 0.02);
  const at::Tensor second =
      Int8Conv2d(first, w2, c10::nullopt, {1, 1}, false, {1, 1}, Quantization(midScale, false));
  EXPECT_LT(RelativeError(second, expected), 0.03);
  // An 8-bit input that does not match the layer's signedness is refused.
  EXPECT_THROW(
      Int8Conv2d(first, w2, c10::nullopt, {1, 1}, false, {1, 1}, Quantization(midScale, true)),
      std::invalid_argument);
}

TEST(Int8Convolution, CalibrationRunsInFloatAndRecordsTheInputRange) {
  const at::Tensor input = at::linspace(-2, 3, 16 * 10 * 10).reshape({1, 16, 10, 10});
  const at::Tensor weight = at::randn({16, 16, 3, 3}) * 0.1;
  at::Tensor q = at::zeros({kQuantizationEntries});
  q[kObservedMin] = std::numeric_limits<float>::infinity();
  q[kObservedMax] = -std::numeric_limits<float>::infinity();
  const at::Tensor output = Int8Conv2d(input, weight, c10::nullopt, {1, 1}, true, {1, 1}, q);
  EXPECT_LT(RelativeError(output, Expected(input, weight, c10::nullopt, {1, 1}, true, {1, 1})),
            1e-5);
  EXPECT_FLOAT_EQ(q[kObservedMin].item<float>(), -2.0f);
  EXPECT_FLOAT_EQ(q[kObservedMax].item<float>(), 3.0f);
}

// A network like the shipped denoisers: the image layer and the narrow output layer stay
// float, the layers between run in int8 and pass 8-bit activations to each other where
// every reader is an int8 layer; the result stays close to float.
TEST(Int8Convolution, CalibratedGraphIsCloseToFloat) {
  torch::jit::Module module = testing::FiveLayerDenoiser(33);
  const at::Tensor calibration = at::rand({2, 1, 32, 32});
  int replaced = 0;
  torch::jit::Module int8 = FuseConvolutionsInt8(module, {{calibration}}, &replaced);
  EXPECT_EQ(replaced, 3);                       // w1, w2, w3
  std::vector<std::pair<float, float>> scales;  // each int8 layer's input and output scale
  for (torch::jit::Node* node : int8.get_method("forward").graph()->nodes()) {
    if (std::string(node->kind().toQualString()) != "enhance::conv2d_int8") continue;
    const at::Tensor q = torch::jit::toIValue(node->input(6))->toTensor();
    EXPECT_EQ(q[kInputSigned].item<float>(), 0.0f);  // after ReLUs
    scales.emplace_back(q[kInputScale].item<float>(), q[kOutputScale].item<float>());
  }
  ASSERT_EQ(scales.size(), 3u);
  EXPECT_GT(scales[0].first, 0.0f);
  EXPECT_EQ(scales[0].second, scales[1].first);  // w1 writes 8 bits for w2
  EXPECT_EQ(scales[1].second, 0.0f);             // w2 is read by the addition too
  EXPECT_EQ(scales[2].second, 0.0f);
  const at::Tensor input = at::rand({1, 1, 40, 36});  // not the calibration input
  const at::Tensor expected = module.forward({input}).toTensor();
  const at::Tensor actual = int8.forward({input}).toTensor();
  EXPECT_EQ(actual.scalar_type(), at::kFloat);
  const double error = RelativeError(actual, expected);
  EXPECT_GT(error, 0.0);
  EXPECT_LT(error, 0.03);
}

// Layers may be left out of int8: they run as the float (or bf16) fused layout, and an int8
// layer read by one of them writes float.
TEST(Int8Convolution, ChosenLayersRunInInt8AndTheOthersInFloat) {
  torch::jit::Module module = testing::FiveLayerDenoiser(34);
  const Int8Calibration calibration = CalibrateInt8(module, {{at::rand({2, 1, 32, 32})}});
  ASSERT_EQ(calibration.Layers(), 3u);  // w1, w2, w3
  int replaced = 0;
  torch::jit::Module mixed =
      FuseConvolutionsInt8(module, calibration, {true, false, true}, false, &replaced);
  EXPECT_EQ(replaced, 2);
  std::vector<std::string> kinds;
  std::vector<float> outputScales;
  for (torch::jit::Node* node : mixed.get_method("forward").graph()->nodes()) {
    const std::string kind = node->kind().toQualString();
    if (kind == "enhance::conv2d_int8") {
      outputScales.push_back(
          torch::jit::toIValue(node->input(6))->toTensor()[kOutputScale].item<float>());
    }
    if (kind == "enhance::conv2d_int8" || kind == "enhance::conv2d_fused") kinds.push_back(kind);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"enhance::conv2d_fused", "enhance::conv2d_int8",
                                             "enhance::conv2d_fused", "enhance::conv2d_int8",
                                             "enhance::conv2d_fused"}));
  EXPECT_EQ(outputScales, (std::vector<float>{0.0f, 0.0f}));  // w1 is read by a float layer
  const at::Tensor input = at::rand({1, 1, 40, 36});
  const at::Tensor expected = module.forward({input}).toTensor();
  const double error = RelativeError(mixed.forward({input}).toTensor(), expected);
  EXPECT_GT(error, 0.0);
  EXPECT_LT(error, 0.03);
  EXPECT_THROW(FuseConvolutionsInt8(module, calibration, {true}, false, nullptr),
               std::invalid_argument);
}

TEST(Int8Convolution, AGraphWithoutWideConvolutionsHasNoInt8Layer) {
  torch::jit::Module module("Tiny");
  module.register_parameter("w", at::randn({4, 1, 3, 3}), false);
  module.define(R"(
    def forward(self, x):
        return torch.conv2d(x, self.w, None, 1, 1)
  )");
  module.eval();
  int replaced = -1;
  torch::jit::Module fused = FuseConvolutionsInt8(module, {{at::rand({1, 1, 16, 16})}}, &replaced);
  EXPECT_EQ(replaced, 0);
}

}  // namespace
}  // namespace enhance
