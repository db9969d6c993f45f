// SPDX-License-Identifier: GPL-3.0-or-later
//
// Where the DICOM instances of one series come from. core/ never talks to Orthanc
// directly: the plugin implements this on top of Orthanc's REST API, tests implement
// it on files or memory. Implementations need not be thread-safe: one job uses one
// source from one thread. A source may also offer a FrameDecoder for transfer syntaxes
// that core/ cannot decode itself.
#pragma once

#include <string>
#include <vector>

namespace enhance {

class FrameDecoder;

class InstanceSource {
 public:
  virtual ~InstanceSource() = default;

  // Human-readable name of the series for messages, e.g. "series 1a2b... (CT, 'Chest')".
  virtual std::string Describe() const = 0;

  // Identifiers of the instances of the series, in any order.
  virtual std::vector<std::string> ListInstances() = 0;

  // The DICOM file (Part 10, with or without file meta) of one instance.
  // Throws enhance::Error naming the instance when it cannot be read.
  virtual std::string FetchInstance(const std::string& instanceId) = 0;

  // A decoder for pixel data that DCMTK cannot decode (e.g. JPEG 2000), or nullptr.
  // It must stay valid as long as the source does.
  virtual const FrameDecoder* Decoder() const { return nullptr; }
};

}  // namespace enhance
