// SPDX-License-Identifier: GPL-3.0-or-later
//
// Where a model's time goes, operator by operator: while an OperatorProfile is alive, every
// operator LibTorch dispatches on any thread (aten's and the node's own enhance:: ones) is
// timed through LibTorch's RecordFunction callbacks, and its self time (its own time less
// that of the operators it called) added to its name's total. For enhance-benchmark's
// --profile; costs a few microseconds an operator, so a profiled run is not a timed one.
//
// Thread-safety: one OperatorProfile at a time per process; the totals are guarded by a
// mutex, the call stacks are per thread.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace enhance::tools {

struct OperatorTime {
  std::string name;
  double selfSeconds = 0;
  int64_t calls = 0;
};

class OperatorProfile {
 public:
  OperatorProfile();
  ~OperatorProfile();
  OperatorProfile(const OperatorProfile&) = delete;
  OperatorProfile& operator=(const OperatorProfile&) = delete;

  // Totals so far, the largest self time first.
  std::vector<OperatorTime> Totals() const;

 private:
  uint64_t handle_ = 0;
};

}  // namespace enhance::tools
