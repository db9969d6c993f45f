// SPDX-License-Identifier: GPL-3.0-or-later
#include "Normalise.h"

#include <algorithm>

namespace enhance::models {

at::Tensor ToNetwork(const Volume& volume, const Window& window) {
  return at::from_blob(const_cast<float*>(volume.voxels.data()),
                       {volume.slices, 1, volume.rows, volume.columns}, at::kFloat)
      .sub(window.low)
      .div_(window.high - window.low);
}

double Percentile(std::vector<float> values, double percent) {
  if (values.empty()) return 0.0;
  const auto index = static_cast<size_t>(percent / 100.0 * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), values.begin() + static_cast<long>(index), values.end());
  return values[index];
}

}  // namespace enhance::models
