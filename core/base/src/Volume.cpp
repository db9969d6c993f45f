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

}  // namespace enhance
