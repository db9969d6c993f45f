// SPDX-License-Identifier: GPL-3.0-or-later
//
// Registration of DCMTK's decoders, kept apart from the LibTorch settings in Runtime.cpp
// so that the DICOM reading path builds and links without LibTorch.
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>

#include <mutex>

#include "enhance/dicom/DicomCodecs.h"

namespace enhance {

void RegisterDicomCodecs() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Each registerCodecs() is a no-op when the host process registered them already.
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

}  // namespace enhance
