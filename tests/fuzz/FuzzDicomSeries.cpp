// SPDX-License-Identifier: GPL-3.0-or-later
//
// libFuzzer target: hostile bytes as the instances of one series, through the path the
// plugin takes for every stable series: ReadSeries() (DCMTK parsing, pixel decoding with
// DCMTK's JPEG, JPEG-LS and RLE codecs, Modality LUT, ordering, consistency checks) to a
// Volume, then WriteDerivedSeries() with that volume as the model's output, which copies
// the hostile attributes into derived instances, and the derived files through
// ReadSeries() again: what the plugin stores must be readable.
//
// The input is split on kSeparator into at most kMaxInstances DICOM files. Instances
// whose transfer syntax DCMTK cannot decode go to a stand-in for the plugin's
// FrameDecoder, which answers with a frame whose size is taken from the input, so that
// the checks on a decoder's answer are exercised too.
#include <dcmtk/oflog/oflog.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "FuzzCheck.h"
#include "enhance/dicom/DerivedSeriesWriter.h"
#include "enhance/dicom/DicomCodecs.h"
#include "enhance/dicom/DicomSeriesReader.h"
#include "enhance/dicom/FrameDecoder.h"

namespace {

constexpr char kSeparator[] = "<<ENHANCE-NEXT-INSTANCE>>";
constexpr size_t kMaxInstances = 4;
const std::string kSeries = "fuzz series";

class StandInDecoder final : public enhance::FrameDecoder {
 public:
  enhance::DecodedFrame DecodeFirstFrame(const std::string& bytes,
                                         const std::string& where) const override {
    if (bytes.size() < 4 || (bytes[bytes.size() - 1] & 1) != 0) {
      throw enhance::Error(enhance::ErrorKind::kUnsupported,
                           where + ": the stand-in decoder refuses this frame");
    }
    enhance::DecodedFrame frame;
    frame.rows = static_cast<unsigned char>(bytes[bytes.size() - 2]) % 64;
    frame.columns = static_cast<unsigned char>(bytes[bytes.size() - 3]) % 64;
    frame.bitsPerSample = 16;
    frame.values.resize(static_cast<size_t>(frame.rows * frame.columns));
    for (size_t i = 0; i < frame.values.size(); ++i) {
      frame.values[i] = static_cast<unsigned char>(bytes[i % bytes.size()]) * 257 - 32768;
    }
    return frame;
  }
};

std::vector<enhance::EncodedInstance> Split(const std::string& input) {
  std::vector<enhance::EncodedInstance> instances;
  const std::string separator(kSeparator);
  size_t begin = 0;
  while (instances.size() + 1 < kMaxInstances) {
    const size_t end = input.find(separator, begin);
    if (end == std::string::npos) break;
    instances.push_back({"i" + std::to_string(instances.size()), input.substr(begin, end - begin)});
    begin = end + separator.size();
  }
  instances.push_back({"i" + std::to_string(instances.size()), input.substr(begin)});
  return instances;
}

bool Finite(const enhance::Vec3& v) {
  return std::isfinite(v[0]) && std::isfinite(v[1]) && std::isfinite(v[2]);
}

void CheckSeries(const enhance::DecodedSeries& series, size_t instanceCount) {
  using enhance::fuzz::Require;
  const enhance::Volume& v = series.volume;
  Require(v.slices == static_cast<int64_t>(instanceCount), "one slice per instance");
  Require(v.rows > 0 && v.columns > 0, "a non-empty image");
  Require(v.voxels.size() == static_cast<size_t>(v.slices * v.rows * v.columns),
          "voxel count matches the size");
  Require(series.instances.size() == instanceCount, "one source instance per slice");
  Require(v.geometry.slicePositions.size() == instanceCount, "one position per slice");
  const enhance::Geometry& g = v.geometry;
  Require(std::isfinite(g.rowSpacing) && g.rowSpacing > 0 && std::isfinite(g.columnSpacing) &&
              g.columnSpacing > 0,
          "positive finite pixel spacing");
  Require(std::isfinite(g.sliceSpacing) && g.sliceSpacing > 0, "positive finite slice spacing");
  Require(std::isfinite(g.sliceThickness), "finite slice thickness");
  Require(Finite(g.rowDirection) && Finite(g.columnDirection) && Finite(g.sliceDirection),
          "finite orientation");
  for (const auto& p : g.slicePositions) Require(Finite(p), "finite slice positions");
  for (float value : v.voxels) Require(std::isfinite(value), "finite voxel values");
  for (const auto& instance : series.instances) Require(instance.dataset != nullptr, "datasets");
  for (const auto& warning : series.warnings) {
    Require(warning.compare(0, kSeries.size(), kSeries) == 0, "warnings name the series");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // DCMTK logs every oddity of a hostile file; the outcome is what is checked here.
  OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
  enhance::RegisterDicomCodecs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<enhance::EncodedInstance> instances = Split(input);
  const size_t count = instances.size();
  static const StandInDecoder decoder;
  enhance::fuzz::ExpectCleanOutcome(kSeries, [&] {
    const enhance::DecodedSeries series =
        enhance::ReadSeries(std::move(instances), kSeries, &decoder);
    CheckSeries(series, count);

    // The model's output is the input itself; odd-sized inputs are written as a synthetic
    // CT (mr2ct), the others as a denoised series of the source's SOP class.
    enhance::DerivationInfo info;
    info.task = size % 2 == 1 ? "mr2ct" : "denoise";
    info.outputKind = enhance::OutputKindForTask(info.task);
    info.modelName = "fuzz-identity";
    info.modelVersion = "1";
    info.modelUid = "1.2.3.4";
    info.parameters = "identity";
    info.derivationCode = {"ENH-DENOISE", "99ENHANCE", "Noise reduction"};
    info.softwareVersion = "0";
    info.seriesInstanceUid = "1.2.3.4.5";
    enhance::Volume output = series.volume;
    if (info.outputKind == enhance::OutputKind::kSyntheticCt) output.units = "HU";
    std::vector<std::string> files;
    try {
      files = enhance::WriteDerivedSeries(series, output, info);
    } catch (const enhance::Error& e) {
      // The writer names the series, and the output slice and its source instance.
      if (std::string(e.what()).rfind(kSeries, 0) != 0) {
        enhance::fuzz::Bug(std::string("a writer error without a clear message: ") + e.what());
      }
      return;
    }
    enhance::fuzz::Require(files.size() == count, "one derived instance per slice");

    // What the plugin stores must read back as the same volume.
    std::vector<enhance::EncodedInstance> derived;
    for (auto& file : files) derived.push_back({"d" + std::to_string(derived.size()), file});
    try {
      const enhance::DecodedSeries again = enhance::ReadSeries(std::move(derived), "derived");
      enhance::fuzz::Require(again.volume.slices == series.volume.slices &&
                                 again.volume.rows == series.volume.rows &&
                                 again.volume.columns == series.volume.columns,
                             "the derived series reads back with the same size");
    } catch (const enhance::Error& e) {
      enhance::fuzz::Bug(std::string("the derived series cannot be read back: ") + e.what());
    }
  });
  return 0;
}
