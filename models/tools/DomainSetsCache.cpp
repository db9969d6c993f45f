// SPDX-License-Identifier: GPL-3.0-or-later
#include <cstdint>
#include <fstream>
#include <stdexcept>

#include "DomainSets.h"

namespace enhance::models {
namespace {

// The sets of a distribution kept in a file, so that calibrating and evaluating several
// checks on the same acquisitions simulates them once (sizes, units and voxels only).
void Write(std::ostream& out, const std::string& text) {
  const uint64_t size = text.size();
  out.write(reinterpret_cast<const char*>(&size), sizeof(size));
  out.write(text.data(), static_cast<std::streamsize>(size));
}

std::string ReadText(std::istream& in) {
  uint64_t size = 0;
  in.read(reinterpret_cast<char*>(&size), sizeof(size));
  std::string text(size, '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  return text;
}

void Write(std::ostream& out, const DomainSet& set) {
  Write(out, set.name);
  const uint64_t count = set.series.size();
  out.write(reinterpret_cast<const char*>(&count), sizeof(count));
  for (const Volume& v : set.series) {
    const int64_t dims[3] = {v.slices, v.rows, v.columns};
    out.write(reinterpret_cast<const char*>(dims), sizeof(dims));
    Write(out, v.units);
    out.write(reinterpret_cast<const char*>(v.voxels.data()),
              static_cast<std::streamsize>(v.voxels.size() * sizeof(float)));
  }
}

DomainSet ReadSet(std::istream& in) {
  DomainSet set;
  set.name = ReadText(in);
  uint64_t count = 0;
  in.read(reinterpret_cast<char*>(&count), sizeof(count));
  for (uint64_t i = 0; i < count && in; ++i) {
    Volume v;
    int64_t dims[3] = {0, 0, 0};
    in.read(reinterpret_cast<char*>(dims), sizeof(dims));
    v.slices = dims[0];
    v.rows = dims[1];
    v.columns = dims[2];
    v.units = ReadText(in);
    v.voxels.resize(static_cast<size_t>(v.slices * v.rows * v.columns));
    in.read(reinterpret_cast<char*>(v.voxels.data()),
            static_cast<std::streamsize>(v.voxels.size() * sizeof(float)));
    set.series.push_back(std::move(v));
  }
  return set;
}

}  // namespace

void WriteSets(const std::filesystem::path& file, const DomainSets& sets) {
  std::ofstream out(file, std::ios::binary);
  Write(out, sets.trainedOn);
  for (const DomainSet* set : {&sets.reference, &sets.calibration, &sets.test}) Write(out, *set);
  for (const auto* list : {&sets.far, &sets.near, &sets.extra}) {
    const uint64_t count = list->size();
    out.write(reinterpret_cast<const char*>(&count), sizeof(count));
    for (const DomainSet& set : *list) Write(out, set);
  }
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

DomainSets ReadSets(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  DomainSets sets;
  sets.trainedOn = ReadText(in);
  for (DomainSet* set : {&sets.reference, &sets.calibration, &sets.test}) *set = ReadSet(in);
  for (auto* list : {&sets.far, &sets.near, &sets.extra}) {
    uint64_t count = 0;
    in.read(reinterpret_cast<char*>(&count), sizeof(count));
    for (uint64_t i = 0; i < count && in; ++i) list->push_back(ReadSet(in));
  }
  if (!in) throw std::runtime_error(file.string() + ": not a complete cache of domain sets");
  return sets;
}

}  // namespace enhance::models
