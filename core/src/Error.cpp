// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/Error.h"

namespace enhance {

const char* ToString(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::kBadInput:
      return "bad input";
    case ErrorKind::kNotFound:
      return "not found";
    case ErrorKind::kUnsupported:
      return "unsupported";
    case ErrorKind::kCancelled:
      return "cancelled";
    case ErrorKind::kInternal:
      return "internal error";
  }
  return "unknown";
}

}  // namespace enhance
