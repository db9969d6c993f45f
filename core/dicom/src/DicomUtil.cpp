// SPDX-License-Identifier: GPL-3.0-or-later
#include "DicomUtil.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcsequen.h>

#include <cmath>
#include <cstdio>

#include "enhance/base/Error.h"

namespace enhance {

std::string GetString(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  if (item.findAndGetOFStringArray(tag, value).bad()) return "";
  std::string s(value.c_str());
  const size_t begin = s.find_first_not_of(" \0", 0, 2);
  if (begin == std::string::npos) return "";
  const size_t end = s.find_last_not_of(" \0", std::string::npos, 2);
  return s.substr(begin, end - begin + 1);
}

long GetLong(DcmItem& item, const DcmTagKey& tag, long fallback) {
  DcmElement* element = nullptr;
  if (item.findAndGetElement(tag, element).bad() || element == nullptr ||
      element->getLength() == 0) {
    return fallback;
  }
  // Integer strings (IS) and binary integers (US, SS, UL, SL) all answer one of these.
  Sint32 s32 = 0;
  if (element->getSint32(s32).good()) return s32;
  Uint16 u16 = 0;
  if (element->getUint16(u16).good()) return u16;
  Sint16 s16 = 0;
  if (element->getSint16(s16).good()) return s16;
  Uint32 u32 = 0;
  if (element->getUint32(u32).good()) return static_cast<long>(u32);
  OFString text;
  if (element->getOFString(text, 0).good()) {
    try {
      return std::stol(text.c_str());
    } catch (const std::exception&) {
    }
  }
  return fallback;
}

double GetDouble(DcmItem& item, const DcmTagKey& tag, double fallback) {
  Float64 value = 0;
  if (item.findAndGetFloat64(tag, value).good() && std::isfinite(value)) return value;
  return fallback;
}

std::vector<double> GetDoubles(DcmItem& item, const DcmTagKey& tag) {
  DcmElement* element = nullptr;
  std::vector<double> values;
  if (item.findAndGetElement(tag, element).bad() || element == nullptr) return values;
  const unsigned long count = element->getVM();
  for (unsigned long i = 0; i < count; ++i) {
    Float64 v = 0;
    if (element->getFloat64(v, i).bad() || !std::isfinite(v)) return {};
    values.push_back(v);
  }
  return values;
}

void PutString(DcmItem& item, const DcmTagKey& tag, const std::string& value) {
  const OFCondition status = item.putAndInsertOFStringArray(tag, value.c_str());
  if (status.bad()) {
    throw Error(ErrorKind::kInternal, std::string("cannot write ") + DcmTag(tag).getTagName() +
                                          " = '" + value + "': " + status.text());
  }
}

void PutUint16(DcmItem& item, const DcmTagKey& tag, uint16_t value) {
  const OFCondition status = item.putAndInsertUint16(tag, value);
  if (status.bad()) {
    throw Error(ErrorKind::kInternal,
                std::string("cannot write ") + DcmTag(tag).getTagName() + ": " + status.text());
  }
}

void PutCode(DcmItem& item, const CodedConcept& code) {
  PutString(item, DCM_CodeValue, code.value);
  PutString(item, DCM_CodingSchemeDesignator, code.scheme);
  PutString(item, DCM_CodeMeaning, code.meaning);
}

DcmItem& AppendCodeItem(DcmItem& item, const DcmTagKey& tag, const CodedConcept& code) {
  DcmItem* child = nullptr;
  const OFCondition status = item.findOrCreateSequenceItem(tag, child, -2 /* append */);
  if (status.bad() || child == nullptr) {
    throw Error(ErrorKind::kInternal,
                std::string("cannot append to ") + DcmTag(tag).getTagName() + ": " + status.text());
  }
  PutCode(*child, code);
  return *child;
}

std::string FormatDecimal(double value, int maxPrecision) {
  if (!std::isfinite(value)) value = 0.0;
  char buffer[64];
  for (int precision = maxPrecision; precision > 0; --precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::string(buffer).size() <= 16) break;
  }
  return buffer;
}

std::unique_ptr<DcmFileFormat> ReadDicomBuffer(const std::string& bytes, OFCondition& status) {
  DcmInputBufferStream stream;
  stream.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  stream.setEos();
  auto file = std::make_unique<DcmFileFormat>();
  file->transferInit();
  status = file->read(stream, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
  file->transferEnd();
  if (status.bad()) return nullptr;
  return file;
}

std::string SerializeFile(DcmFileFormat& file, const std::string& where) {
  const E_TransferSyntax xfer = EXS_LittleEndianExplicit;
  OFCondition status = file.validateMetaInfo(xfer);
  if (status.good()) {
    file.removeInvalidGroups();
  }
  const Uint32 length = file.calcElementLength(xfer, EET_ExplicitLength);
  std::string buffer(static_cast<size_t>(length) + 1024, '\0');
  DcmOutputBufferStream stream(&buffer[0], buffer.size());
  file.transferInit();
  if (status.good()) {
    status = file.write(stream, xfer, EET_ExplicitLength, nullptr, EGL_recalcGL, EPD_noChange, 0, 0,
                        0, EWM_fileformat);
  }
  file.transferEnd();
  if (status.bad()) {
    throw Error(ErrorKind::kInternal, where + ": cannot encode derived instance: " + status.text());
  }
  void* written = nullptr;
  offile_off_t writtenLength = 0;
  stream.flushBuffer(written, writtenLength);
  buffer.resize(static_cast<size_t>(writtenLength));
  return buffer;
}

}  // namespace enhance
