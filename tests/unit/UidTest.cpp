// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/Uid.h"

#include <gtest/gtest.h>

#include <set>

#include "enhance/base/Error.h"

namespace enhance {

TEST(Uid, GeneratedUidsAreValidAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    const std::string uid = GenerateUid();
    ASSERT_TRUE(IsValidUid(uid)) << uid;
    ASSERT_EQ(uid.rfind("2.25.", 0), 0u) << uid;
    ASSERT_TRUE(seen.insert(uid).second) << "duplicate " << uid;
  }
}

TEST(Uid, CustomRootIsUsedAndFilledTo64Characters) {
  const std::string uid = GenerateUid("1.2.826.0.1.3680043.10.1234");
  EXPECT_TRUE(IsValidUid(uid)) << uid;
  EXPECT_EQ(uid.rfind("1.2.826.0.1.3680043.10.1234.", 0), 0u);
  EXPECT_EQ(uid.size(), 64u);
}

TEST(Uid, InvalidRootIsRejectedWithTheKeyToFix) {
  try {
    GenerateUid("1.2.03.x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("Enhance.UidRoot"), std::string::npos) << e.what();
  }
  EXPECT_THROW(GenerateUid(std::string(50, '1')), Error);
}

TEST(Uid, Validation) {
  EXPECT_TRUE(IsValidUid("1.2.840.10008.5.1.4.1.1.2"));
  EXPECT_TRUE(IsValidUid("2.25.0"));
  EXPECT_FALSE(IsValidUid(""));
  EXPECT_FALSE(IsValidUid("1..2"));
  EXPECT_FALSE(IsValidUid("1.02"));
  EXPECT_FALSE(IsValidUid("1.2."));
  EXPECT_FALSE(IsValidUid("1.2a"));
  EXPECT_FALSE(IsValidUid(std::string(65, '1')));
}

TEST(Uid, NameBasedUidIsStableAndDistinct) {
  EXPECT_EQ(UidFromName("model/1.0"), UidFromName("model/1.0"));
  EXPECT_NE(UidFromName("model/1.0"), UidFromName("model/1.1"));
  EXPECT_TRUE(IsValidUid(UidFromName("model/1.0")));
}

}  // namespace enhance
