// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/Model.h"

#include <regex>

#include "enhance/base/Error.h"
#include "enhance/inference/TorchModel.h"

namespace enhance {

void RunContext::ThrowIfCancelled() const {
  if (cancelled && cancelled()) throw Error(ErrorKind::kCancelled, "cancelled on request");
}

void CheckDeviceName(const std::string& requested) {
  static const std::regex kDevice("auto|cpu|cuda(:[0-9]+)?");
  if (!std::regex_match(requested, kDevice)) {
    throw Error(ErrorKind::kBadInput,
                "device '" + Printable(requested) + "' must be auto, cpu, cuda or cuda:N");
  }
}

}  // namespace enhance
