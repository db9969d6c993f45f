// SPDX-License-Identifier: GPL-3.0-or-later
//
// A coded concept (DICOM PS3.3 Code Sequence Macro). A value type.
#pragma once

#include <string>

namespace enhance {

struct CodedConcept {
  std::string value;
  std::string scheme;
  std::string meaning;
};

}  // namespace enhance
