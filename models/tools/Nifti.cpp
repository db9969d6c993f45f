// SPDX-License-Identifier: GPL-3.0-or-later
#include "Nifti.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace enhance::models {
namespace {

constexpr size_t kHeaderSize = 348;

std::vector<uint8_t> ReadGzipOrPlain(const std::filesystem::path& path) {
  // gzread passes files that are not compressed through unchanged.
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  if (!file) throw std::runtime_error(path.string() + ": cannot open");
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> chunk(1 << 20);
  for (;;) {
    const int count = gzread(file.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
    if (count < 0) throw std::runtime_error(path.string() + ": corrupt compressed data");
    if (count == 0) break;
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + count);
  }
  return bytes;
}

class Reader {
 public:
  Reader(const std::vector<uint8_t>& bytes, bool swap) : bytes_(bytes), swap_(swap) {}

  template <typename T>
  T At(size_t offset) const {
    if (offset + sizeof(T) > bytes_.size()) throw std::out_of_range("truncated");
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, bytes_.data() + offset, sizeof(T));
    if (swap_) std::reverse(raw, raw + sizeof(T));
    T value;
    std::memcpy(&value, raw, sizeof(T));
    return value;
  }

 private:
  const std::vector<uint8_t>& bytes_;
  bool swap_;
};

template <typename T>
void Convert(const Reader& reader, size_t offset, size_t count, float slope, float inter,
             std::vector<float>& out) {
  out.resize(count);
  for (size_t i = 0; i < count; ++i) {
    out[i] = static_cast<float>(reader.At<T>(offset + i * sizeof(T))) * slope + inter;
  }
}

}  // namespace

Volume ReadNifti(const std::filesystem::path& path) {
  const std::string where = path.string();
  const std::vector<uint8_t> bytes = ReadGzipOrPlain(path);
  if (bytes.size() < kHeaderSize) throw std::runtime_error(where + ": too short for NIfTI-1");
  int32_t headerSize;
  std::memcpy(&headerSize, bytes.data(), 4);
  const bool swap = headerSize != 348;
  const Reader r(bytes, swap);
  if (r.At<int32_t>(0) != 348) throw std::runtime_error(where + ": not a NIfTI-1 header");
  if (std::memcmp(bytes.data() + 344, "n+1", 4) != 0) {
    throw std::runtime_error(where + ": not a single-file NIfTI-1 (magic 'n+1')");
  }
  const int16_t dims = r.At<int16_t>(40);
  if (dims < 2 || dims > 7) throw std::runtime_error(where + ": unsupported dim[0]");
  int64_t size[3] = {1, 1, 1};
  for (int d = 0; d < std::min<int>(dims, 3); ++d) size[d] = r.At<int16_t>(42 + 2 * d);
  if (size[0] < 1 || size[1] < 1 || size[2] < 1) throw std::runtime_error(where + ": bad size");
  const int16_t datatype = r.At<int16_t>(70);
  const auto offset = static_cast<size_t>(r.At<float>(108));
  float slope = r.At<float>(112);
  const float inter = slope != 0.0f ? r.At<float>(116) : 0.0f;
  if (slope == 0.0f) slope = 1.0f;  // 0 means "no scaling" in NIfTI-1

  Volume v;
  v.columns = size[0];
  v.rows = size[1];
  v.slices = size[2];
  const auto count = static_cast<size_t>(size[0] * size[1] * size[2]);
  try {
    switch (datatype) {
      case 2:
        Convert<uint8_t>(r, offset, count, slope, inter, v.voxels);
        break;
      case 4:
        Convert<int16_t>(r, offset, count, slope, inter, v.voxels);
        break;
      case 8:
        Convert<int32_t>(r, offset, count, slope, inter, v.voxels);
        break;
      case 16:
        Convert<float>(r, offset, count, slope, inter, v.voxels);
        break;
      case 64:
        Convert<double>(r, offset, count, slope, inter, v.voxels);
        break;
      case 256:
        Convert<int8_t>(r, offset, count, slope, inter, v.voxels);
        break;
      case 512:
        Convert<uint16_t>(r, offset, count, slope, inter, v.voxels);
        break;
      case 768:
        Convert<uint32_t>(r, offset, count, slope, inter, v.voxels);
        break;
      default:
        throw std::runtime_error(where + ": unsupported NIfTI datatype " +
                                 std::to_string(datatype));
    }
  } catch (const std::out_of_range&) {
    throw std::runtime_error(where + ": the voxel data is truncated");
  }
  Geometry& g = v.geometry;
  g.columnSpacing = std::abs(r.At<float>(80));
  g.rowSpacing = std::abs(r.At<float>(84));
  g.sliceSpacing = std::abs(r.At<float>(88));
  for (double* spacing : {&g.columnSpacing, &g.rowSpacing, &g.sliceSpacing}) {
    if (!(*spacing > 0)) *spacing = 1.0;
  }
  g.sliceThickness = g.sliceSpacing;
  for (int64_t k = 0; k < v.slices; ++k) {
    g.slicePositions.push_back({0.0, 0.0, static_cast<double>(k) * g.sliceSpacing});
  }
  return v;
}

}  // namespace enhance::models
