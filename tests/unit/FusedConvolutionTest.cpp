// SPDX-License-Identifier: GPL-3.0-or-later
#include "FusedConvolution.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "TestNetworks.h"

namespace enhance {
namespace {

at::Tensor Expected(const at::Tensor& input, const at::Tensor& weight,
                    const c10::optional<at::Tensor>& bias, c10::IntArrayRef padding, bool relu,
                    c10::IntArrayRef dilation = {1, 1}, c10::IntArrayRef stride = {1, 1}) {
  at::Tensor output = at::conv2d(input.contiguous(), weight, bias, stride, padding, dilation);
  return relu ? output.relu() : output;
}

void ExpectClose(const at::Tensor& actual, const at::Tensor& expected) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const double scale = expected.abs().max().item<double>() + 1e-6;
  EXPECT_LE((actual - expected).abs().max().item<double>(), 1e-5 * scale);
}

// Within float's rounding in float; within 2% of the largest output in bf16.
void ExpectCloseIn(FusedPrecision precision, const at::Tensor& actual, const at::Tensor& expected) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const double scale = expected.abs().max().item<double>();
  const double error = (actual - expected).abs().max().item<double>();
  EXPECT_LT(error, (precision == FusedPrecision::kFloat ? 1e-5 : 0.02) * scale);
}

std::multiset<std::string> Kinds(torch::jit::Module& module) {
  std::multiset<std::string> kinds;
  for (const torch::jit::Node* node : module.get_method("forward").graph()->nodes()) {
    kinds.insert(node->kind().toQualString());
  }
  return kinds;
}

// Shapes of the shipped networks (16, 20, 28 features; 1 and 4 outputs; 1 and 4 inputs) and
// awkward ones: channels not a multiple of 8, images narrower than one block of 8 pixels,
// kernels of 1 and 5, no padding and padding wider than the kernel's half; dilations as
// mr2ct's (2, 4, 8, padded to keep the size), wide and narrow; strides of 2 (a U-Net's
// downsampling) and 3, wide and narrow; one input channel (a first layer) to 8, 9, 12, 16,
// 24 and 64 outputs, strided, padded wider than the kernel's half, dilated, 1x1 and 7x7.
TEST(FusedConvolution, EqualsLibTorchsConvolutionForEveryShape) {
  torch::manual_seed(7);
  struct Case {
    int64_t inputs, outputs, kernel, padding, dilation = 1, stride = 1;
  };
  const std::vector<Case> cases{
      {1, 16, 3, 1},        {4, 20, 3, 1},        {16, 16, 3, 1},       {16, 1, 3, 1},
      {20, 1, 3, 1},        {28, 4, 3, 1},        {16, 3, 5, 2},        {9, 2, 3, 0},
      {8, 5, 1, 0},         {3, 2, 3, 1},         {32, 7, 3, 3},        {12, 1, 5, 1},
      {16, 16, 1, 0},       {24, 9, 3, 2},        {20, 20, 3, 2, 2},    {20, 20, 3, 8, 8},
      {16, 1, 3, 4, 4},     {9, 12, 3, 0, 2},     {24, 48, 3, 1, 1, 2}, {16, 3, 3, 1, 1, 2},
      {12, 16, 5, 2, 1, 3}, {16, 16, 3, 2, 2, 2}, {4, 1, 3, 1},         {2, 3, 5, 2},
      {7, 2, 3, 0},         {1, 1, 3, 1},         {6, 1, 1, 0},         {4, 1, 3, 1, 1, 2},
      {1, 8, 3, 1, 1, 2},   {1, 9, 3, 1, 1, 2},   {1, 24, 5, 2},        {1, 12, 3, 0, 1, 3},
      {1, 64, 7, 3},        {1, 16, 3, 4},        {1, 16, 3, 1, 2},     {1, 8, 1, 0}};
  const std::vector<std::pair<int64_t, int64_t>> sizes{{13, 29}, {5, 3}, {40, 21}};
  for (const Case& c : cases) {
    for (const auto& [height, width] : sizes) {
      for (const bool relu : {false, true}) {
        for (const bool withBias : {false, true}) {
          for (const bool channelsLast : {false, true}) {
            SCOPED_TRACE(std::to_string(c.inputs) + "->" + std::to_string(c.outputs) + " k" +
                         std::to_string(c.kernel) + " p" + std::to_string(c.padding) + " d" +
                         std::to_string(c.dilation) + " s" + std::to_string(c.stride) + " " +
                         std::to_string(height) + "x" + std::to_string(width) +
                         (relu ? " relu" : "") + (withBias ? " bias" : "") +
                         (channelsLast ? " nhwc" : " nchw"));
            at::Tensor input = at::randn({2, c.inputs, height, width});
            if (channelsLast) input = input.contiguous(at::MemoryFormat::ChannelsLast);
            const at::Tensor weight = at::randn({c.outputs, c.inputs, c.kernel, c.kernel});
            const c10::optional<at::Tensor> bias =
                withBias ? c10::optional<at::Tensor>(at::randn({c.outputs})) : c10::nullopt;
            const std::vector<int64_t> padding{c.padding, c.padding};
            const std::vector<int64_t> dilation{c.dilation, c.dilation};
            const std::vector<int64_t> stride{c.stride, c.stride};
            const int64_t reach = (c.kernel - 1) * c.dilation;
            if (height + 2 * c.padding <= reach || width + 2 * c.padding <= reach) continue;
            const at::Tensor actual = FusedConv2d(input, weight, bias, padding, relu, dilation,
                                                  FusedPrecision::kFloat, c10::nullopt, stride);
            EXPECT_TRUE(actual.is_contiguous(at::MemoryFormat::ChannelsLast));
            ExpectClose(actual, Expected(input, weight, bias, padding, relu, dilation, stride));
          }
        }
      }
    }
  }
}

TEST(FusedConvolution, HandsWhatItWasNotMadeForToLibTorch) {
  const at::Tensor input = at::randn({1, 4, 9, 9}, at::kDouble);
  const at::Tensor weight = at::randn({2, 4, 3, 3}, at::kDouble);
  const std::vector<int64_t> padding{1, 1};
  const at::Tensor actual = FusedConv2d(input, weight, c10::nullopt, padding, true);
  EXPECT_EQ(actual.scalar_type(), at::kDouble);
  ExpectClose(actual, Expected(input, weight, c10::nullopt, padding, true));
}

TEST(FusedConvolution, ReplacesConvolutionsAndTheReluThatIsTheirOnlyUse) {
  torch::manual_seed(3);
  torch::jit::Module module("Net");
  module.register_parameter("w0", at::randn({16, 1, 3, 3}) * 0.3, false);
  module.register_parameter("b0", at::randn({16}), false);
  module.register_parameter("w1", at::randn({16, 16, 3, 3}) * 0.1, false);
  module.register_parameter("w2", at::randn({16, 8, 3, 3}) * 0.1, false);   // 2 groups
  module.register_parameter("w3", at::randn({16, 16, 3, 3}) * 0.1, false);  // stride 2
  module.register_parameter("w4", at::randn({1, 16, 3, 3}) * 0.1, false);
  module.register_parameter("b4", at::randn({1}), false);
  module.register_parameter("w5", at::randn({16, 16, 3, 3}) * 0.1, false);  // dilation 2
  module.define(R"(
    def forward(self, x):
        h = torch.relu(torch.conv2d(x * 2.0, self.w0, self.b0, 1, 1))
        a = torch.conv2d(h, self.w1, None, 1, 1)
        b = torch.relu(a) + a
        g = torch.relu(torch.conv2d(b, self.w2, None, 1, 1, 1, 2))
        s = torch.conv2d(g, self.w3, None, 2, 1)
        u = torch.repeat_interleave(torch.repeat_interleave(s, 2, 2), 2, 3)
        d = torch.relu(torch.conv2d(u, self.w5, None, 1, 2, 2))
        return torch.conv2d(d, self.w4, self.b4, 1, 1) / 4.0 + x
  )");
  module.eval();
  const at::Tensor input = at::randn({2, 1, 24, 20});
  const at::Tensor expected = module.forward({input}).toTensor();

  int replaced = 0;
  torch::jit::Module fused = FuseConvolutions(module, &replaced);
  // w0 with its ReLU, w1 (whose output has two uses: the ReLU stays), the strided w3, the
  // dilated w5 with its ReLU, w4; not the grouped one.
  EXPECT_EQ(replaced, 5);
  const std::multiset<std::string> kinds = Kinds(fused);
  EXPECT_EQ(kinds.count("enhance::conv2d_fused"), 5u);
  EXPECT_EQ(kinds.count("aten::conv2d"), 1u);
  EXPECT_EQ(kinds.count("aten::relu"), 2u);
  ExpectClose(fused.forward({input}).toTensor().contiguous(), expected);
  {
    FusedOutputScope recycle;
    for (int i = 0; i < 3; ++i) {
      ExpectClose(fused.forward({input}).toTensor().contiguous(), expected);
    }
  }
}

// torch.jit.trace records nn.Conv2d as aten::_convolution: fused as well; a transposed one
// whose kernel equals its stride becomes a 1x1 convolution and a pixel shuffle.
TEST(FusedConvolution, ReplacesTheGeneralConvolutionThatTracedModelsRecord) {
  torch::manual_seed(4);
  torch::jit::Module module("Traced");
  module.register_parameter("w0", at::randn({16, 2, 3, 3}) * 0.3, false);
  module.register_parameter("b0", at::randn({16}), false);
  module.register_parameter("w1", at::randn({16, 8, 2, 2}) * 0.1, false);  // transposed
  module.define(R"(
    def forward(self, x):
        h = torch.relu(torch._convolution(x, self.w0, self.b0, [1, 1], [1, 1], [1, 1], False,
                                          [0, 0], 1, False, False, True, True))
        return torch._convolution(h, self.w1, None, [2, 2], [0, 0], [1, 1], True, [0, 0], 1,
                                  False, False, True, True)
  )");
  module.eval();
  const at::Tensor input = at::randn({2, 2, 12, 10});
  const at::Tensor expected = module.forward({input}).toTensor();
  int replaced = 0;
  torch::jit::Module fused = FuseConvolutions(module, &replaced);
  EXPECT_EQ(replaced, 2);
  const std::multiset<std::string> kinds = Kinds(fused);
  EXPECT_EQ(kinds.count("enhance::conv2d_fused"), 2u);
  EXPECT_EQ(kinds.count("aten::_convolution"), 0u);
  EXPECT_EQ(kinds.count("enhance::pixel_shuffle"), 1u);
  EXPECT_EQ(kinds.count("aten::relu"), 0u);
  ExpectClose(fused.forward({input}).toTensor().contiguous(), expected);
}

// A transposed convolution whose kernel equals its stride (a U-Net's upsampling) becomes a
// 1x1 convolution and a pixel shuffle, with a ReLU that follows it; others stay as they are.
TEST(FusedConvolution, RewritesTransposedConvolutionsWhoseKernelIsTheirStride) {
  torch::manual_seed(5);
  torch::jit::Module module("Unet");
  module.register_parameter("w0", at::randn({16, 12, 2, 2}) * 0.2, false);  // k2 s2
  module.register_parameter("b0", at::randn({12}), false);
  module.register_parameter("w1", at::randn({12, 9, 3, 3}) * 0.2, false);  // k3 s3
  module.register_parameter("w2", at::randn({9, 8, 3, 3}) * 0.2, false);   // k3 s2: overlaps
  module.register_parameter("b2", at::randn({8}), false);
  module.define(R"(
    def forward(self, x):
        u = torch.relu(torch.conv_transpose2d(x, self.w0, self.b0, 2))
        v = torch.conv_transpose2d(u, self.w1, None, 3)
        return torch.conv_transpose2d(v, self.w2, self.b2, 2, 1)
  )");
  module.eval();
  const at::Tensor input = at::randn({2, 16, 7, 5});
  const at::Tensor expected = module.forward({input}).toTensor();
  for (const FusedPrecision precision : {FusedPrecision::kFloat, FusedPrecision::kBFloat16}) {
    int replaced = 0;
    torch::jit::Module fused = FuseConvolutions(module, &replaced, precision);
    EXPECT_EQ(replaced, 2);
    const std::multiset<std::string> kinds = Kinds(fused);
    EXPECT_EQ(kinds.count("enhance::conv2d_fused"), 2u);
    EXPECT_EQ(kinds.count("enhance::pixel_shuffle"), 2u);
    EXPECT_EQ(kinds.count("aten::conv_transpose2d"), 1u);
    EXPECT_EQ(kinds.count("aten::relu"), 0u);
    ExpectCloseIn(precision, fused.forward({input}).toTensor().contiguous(), expected);
  }
}

// A convolution feeding an addition alone takes the addition's other operand as its shift:
// added with the bias when it is per channel (a diffusion network's timestep embedding, the
// same for the whole batch or one per image), added afterwards otherwise (a residual); a
// ReLU after the addition is taken too.
TEST(FusedConvolution, TakesTheAdditionAndReluThatFollowAConvolution) {
  torch::manual_seed(6);
  torch::jit::Module module("Block");
  module.register_parameter("w0", at::randn({16, 16, 3, 3}) * 0.1, false);
  module.register_parameter("b0", at::randn({16}), false);
  module.register_parameter("w1", at::randn({16, 16, 3, 3}) * 0.1, false);
  module.register_parameter("e", at::randn({8, 16}), false);
  module.define(R"(
    def forward(self, x, t):
        h = torch.conv2d(x, self.w0, self.b0, 1, 1)
        shift = torch.matmul(t, self.e).unsqueeze(2).unsqueeze(3)
        h = torch.relu(h + shift)
        return x + torch.conv2d(h, self.w1, None, 1, 1)
  )");
  module.eval();
  const at::Tensor x = at::randn({3, 16, 11, 9});
  const at::Tensor same = at::randn({1, 8}).expand({3, 8}).contiguous();
  for (const at::Tensor& t : {same, at::randn({3, 8}), at::randn({1, 8})}) {
    const at::Tensor expected = module.forward({x, t}).toTensor();
    for (const FusedPrecision precision : {FusedPrecision::kFloat, FusedPrecision::kBFloat16}) {
      int replaced = 0;
      torch::jit::Module fused = FuseConvolutions(module, &replaced, precision);
      EXPECT_EQ(replaced, 2);
      const std::multiset<std::string> kinds = Kinds(fused);
      EXPECT_EQ(kinds.count("aten::add"), 0u);
      EXPECT_EQ(kinds.count("aten::relu"), 0u);
      ExpectCloseIn(precision, fused.forward({x, t}).toTensor().contiguous(), expected);
    }
  }
}

// A SiLU after a convolution (an autoencoder's activation) is applied as the output is
// written, wide (oneDNN's swish), narrow (the direct loop) and strided; the graph pass takes
// it as it takes a ReLU.
TEST(FusedConvolution, AppliesASiluAsItWrites) {
  torch::manual_seed(8);
  struct Case {
    int64_t inputs, outputs, stride;
    double scale = 1.0;  // of the input: large values reach where e^-x under- and overflows
  };
  for (const Case c : {Case{16, 16, 1}, Case{16, 4, 1}, Case{1, 16, 2}, Case{24, 32, 2},
                       Case{1, 8, 2, 200.0}, Case{1, 12, 1, 30.0}}) {
    SCOPED_TRACE(std::to_string(c.inputs) + "->" + std::to_string(c.outputs) + " s" +
                 std::to_string(c.stride) + " x" + std::to_string(c.scale));
    const at::Tensor input = at::randn({2, c.inputs, 17, 22}) * c.scale;
    const at::Tensor weight = at::randn({c.outputs, c.inputs, 3, 3}) * 0.3;
    const at::Tensor bias = at::randn({c.outputs});
    const std::vector<int64_t> padding{1, 1}, stride{c.stride, c.stride};
    const at::Tensor expected = at::silu(at::conv2d(input, weight, bias, stride, padding));
    ExpectClose(FusedConv2d(input, weight, bias, padding, FusedActivation::kSilu, {},
                            FusedPrecision::kFloat, c10::nullopt, stride),
                expected);
  }
  torch::jit::Module module("Encoder");
  module.register_parameter("w0", at::randn({16, 1, 3, 3}) * 0.3, false);
  module.register_parameter("w1", at::randn({24, 16, 3, 3}) * 0.1, false);
  module.define(R"(
    def forward(self, x):
        h = torch.silu(torch.conv2d(x, self.w0, None, 2, 1))
        return torch.silu(torch.conv2d(h, self.w1, None, 2, 1))
  )");
  module.eval();
  const at::Tensor input = at::randn({1, 1, 40, 36});
  const at::Tensor expected = module.forward({input}).toTensor();
  int replaced = 0;
  torch::jit::Module fused = FuseConvolutions(module, &replaced);
  EXPECT_EQ(replaced, 2);
  EXPECT_EQ(Kinds(fused).count("aten::silu"), 0u);
  ExpectClose(fused.forward({input}).toTensor().contiguous(), expected);
}

// An activation after a pixel shuffle (a decoder's upsampling) moves before it, where the
// convolution that feeds the shuffle applies it as it writes; not when the convolution's
// output is read by something else too.
TEST(FusedConvolution, TakesTheActivationThatFollowsAPixelShuffle) {
  torch::manual_seed(9);
  torch::jit::Module module("Decoder");
  module.register_parameter("w0", at::randn({32, 8, 1, 1}) * 0.3, false);
  module.register_parameter("b0", at::randn({32}), false);
  module.register_parameter("w1", at::randn({16, 8, 1, 1}) * 0.3, false);
  module.register_parameter("w2", at::randn({16, 4, 3, 3}) * 0.3, false);
  module.define(R"(
    def forward(self, x):
        h = torch.silu(torch.pixel_shuffle(torch.conv2d(x, self.w0, self.b0), 2))
        h = torch.relu_(torch.pixel_shuffle(torch.conv2d(h, self.w1), 2))
        g = torch.conv2d(h, self.w2, None, 1, 1)
        return torch.silu(torch.pixel_shuffle(g, 2)) + torch.mean(g)
  )");
  module.eval();
  const at::Tensor input = at::randn({2, 8, 6, 5});
  const at::Tensor expected = module.forward({input}).toTensor();
  int replaced = 0;
  torch::jit::Module fused = FuseConvolutions(module, &replaced);
  EXPECT_EQ(replaced, 3);
  const std::multiset<std::string> kinds = Kinds(fused);
  EXPECT_EQ(kinds.count("enhance::pixel_shuffle"), 3u);
  EXPECT_EQ(kinds.count("aten::relu_") + kinds.count("aten::relu"), 0u);
  EXPECT_EQ(kinds.count("aten::silu"), 1u);  // the last: g is read twice
  ExpectClose(fused.forward({input}).toTensor().contiguous(), expected);
}

// The pixel shuffle that fused graphs run moves the same values as LibTorch's, into a fused
// output; what it was not made for goes to LibTorch's.
TEST(FusedConvolution, PixelShuffleMovesTheValuesAsLibTorchDoes) {
  torch::manual_seed(10);
  for (const at::ScalarType type : {at::kFloat, at::kBFloat16}) {
    for (const int64_t factor : {1, 2, 3, 4}) {
      for (const int64_t channels : {5, 1}) {  // 1: a network's last shuffle
        SCOPED_TRACE(std::string(c10::toString(type)) + " x" + std::to_string(factor) + " " +
                     std::to_string(channels) + " channels");
        const at::Tensor input = at::randn({2, channels * factor * factor, 7, 9})
                                     .to(type)
                                     .contiguous(at::MemoryFormat::ChannelsLast);
        const at::Tensor actual = FusedPixelShuffle(input, factor);
        EXPECT_TRUE(actual.is_contiguous(at::MemoryFormat::ChannelsLast));
        EXPECT_TRUE(at::equal(actual, at::pixel_shuffle(input, factor)));
      }
    }
  }
  const at::Tensor planar = at::randn({1, 8, 3, 4});  // not channels-last
  EXPECT_TRUE(at::equal(FusedPixelShuffle(planar, 2), at::pixel_shuffle(planar, 2)));
}

// Kept memory hands a network's buffers from one scope to the next.
TEST(FusedConvolution, KeptMemoryOutlivesItsScopes) {
  FusedOutputMemory memory;
  void* first = nullptr;
  {
    const FusedOutputScope scope(memory);
    first = FusedOutput({1, 16, 20, 20}, at::kFloat).data_ptr();
  }
  {
    const FusedOutputScope scope(memory);
    EXPECT_EQ(FusedOutput({1, 16, 20, 20}, at::kFloat).data_ptr(), first);
  }
  at::Tensor kept;
  {
    const FusedOutputScope scope;  // an ordinary scope's memory goes with it
    kept = FusedOutput({1, 16, 20, 20}, at::kFloat);
  }
  kept.fill_(1.0f);  // still valid after its scope
  EXPECT_EQ(kept.sum().item<float>(), 16.0f * 400.0f);
}

TEST(FusedConvolution, ScopeRecyclesOutputsAndOutputsOutliveIt) {
  const at::Tensor input = at::randn({1, 16, 32, 32});
  const at::Tensor weight = at::randn({16, 16, 3, 3});
  const std::vector<int64_t> padding{1, 1};
  const at::Tensor expected = Expected(input, weight, c10::nullopt, padding, false);
  at::Tensor kept;
  {
    FusedOutputScope recycle;
    const void* first = nullptr;
    {
      const at::Tensor a = FusedConv2d(input, weight, c10::nullopt, padding, false);
      first = a.data_ptr();
    }
    kept = FusedConv2d(input, weight, c10::nullopt, padding, false);
    EXPECT_EQ(kept.data_ptr(), first);  // the freed output's memory, reused
    {
      FusedOutputScope inner;  // scopes nest
      ExpectClose(FusedConv2d(input, weight, c10::nullopt, padding, false), expected);
    }
    ExpectClose(FusedConv2d(input, weight, c10::nullopt, padding, false), expected);
  }
  // Still valid after the scope ended; freed normally when released.
  ExpectClose(kept, expected);
  kept = at::Tensor();
  ExpectClose(FusedConv2d(input, weight, c10::nullopt, padding, false), expected);
}

TEST(FusedConvolution, RunsFromSeveralThreadsAtOnce) {
  torch::manual_seed(11);
  const at::Tensor wide = at::randn({16, 16, 3, 3});
  const at::Tensor narrow = at::randn({1, 16, 3, 3});
  const std::vector<int64_t> padding{1, 1};
  std::vector<at::Tensor> inputs, expected;
  for (int i = 0; i < 4; ++i) {
    inputs.push_back(at::randn({1, 16, 20 + 4 * i, 24}));
    expected.push_back(Expected(Expected(inputs.back(), wide, c10::nullopt, padding, true), narrow,
                                c10::nullopt, padding, false));
  }
  std::vector<double> errors(inputs.size(), 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < inputs.size(); ++i) {
    threads.emplace_back([&, i] {
      FusedOutputScope recycle;
      for (int round = 0; round < 5; ++round) {
        const at::Tensor h = FusedConv2d(inputs[i], wide, c10::nullopt, padding, true);
        const at::Tensor out = FusedConv2d(h, narrow, c10::nullopt, padding, false);
        errors[i] = std::max(errors[i], (out - expected[i]).abs().max().item<double>());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (double error : errors) EXPECT_LT(error, 1e-3);
}

// In bf16 each wide convolution rounds its input and weights to bfloat16 (8 significant
// bits) and sums in float: within about 1% of the largest output of float's. The output
// is float or bfloat16 as asked, the input may be either, and narrow layers stay float.
TEST(FusedConvolution, Bf16IsCloseToFloatInEveryPrecision) {
  torch::manual_seed(21);
  struct Case {
    int64_t inputs, outputs, padding, dilation;
  };
  for (const Case c : {Case{16, 16, 1, 1}, Case{20, 28, 1, 1}, Case{16, 16, 2, 2},
                       Case{24, 9, 1, 1}, Case{16, 1, 1, 1}}) {
    SCOPED_TRACE(std::to_string(c.inputs) + "->" + std::to_string(c.outputs) + " d" +
                 std::to_string(c.dilation));
    const at::Tensor input = at::rand({2, c.inputs, 23, 30});
    const at::Tensor weight = at::randn({c.outputs, c.inputs, 3, 3}) * 0.1;
    const at::Tensor bias = at::randn({c.outputs});
    const std::vector<int64_t> padding{c.padding, c.padding};
    const std::vector<int64_t> dilation{c.dilation, c.dilation};
    const at::Tensor expected = Expected(input, weight, bias, padding, true, dilation);
    const double scale = expected.abs().max().item<double>();
    const bool narrow = c.outputs < 8;
    for (const FusedPrecision precision :
         {FusedPrecision::kBFloat16FloatOutput, FusedPrecision::kBFloat16}) {
      for (const bool lowInput : {false, true}) {
        const at::Tensor given = lowInput ? input.to(at::kBFloat16) : input;
        const at::Tensor actual =
            FusedConv2d(given, weight, bias, padding, true, dilation, precision);
        EXPECT_EQ(actual.scalar_type(),
                  precision == FusedPrecision::kBFloat16 ? at::kBFloat16 : at::kFloat);
        EXPECT_TRUE(actual.is_contiguous(at::MemoryFormat::ChannelsLast));
        const double error = (actual.to(at::kFloat) - expected).abs().max().item<double>();
        EXPECT_LT(error, 0.02 * scale);
        // A float input to a narrow layer is computed in float: float's rounding alone.
        if (narrow && !lowInput && precision == FusedPrecision::kBFloat16FloatOutput) {
          EXPECT_LT(error, 1e-5 * scale);
        } else if (!narrow) {
          EXPECT_GT(error, 1e-6 * scale);  // bfloat16 did round
        }
      }
    }
  }
}

// Fused in bf16, the graph keeps float where precision matters: the first layer (reading
// the image), the narrow output layer, and every layer read by an operation that is not a
// bf16 convolution; the layers in between pass bfloat16 to each other.
TEST(FusedConvolution, Bf16GraphKeepsTheImageAndOutputLayersInFloat) {
  torch::jit::Module module = testing::FiveLayerDenoiser(22);
  const at::Tensor input = at::rand({1, 1, 40, 36});
  const at::Tensor expected = module.forward({input}).toTensor();
  int replaced = 0;
  torch::jit::Module fused = FuseConvolutions(module, &replaced, FusedPrecision::kBFloat16);
  EXPECT_EQ(replaced, 5);
  std::vector<int64_t> precisions;
  for (torch::jit::Node* node : fused.get_method("forward").graph()->nodes()) {
    if (std::string(node->kind().toQualString()) != "enhance::conv2d_fused") continue;
    precisions.push_back(torch::jit::toIValue(node->input(6))->toInt());
  }
  // w0 float (one input channel); w1 bf16 out (read by w2); w2 bf16 compute, float out
  // (read by w3 and by the addition); w3 float out (read by the addition); w4 narrow.
  EXPECT_EQ(precisions, (std::vector<int64_t>{0, 2, 1, 1, 0}));
  const at::Tensor actual = fused.forward({input}).toTensor();
  EXPECT_EQ(actual.scalar_type(), at::kFloat);
  const double error = (actual.contiguous() - expected).abs().max().item<double>();
  EXPECT_GT(error, 0.0);
  EXPECT_LT(error, 0.02 * expected.abs().max().item<double>());
}

}  // namespace
}  // namespace enhance
