// SPDX-License-Identifier: GPL-3.0-or-later
//
// Small typed accessors over DCMTK datasets, shared by the reader and the writer.
// Internal to core/. Stateless; thread-safe for distinct datasets.
#pragma once

#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include <memory>
#include <string>
#include <vector>

#include "enhance/base/CodedConcept.h"

namespace enhance {

// The whole value (all components joined by '\'), trimmed; "" when absent.
std::string GetString(DcmItem& item, const DcmTagKey& tag);
long GetLong(DcmItem& item, const DcmTagKey& tag, long fallback);
double GetDouble(DcmItem& item, const DcmTagKey& tag, double fallback);
// All components of a multi-valued numeric attribute; empty when absent or malformed.
std::vector<double> GetDoubles(DcmItem& item, const DcmTagKey& tag);

// Inserts or replaces a string value; throws Error(kInternal) on failure.
void PutString(DcmItem& item, const DcmTagKey& tag, const std::string& value);
void PutUint16(DcmItem& item, const DcmTagKey& tag, uint16_t value);
// Appends an item holding a Code Sequence Macro to the sequence `tag` of `item`.
DcmItem& AppendCodeItem(DcmItem& item, const DcmTagKey& tag, const CodedConcept& code);
// Fills the Code Sequence Macro attributes (value, scheme, meaning) in an existing item.
void PutCode(DcmItem& item, const CodedConcept& code);

// Parses a Part 10 file (or a bare dataset) held in memory. Returns nullptr and sets
// `status` when the bytes are not readable DICOM.
std::unique_ptr<DcmFileFormat> ReadDicomBuffer(const std::string& bytes, OFCondition& status);

// Encodes a file as Part 10 in explicit VR little endian, meta header regenerated.
// `where` names the object in the error thrown on failure.
std::string SerializeFile(DcmFileFormat& file, const std::string& where);

// Formats a decimal string (VR DS) of at most 16 characters and at most `maxPrecision`
// significant digits.
std::string FormatDecimal(double value, int maxPrecision = 15);

}  // namespace enhance
