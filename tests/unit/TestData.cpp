// SPDX-License-Identifier: GPL-3.0-or-later
#include "TestData.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "enhance/dicom/SyntheticSeries.h"

namespace enhance::testing {

std::vector<EncodedInstance> PhantomSeries(int64_t rows, int64_t columns, int64_t slices,
                                           double noiseHu, uint64_t seed) {
  PhantomOptions options;
  options.rows = rows;
  options.columns = columns;
  options.slices = slices;
  options.pixelSpacing = 400.0 / static_cast<double>(columns);
  options.noiseSigmaHu = noiseHu;
  options.seed = seed;
  const auto files = WriteSyntheticCtSeries(MakeCtPhantom(options), {});
  std::vector<EncodedInstance> result;
  for (size_t k = 0; k < files.size(); ++k) {
    result.push_back({"slice-" + std::to_string(k + 1), files[k]});
  }
  return result;
}

std::string ReadFile(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw std::runtime_error("cannot open test file " + path);
  std::ostringstream content;
  content << stream.rdbuf();
  return content.str();
}

std::string PydicomFile(const std::string& name) {
  return ReadFile(std::string(ENHANCE_PYDICOM_TEST_FILES) + "/" + name);
}

MemoryInstanceSource::MemoryInstanceSource(std::vector<EncodedInstance> instances) {
  for (auto& instance : instances) files_[instance.id] = std::move(instance.bytes);
}

std::vector<std::string> MemoryInstanceSource::ListInstances() {
  std::vector<std::string> ids;
  // Reverse order on purpose: the reader must not rely on the order it is given.
  for (auto it = files_.rbegin(); it != files_.rend(); ++it) ids.push_back(it->first);
  return ids;
}

std::string MemoryInstanceSource::FetchInstance(const std::string& id) { return files_.at(id); }

}  // namespace enhance::testing
