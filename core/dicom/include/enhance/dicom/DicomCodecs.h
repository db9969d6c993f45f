// SPDX-License-Identifier: GPL-3.0-or-later
//
// Process-wide DCMTK settings, kept apart from LibTorch's (enhance/inference/Runtime.h) so
// that the DICOM layer builds and links without LibTorch.
#pragma once

namespace enhance {

// Registers DCMTK's decoders for compressed transfer syntaxes (JPEG, JPEG-LS, RLE).
// Idempotent and safe to call from any thread; never unregisters them, because a host
// process (Orthanc) may share the same DCMTK libraries.
void RegisterDicomCodecs();

}  // namespace enhance
