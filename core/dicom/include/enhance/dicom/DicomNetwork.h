// SPDX-License-Identifier: GPL-3.0-or-later
//
// DICOM network operations as a service class user, with DCMTK: C-STORE of files to a
// remote application entity, and C-MOVE of a study or series from a remote archive to
// an AE title. Used by the plugin instead of Orthanc's job-based /store and /move REST
// routes, which cannot be waited for from inside a job without risking a deadlock of
// Orthanc's job workers. Stateless functions; thread-safe (one association per call).
//
// Errors: Error(kBadInput) when the association is refused or cannot be opened, naming
// the peer; per-instance refusals are returned, never reported as success.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

namespace enhance {

struct DicomPeer {
  std::string localAet;   // our calling AE title
  std::string remoteAet;  // the called AE title
  std::string host;
  int port = 104;
  int timeoutSeconds = 30;

  std::string Describe() const;  // "PACS@127.0.0.1:4242"
};

struct StoreResult {
  size_t sent = 0;                    // accepted (success or warning status)
  std::vector<std::string> refusals;  // one message per refused instance
};

// Reads file `index` (from 0) of the instances to send; throws when it cannot.
using FileReader = std::function<std::string(size_t index)>;

// Sends `count` files in one association, reading each just before it is sent, so that
// one file is held at a time. `sopClassUids` lists the SOP classes among them (one
// presentation context each). A file that cannot be read, or whose SOP class was not
// listed or not accepted, is a refusal. `cancelled` is polled between instances.
StoreResult StoreFiles(const DicomPeer& peer, const std::set<std::string>& sopClassUids,
                       size_t count, const FileReader& read,
                       const std::function<bool()>& cancelled = {});

struct MoveResult {
  int completed = 0;
  int failed = 0;
  int warnings = 0;
  uint16_t status = 0;  // of the final response
};

// Asks `peer` (the archive) to send a study (seriesUid empty) or a series to
// `destinationAet`. Throws Error when the move fails as a whole.
MoveResult MoveFromPeer(const DicomPeer& peer, const std::string& studyUid,
                        const std::string& seriesUid, const std::string& destinationAet);

}  // namespace enhance
