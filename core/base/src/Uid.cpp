// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/Uid.h"

#include <array>
#include <boost/uuid/name_generator_sha1.hpp>
#include <boost/uuid/uuid.hpp>
#include <random>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

constexpr size_t kMaxUidLength = 64;
constexpr size_t kMinRandomDigits = 24;  // about 80 bits of randomness under a custom root

std::mt19937_64& Engine() {
  // One engine per thread, seeded from the OS: no locking and no shared state.
  thread_local std::mt19937_64 engine = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return engine;
}

// Decimal representation of a 128-bit number held as four 32-bit limbs, most significant first.
std::string ToDecimal(std::array<uint32_t, 4> limbs) {
  std::string digits;
  auto isZero = [&] { return limbs[0] == 0 && limbs[1] == 0 && limbs[2] == 0 && limbs[3] == 0; };
  while (!isZero()) {
    uint64_t remainder = 0;
    for (auto& limb : limbs) {
      const uint64_t current = (remainder << 32) | limb;
      limb = static_cast<uint32_t>(current / 10);
      remainder = current % 10;
    }
    digits.insert(digits.begin(), static_cast<char>('0' + remainder));
  }
  return digits.empty() ? "0" : digits;
}

}  // namespace

std::string UidFromName(const std::string& name) {
  // A fixed namespace for this product, itself a version 5 UUID of its name.
  static const boost::uuids::uuid kNamespace =
      boost::uuids::name_generator_sha1(boost::uuids::uuid())("Orthanc Enhance");
  const boost::uuids::uuid id = boost::uuids::name_generator_sha1(kNamespace)(name);
  std::array<uint32_t, 4> limbs{};
  for (size_t i = 0; i < 16; ++i) {
    limbs[i / 4] = (limbs[i / 4] << 8) | id.data[i];
  }
  return "2.25." + ToDecimal(limbs);
}

std::string UidFromName(const std::string& name, const std::string& root) {
  const std::string full = UidFromName(name);
  if (root.empty()) return full;
  if (!IsValidUid(root) || root.size() + 1 + kMinRandomDigits > kMaxUidLength) {
    GenerateUid(root);  // throws the explanatory error
  }
  std::string digits = full.substr(5);  // the decimal hash after "2.25."
  const size_t room = kMaxUidLength - root.size() - 1;
  if (digits.size() > room) digits.resize(room);
  while (digits.size() > 1 && digits[0] == '0') digits.erase(0, 1);
  return root + "." + digits;
}

bool IsValidUid(const std::string& uid) {
  if (uid.empty() || uid.size() > kMaxUidLength) return false;
  size_t start = 0;
  while (true) {
    const size_t end = uid.find('.', start);
    const std::string component = uid.substr(start, end == std::string::npos ? end : end - start);
    if (component.empty()) return false;
    for (char c : component) {
      if (c < '0' || c > '9') return false;
    }
    if (component.size() > 1 && component[0] == '0') return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

std::string GenerateUid(const std::string& root) {
  auto& engine = Engine();
  if (root.empty()) {
    // UUID version 4 (random), read as one unsigned 128-bit integer (PS3.5 B.2).
    const uint64_t high = (engine() & 0xFFFFFFFFFFFF0FFFull) | 0x0000000000004000ull;
    const uint64_t low = (engine() & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;
    return "2.25." + ToDecimal({static_cast<uint32_t>(high >> 32), static_cast<uint32_t>(high),
                                static_cast<uint32_t>(low >> 32), static_cast<uint32_t>(low)});
  }
  if (!IsValidUid(root) || root.size() + 1 + kMinRandomDigits > kMaxUidLength) {
    throw Error(ErrorKind::kBadInput,
                "UID root '" + Printable(root) + "' is not a valid DICOM UID prefix of at most " +
                    std::to_string(kMaxUidLength - 1 - kMinRandomDigits) +
                    " characters; set Enhance.UidRoot to your organisation's root or leave it "
                    "empty to use 2.25 UUID-derived UIDs");
  }
  std::uniform_int_distribution<int> digit(0, 9);
  std::uniform_int_distribution<int> firstDigit(1, 9);
  std::string uid = root + "." + static_cast<char>('0' + firstDigit(engine));
  while (uid.size() < kMaxUidLength) uid += static_cast<char>('0' + digit(engine));
  return uid;
}

}  // namespace enhance
