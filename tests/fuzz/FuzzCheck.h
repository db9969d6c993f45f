// SPDX-License-Identifier: GPL-3.0-or-later
//
// What the fuzz targets accept as a rejection and what they report as a bug. A rejection
// is an enhance::Error whose message starts with the name of what was read (the series,
// the manifest file, the configuration key); anything else that escapes, an Error with
// another message, or a broken invariant of a successful result aborts, so that libFuzzer
// keeps the input as a crash. Messages may hold line breaks (a JSON parser's report) but
// no other control character.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "enhance/base/Error.h"

namespace enhance::fuzz {

[[noreturn]] inline void Bug(const std::string& what) {
  std::fprintf(stderr, "\n*** fuzz target found a bug: %s\n", what.c_str());
  std::abort();
}

// `what` is a literal: this runs once per voxel.
inline void Require(bool condition, const char* what) {
  if (!condition) Bug(std::string("broken invariant: ") + what);
}

// Runs `body`; an Error whose message starts with `prefix` (and says more than that) is
// the expected rejection of a bad input, anything else thrown is a bug.
template <typename Body>
void ExpectCleanOutcome(const std::string& prefix, Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.compare(0, prefix.size(), prefix) != 0 || message.size() < prefix.size() + 8) {
      Bug("rejection without a clear message: '" + message + "' (expected to start with '" +
          prefix + "')");
    }
    for (char c : message) {
      // Messages end up in Orthanc's log and in HTTP answers: one line per cause.
      if (static_cast<unsigned char>(c) < 0x20 && c != '\n') {
        Bug("control character in the message: '" + Printable(message, 1000) + "'");
      }
    }
  } catch (const std::exception& e) {
    Bug(std::string("exception other than enhance::Error escaped: ") + e.what());
  } catch (...) {
    Bug("a non-standard exception escaped");
  }
}

}  // namespace enhance::fuzz
