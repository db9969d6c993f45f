// SPDX-License-Identifier: GPL-3.0-or-later
//
// DICOM UID generation. Thread-safe.
#pragma once

#include <string>

namespace enhance {

// A new globally unique UID. With an empty root it is a UUID-derived UID under
// "2.25" (ISO/IEC 9834-8, DICOM PS3.5 B.2). With a root, the root followed by random
// decimal digits, 64 characters at most. Throws Error(kBadInput) if the root is not a
// valid UID prefix or leaves too little room for uniqueness.
std::string GenerateUid(const std::string& root = "");

// A UID that depends only on `name`: "2.25." followed by the decimal value of the
// name-based (SHA-1, version 5) UUID of the name. Used for the DeviceUID of built-in
// models, whose identity is their name, version and parameters.
std::string UidFromName(const std::string& name);

// Like UidFromName(), but under `root` when it is not empty: the root followed by decimal
// digits of the name's SHA-1 hash, 64 characters at most. The same name and root always
// give the same UID, which makes re-running a job idempotent.
std::string UidFromName(const std::string& name, const std::string& root);

// True when the text is a syntactically valid DICOM UID (PS3.5 9.1).
bool IsValidUid(const std::string& uid);

}  // namespace enhance
