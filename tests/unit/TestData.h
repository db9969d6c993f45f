// SPDX-License-Identifier: GPL-3.0-or-later
//
// Test inputs built in memory: phantom series, files from Debian's pydicom test set,
// and an InstanceSource over buffers.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "enhance/dicom/DicomSeriesReader.h"
#include "enhance/dicom/InstanceSource.h"
#include "enhance/samples/Phantom.h"

namespace enhance::testing {

// A small noisy CT phantom encoded as a DICOM series, instance IDs "slice-1", ...
std::vector<EncodedInstance> PhantomSeries(int64_t rows, int64_t columns, int64_t slices,
                                           double noiseHu = 20.0, uint64_t seed = 7);

std::string ReadFile(const std::string& path);
// A file of pydicom's test set (package python3-pydicom), by name.
std::string PydicomFile(const std::string& name);

class MemoryInstanceSource : public InstanceSource {
 public:
  explicit MemoryInstanceSource(std::vector<EncodedInstance> instances);
  std::string Describe() const override { return "test series"; }
  std::vector<std::string> ListInstances() override;
  std::string FetchInstance(const std::string& id) override;
  const FrameDecoder* Decoder() const override { return decoder_; }
  void SetDecoder(const FrameDecoder* decoder) { decoder_ = decoder; }

 private:
  std::map<std::string, std::string> files_;
  const FrameDecoder* decoder_ = nullptr;
};

}  // namespace enhance::testing
