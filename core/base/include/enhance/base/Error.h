// SPDX-License-Identifier: GPL-3.0-or-later
//
// The one exception type that core/ throws for conditions a user can act on.
// Every message names the thing that was wrong (series, instance, key, file) and,
// where possible, what to do about it. The Kind lets the plugin map an error to an
// HTTP status or an Orthanc error code without parsing the text.
#pragma once

#include <stdexcept>
#include <string>

namespace enhance {

enum class ErrorKind {
  kBadInput,     // the DICOM data, request or configuration is wrong: fix the input
  kNotFound,     // a named resource (series, model, file) does not exist
  kUnsupported,  // valid input that this version cannot handle
  kCancelled,    // the caller asked to stop
  kInternal,     // a bug or an environment failure: report it
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

const char* ToString(ErrorKind kind) noexcept;

// Text from the input (a key, a value, a file name) as it may appear inside an error
// message: control characters and bytes that are not printable ASCII as \xNN, and at
// most `maxLength` characters followed by "...". Keeps messages whole (an embedded NUL
// would cut what() short) and log lines single.
std::string Printable(const std::string& text, size_t maxLength = 128);

}  // namespace enhance
