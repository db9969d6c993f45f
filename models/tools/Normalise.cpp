// SPDX-License-Identifier: GPL-3.0-or-later
#include "Normalise.h"

namespace enhance::models {

at::Tensor ToNetwork(const Volume& volume, const Window& window) {
  return at::from_blob(const_cast<float*>(volume.voxels.data()),
                       {volume.slices, 1, volume.rows, volume.columns}, at::kFloat)
      .sub(window.low)
      .div_(window.high - window.low);
}

}  // namespace enhance::models
