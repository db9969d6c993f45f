// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/Model.h"

#include "enhance/Error.h"

namespace enhance {

void RunContext::ThrowIfCancelled() const {
  if (cancelled && cancelled()) throw Error(ErrorKind::kCancelled, "cancelled on request");
}

}  // namespace enhance
