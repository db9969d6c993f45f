// SPDX-License-Identifier: GPL-3.0-or-later
//
// Volume to derived series: writes a new DICOM series in the same study as the source,
// labelled as derived and produced by an algorithm (DERIVED\SECONDARY, derivation
// description and code, source image references, contributing equipment).
//  - Output on the source's grid (denoise) inherits each source instance's attributes.
//  - Output on another grid (super-resolution) gets its size, pixel spacing, positions and
//    slice thickness from output.geometry, and references the source slice(s) each output
//    slice lies on or between.
//  - Synthetic CT (mr2ct) is written as CT Image Storage built from a whitelist of the
//    source's patient, study, frame of reference, equipment and image plane attributes,
//    marked Synthetic Data YES, with values clipped to [-1024, 3071] HU.
// Everything but UIDs and dates is deterministic. Stateless function; thread-safe. The
// source datasets are only read.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "enhance/base/CodedConcept.h"
#include "enhance/base/Volume.h"
#include "enhance/dicom/DicomSeriesReader.h"

namespace enhance {

enum class OutputKind {
  kSameAsSource,  // the source's SOP class and units (denoise, superres)
  kSyntheticCt,   // CT Image Storage in HU computed from another modality (mr2ct)
};

// The output kind a task produces: kSyntheticCt for "mr2ct", kSameAsSource otherwise.
OutputKind OutputKindForTask(const std::string& task);

struct DerivationInfo {
  std::string task;       // "denoise", "superres", "mr2ct"
  std::string modelName;  // manufacturer model name in contributing equipment
  std::string modelVersion;
  std::string modelUid;    // DeviceUID: changes whenever the model's weights change
  std::string parameters;  // key parameters, human readable, for DerivationDescription
  // What a model that learns from each series learned from this one (method, steps, loss),
  // for the DerivationDescription.
  std::string learned;
  CodedConcept derivationCode;  // what kind of processing (CID 7203 or local scheme)
  std::string softwareVersion;  // this product's version
  std::string seriesDescriptionSuffix = " [AI enhanced]";
  int seriesNumberOffset = 1000;
  std::string uidRoot;  // empty: 2.25 UUID-derived UIDs
  // When set, the series gets this UID and instance k a UID derived from it and k, so that
  // writing the same series twice gives the same UIDs. Empty: random UIDs.
  std::string seriesInstanceUid;
  OutputKind outputKind = OutputKind::kSameAsSource;
  // An uncertainty series: the per-voxel standard deviation across this many samples of
  // the model, in the output's units (0: an ordinary derived series). Its
  // DerivationDescription says so, and it gets its own greyscale window: from 0 to
  // `windowWidth`, at least 1.
  int uncertaintySamples = 0;
  std::string uncertaintyOver = "samples";  // what the samples are, in the description
  double windowWidth = 0.0;
  // A warning every reader must see (e.g. "outside the domain the model was trained on
  // (...)"): it opens the DerivationDescription and is the Image Comments.
  std::string warning;
};

// The name written as Manufacturer of the contributing equipment. The plugin uses it
// to recognise its own output and never process it again.
extern const char* const kEquipmentManufacturer;

// One DICOM Part 10 file per output slice. Output of another size than the source must
// carry its geometry (one position per slice, the source's orientation and frame of
// reference); synthetic CT output must be in "HU". Throws Error(kInternal) when the output
// volume breaks these rules (a fault in the model that produced it).
std::vector<std::string> WriteDerivedSeries(const DecodedSeries& source, const Volume& output,
                                            const DerivationInfo& info);

// Writes a derived series one slice at a time, e.g. while later output slices are still
// being computed. The encoding (rescale, signedness) is fixed at construction for the
// whole series, from the range of values it must store. `output` gives the derived
// series' size, geometry and units (its voxels are not read) and must outlive the writer,
// as must `source` and `info`. Throws Error as WriteDerivedSeries does. Write() may be
// called from any one thread at a time.
class DerivedSeriesWriter {
 public:
  DerivedSeriesWriter(const DecodedSeries& source, const Volume& output, const DerivationInfo& info,
                      float minValue, float maxValue);
  ~DerivedSeriesWriter();
  DerivedSeriesWriter(const DerivedSeriesWriter&) = delete;
  DerivedSeriesWriter& operator=(const DerivedSeriesWriter&) = delete;

  size_t Count() const;  // output slices, i.e. files
  // Whether values in [minValue, maxValue] are stored without clipping.
  bool Holds(float minValue, float maxValue) const;
  // The file of output slice k, whose rows x columns values are `values`.
  std::string Write(size_t k, const float* values) const;

 private:
  struct Context;
  std::unique_ptr<Context> c_;
};

// Receives the derived files in instance order: index (from 0), count, file.
using DerivedFileSink = std::function<void(size_t index, size_t count, std::string file)>;

// As above, but hands each file to `sink` as soon as it is encoded, so that only one
// encoded file is held at a time. An exception thrown by the sink stops the writing and
// propagates; the output is checked (and refused) before the first file is encoded.
void WriteDerivedSeries(const DecodedSeries& source, const Volume& output,
                        const DerivationInfo& info, const DerivedFileSink& sink);

}  // namespace enhance
