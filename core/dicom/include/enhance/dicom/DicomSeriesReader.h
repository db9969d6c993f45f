// SPDX-License-Identifier: GPL-3.0-or-later
//
// Series to volume: parses the DICOM instances of one series, decodes their pixel
// data to physical values (Modality LUT applied) and orders the slices along the
// slice normal. Stateless functions; thread-safe.
//
// Errors name the series and the instance and say what is wrong (Error kBadInput or
// kUnsupported). Nothing is half-decoded: either the whole series is returned or an
// exception is thrown. Irregularities that still allow a faithful volume (gaps between
// slices, slices with different pixel formats) are returned as warnings.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "enhance/base/Volume.h"

class DcmDataset;  // DCMTK

namespace enhance {

class FrameDecoder;

struct EncodedInstance {
  std::string id;     // the caller's identifier (Orthanc instance ID, file name, ...)
  std::string bytes;  // DICOM Part 10 file, or a raw dataset in implicit VR little endian
};

// One source slice after decoding. The dataset keeps every attribute except the pixel
// data, so that derived objects can inherit the patient, study and equipment modules.
struct SourceInstance {
  std::string id;
  std::string sopClassUid;
  std::string sopInstanceUid;
  std::shared_ptr<const DcmDataset> dataset;
};

struct DecodedSeries {
  std::string description;                // for messages
  std::string modality;                   // (0008,0060)
  std::string seriesInstanceUid;          // (0020,000E) of the first instance
  Volume volume;                          // slices ordered along geometry.sliceDirection
  std::vector<SourceInstance> instances;  // instances[k] is slice k of the volume
  std::vector<std::string> warnings;      // each names the series and what is irregular
  // The range of the values as decoded, before a caller wrote over any slice
  // (SeriesReader::Added).
  float lowest = 0.0f;
  float highest = 0.0f;
};

// Decodes a series one instance at a time, so that only one encoded file is held at
// once: each instance is parsed and its pixels are decoded into the volume as it is
// added, and its bytes are released. Finish() checks that the instances form one volume
// and orders the slices in place. Peak memory is the decoded volume plus one file and the
// headers of the instances.
//
// Not thread-safe: one reader per series, used from one thread.
class SeriesReader {
 public:
  // `expectedInstances` bounds the volume (and reserves it) before any pixel is decoded;
  // adding more instances than that is an error.
  SeriesReader(std::string seriesDescription, size_t expectedInstances,
               const FrameDecoder* decoder = nullptr);
  ~SeriesReader();
  SeriesReader(const SeriesReader&) = delete;
  SeriesReader& operator=(const SeriesReader&) = delete;

  // Parses and decodes one instance; throws Error naming the instance when it cannot be
  // decoded or does not fit the instances added before (image size).
  void Add(EncodedInstance instance);
  size_t Count() const;

  // The instance added last: its identifier (EncodedInstance::id), its SOP Instance UID,
  // and its decoded values (rows x columns), which become a slice of the volume Finish()
  // returns. The caller may write over the values until the next Add or Finish (e.g. with
  // an output slice it already has).
  struct Added {
    std::string id;
    std::string sopInstanceUid;
    float* values = nullptr;
    int64_t rows = 0;
    int64_t columns = 0;
  };
  Added LastAdded();

  // The ordered series; the reader is empty afterwards.
  DecodedSeries Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Decodes and orders a whole series (a SeriesReader fed with every instance). The input
// buffers are consumed (moved from) to keep peak memory low. seriesDescription is used in
// error messages. `decoder`, when not null, decodes the instances whose transfer syntax
// DCMTK cannot decode; without it they are refused as unsupported, naming the transfer
// syntax.
DecodedSeries ReadSeries(std::vector<EncodedInstance> instances,
                         const std::string& seriesDescription,
                         const FrameDecoder* decoder = nullptr);

}  // namespace enhance
