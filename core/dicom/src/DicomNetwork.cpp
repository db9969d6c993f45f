// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/dicom/DicomNetwork.h"

#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/scu.h>

#include <map>
#include <memory>
#include <set>

#include "DicomUtil.h"
#include "enhance/base/Error.h"

namespace enhance {
namespace {

std::unique_ptr<DcmFileFormat> Parse(const std::string& bytes, size_t index) {
  OFCondition status;
  auto file = ReadDicomBuffer(bytes, status);
  if (!file) {
    throw Error(ErrorKind::kInternal, "instance " + std::to_string(index + 1) +
                                          " to send is not readable: " + status.text());
  }
  return file;
}

void Configure(DcmSCU& scu, const DicomPeer& peer) {
  scu.setAETitle(peer.localAet.c_str());
  scu.setPeerAETitle(peer.remoteAet.c_str());
  scu.setPeerHostName(peer.host.c_str());
  scu.setPeerPort(static_cast<Uint16>(peer.port));
  scu.setACSETimeout(static_cast<Uint32>(peer.timeoutSeconds));
  scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  scu.setDIMSETimeout(static_cast<Uint32>(peer.timeoutSeconds));
  scu.setConnectionTimeout(peer.timeoutSeconds);
}

void Associate(DcmSCU& scu, const DicomPeer& peer) {
  OFCondition status = scu.initNetwork();
  if (status.good()) status = scu.negotiateAssociation();
  if (status.bad()) {
    throw Error(ErrorKind::kBadInput,
                "association with " + peer.Describe() + " failed: " + status.text() +
                    "; check that the destination is running and accepts our AE title " +
                    peer.localAet);
  }
}

// Success (0000) and the warning statuses B000, B006, B007 mean the instance was stored.
bool Accepted(Uint16 status) { return status == 0x0000 || (status & 0xF000) == 0xB000; }

std::string Hex(Uint16 value) {
  char text[8];
  std::snprintf(text, sizeof(text), "%04X", value);
  return text;
}

}  // namespace

std::string DicomPeer::Describe() const {
  return remoteAet + "@" + host + ":" + std::to_string(port);
}

StoreResult StoreFiles(const DicomPeer& peer, const std::set<std::string>& sopClassUids,
                       size_t count, const FileReader& read,
                       const std::function<bool()>& cancelled) {
  StoreResult result;
  if (count == 0) return result;
  DcmSCU scu;
  Configure(scu, peer);
  OFList<OFString> syntaxes;
  syntaxes.push_back(UID_LittleEndianExplicitTransferSyntax);
  syntaxes.push_back(UID_LittleEndianImplicitTransferSyntax);
  for (const auto& sop : sopClassUids) scu.addPresentationContext(sop.c_str(), syntaxes);
  Associate(scu, peer);

  for (size_t i = 0; i < count; ++i) {
    if (cancelled && cancelled()) break;
    std::unique_ptr<DcmFileFormat> file;
    try {
      file = Parse(read(i), i);
    } catch (const std::exception& e) {
      result.refusals.push_back("instance " + std::to_string(i + 1) + ": " + e.what());
      continue;
    }
    DcmDataset* dataset = file->getDataset();
    const std::string sop = GetString(*dataset, DCM_SOPClassUID);
    const std::string uid = GetString(*dataset, DCM_SOPInstanceUID);
    const T_ASC_PresentationContextID context = scu.findPresentationContextID(sop.c_str(), "");
    if (context == 0) {
      result.refusals.push_back(uid + ": " + peer.remoteAet + " does not accept SOP class " + sop);
      continue;
    }
    Uint16 status = 0;
    const OFCondition sent = scu.sendSTORERequest(context, "", dataset, status);
    if (sent.bad()) {
      result.refusals.push_back(uid + ": " + sent.text());
      if (!scu.isConnected()) break;  // the association is gone: the rest cannot be sent
    } else if (!Accepted(status)) {
      result.refusals.push_back(uid + ": refused with status " + Hex(status));
    } else {
      ++result.sent;
    }
  }
  if (scu.isConnected()) scu.releaseAssociation();
  const size_t unsent = count - result.sent - result.refusals.size();
  if (unsent > 0) result.refusals.push_back(std::to_string(unsent) + " instance(s) not sent");
  return result;
}

MoveResult MoveFromPeer(const DicomPeer& peer, const std::string& studyUid,
                        const std::string& seriesUid, const std::string& destinationAet) {
  DcmSCU scu;
  Configure(scu, peer);
  OFList<OFString> syntaxes;
  syntaxes.push_back(UID_LittleEndianExplicitTransferSyntax);
  syntaxes.push_back(UID_LittleEndianImplicitTransferSyntax);
  scu.addPresentationContext(UID_MOVEStudyRootQueryRetrieveInformationModel, syntaxes);
  Associate(scu, peer);
  const T_ASC_PresentationContextID context =
      scu.findPresentationContextID(UID_MOVEStudyRootQueryRetrieveInformationModel, "");
  if (context == 0) {
    scu.releaseAssociation();
    throw Error(ErrorKind::kBadInput, peer.Describe() + " does not accept study-root C-MOVE");
  }
  DcmDataset query;
  PutString(query, DCM_QueryRetrieveLevel, seriesUid.empty() ? "STUDY" : "SERIES");
  PutString(query, DCM_StudyInstanceUID, studyUid);
  if (!seriesUid.empty()) PutString(query, DCM_SeriesInstanceUID, seriesUid);
  OFList<RetrieveResponse*> responses;
  const OFCondition status =
      scu.sendMOVERequest(context, destinationAet.c_str(), &query, &responses);
  MoveResult result;
  if (!responses.empty()) {
    const RetrieveResponse* last = responses.back();
    result.completed = last->m_numberOfCompletedSubops;
    result.failed = last->m_numberOfFailedSubops;
    result.warnings = last->m_numberOfWarningSubops;
    result.status = last->m_status;
  }
  for (auto* response : responses) delete response;
  if (scu.isConnected()) scu.releaseAssociation();
  if (status.bad()) {
    throw Error(ErrorKind::kBadInput,
                "C-MOVE from " + peer.Describe() + " failed: " + status.text());
  }
  if (!Accepted(result.status) || result.failed > 0) {
    throw Error(ErrorKind::kBadInput,
                "C-MOVE from " + peer.Describe() + " to " + destinationAet + " ended with status " +
                    Hex(result.status) + " (" + std::to_string(result.completed) + " sent, " +
                    std::to_string(result.failed) + " failed); check that " + peer.remoteAet +
                    " knows the AE title " + destinationAet + " and that the UID exists");
  }
  return result;
}

}  // namespace enhance
