// SPDX-License-Identifier: GPL-3.0-or-later
//
// Small TorchScript networks built in C++ for the fused-convolution tests.
#pragma once
#include <torch/script.h>

namespace enhance::testing {

// A residual denoiser like the shipped ones, in eval mode: an image layer of 1 input
// channel, three 16-feature layers (the last also read by an addition), and a narrow
// output layer added to the image.
inline torch::jit::Module FiveLayerDenoiser(uint64_t seed) {
  torch::manual_seed(seed);
  torch::jit::Module module("Net");
  module.register_parameter("w0", at::randn({16, 1, 3, 3}) * 0.5, false);
  module.register_parameter("w1", at::randn({16, 16, 3, 3}) * 0.12, false);
  module.register_parameter("w2", at::randn({16, 16, 3, 3}) * 0.12, false);
  module.register_parameter("w3", at::randn({16, 16, 3, 3}) * 0.12, false);
  module.register_parameter("w4", at::randn({1, 16, 3, 3}) * 0.1, false);
  module.define(R"(
    def forward(self, x):
        h = torch.relu(torch.conv2d(x, self.w0, None, 1, 1))
        h = torch.relu(torch.conv2d(h, self.w1, None, 1, 1))
        h = torch.relu(torch.conv2d(h, self.w2, None, 1, 1))
        h = torch.relu(torch.conv2d(h, self.w3, None, 1, 1)) + h * 0.5
        return torch.conv2d(h, self.w4, None, 1, 1) + x
  )");
  module.eval();
  return module;
}

}  // namespace enhance::testing
