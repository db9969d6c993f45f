// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/Volume.h"

#include "enhance/base/Error.h"

namespace enhance {

void Volume::Resize(int64_t numSlices, int64_t numRows, int64_t numColumns) {
  if (numSlices < 0 || numRows < 0 || numColumns < 0) {
    throw Error(ErrorKind::kInternal, "negative volume size");
  }
  slices = numSlices;
  rows = numRows;
  columns = numColumns;
  voxels.assign(static_cast<size_t>(numSlices * numRows * numColumns), 0.0f);
}

void BlockMeans(const float* slice, int64_t rows, int64_t columns, int64_t factor, float* means) {
  if (factor < 1) throw Error(ErrorKind::kInternal, "block means of a factor below 1");
  const int64_t outRows = rows / factor;
  const int64_t outColumns = columns / factor;
  const float scale = 1.0f / static_cast<float>(factor * factor);
  for (int64_t r = 0; r < outRows; ++r) {
    float* out = means + r * outColumns;
    for (int64_t c = 0; c < outColumns; ++c) {
      const float* block = slice + r * factor * columns + c * factor;
      float sum = 0.0f;
      for (int64_t i = 0; i < factor; ++i) {
        for (int64_t j = 0; j < factor; ++j) sum += block[i * columns + j];
      }
      out[c] = scale * sum;
    }
  }
}

}  // namespace enhance
