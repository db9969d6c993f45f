// SPDX-License-Identifier: GPL-3.0-or-later
//
// Volume to derived series: writes a new DICOM series in the same study as the source,
// labelled as derived and produced by an algorithm (DERIVED\SECONDARY, derivation
// description and code, source image references, contributing equipment).
// Stateless function; thread-safe. The source datasets are only read.
#pragma once

#include <string>
#include <vector>

#include "enhance/CodedConcept.h"
#include "enhance/DicomSeriesReader.h"
#include "enhance/Volume.h"

namespace enhance {

struct DerivationInfo {
  std::string task;       // "denoise", "superres", "mr2ct"
  std::string modelName;  // manufacturer model name in contributing equipment
  std::string modelVersion;
  std::string modelUid;         // DeviceUID: changes whenever the model's weights change
  std::string parameters;       // key parameters, human readable, for DerivationDescription
  CodedConcept derivationCode;  // what kind of processing (CID 7203 or local scheme)
  std::string softwareVersion;  // this product's version
  std::string seriesDescriptionSuffix = " [AI enhanced]";
  int seriesNumberOffset = 1000;
  std::string uidRoot;  // empty: 2.25 UUID-derived UIDs
  // When set, the series gets this UID and instance k a UID derived from it and k, so that
  // writing the same series twice gives the same UIDs. Empty: random UIDs.
  std::string seriesInstanceUid;
};

// The name written as Manufacturer of the contributing equipment. The plugin uses it
// to recognise its own output and never process it again.
extern const char* const kEquipmentManufacturer;

// One DICOM Part 10 file per output slice. Throws Error(kBadInput) when the output
// volume does not correspond to the source (slice count or geometry).
std::vector<std::string> WriteDerivedSeries(const DecodedSeries& source, const Volume& output,
                                            const DerivationInfo& info);

}  // namespace enhance
