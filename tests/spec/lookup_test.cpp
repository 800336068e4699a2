#include "spec/lookup.h"

#include <gtest/gtest.h>

namespace dflash::spec {
namespace {

using V = std::vector<int32_t>;

TEST(LookupDraft, ContinuesTheLatestMatchOfTheLongestNgram) {
  //            0  1  2  3  4  5  6  7  8  9 10
  const V h = {5, 1, 2, 3, 9, 7, 2, 3, 8, 1, 2, 3};
  // last 3 = [1 2 3] occurs ending at 4 (tokens 1..3): continuation from index 4
  EXPECT_EQ(lookup_draft(h, 3, 4), (V{9, 7, 2, 3}));
  // with bigrams only, the latest [2 3] ends at 8: continuation 8, 1, 2 (cut at the end of history)
  EXPECT_EQ(lookup_draft(h, 2, 5), (V{8, 1, 2, 3}));
  EXPECT_EQ(lookup_draft(h, 2, 2), (V{8, 1}));
}

TEST(LookupDraft, FallsBackToShorterNgramsAndMayFindNothing) {
  EXPECT_EQ(lookup_draft(V{4, 6, 4, 7, 6}, 3, 2), (V{4, 7}));  // only the unigram [6] recurs
  EXPECT_TRUE(lookup_draft(V{1, 2, 3, 4}, 3, 4).empty());
  EXPECT_TRUE(lookup_draft(V{1}, 3, 4).empty());
  EXPECT_TRUE(lookup_draft(V{1, 1}, 3, 0).empty());
  EXPECT_EQ(lookup_draft(V{1, 1}, 3, 4), (V{1}));
}

TEST(LookupDraft, ReportsTheLengthOfTheMatchedNgram) {
  int g = -1;
  EXPECT_EQ(lookup_draft(V{4, 6, 4, 7, 6}, 3, 2, &g), (V{4, 7}));
  EXPECT_EQ(g, 1);
  EXPECT_EQ(lookup_draft(V{1, 2, 3, 9, 1, 2, 3}, 3, 2, &g), (V{9, 1}));
  EXPECT_EQ(g, 3);
  EXPECT_TRUE(lookup_draft(V{1, 2, 3, 4}, 3, 4, &g).empty());
  EXPECT_EQ(g, 0);
}

}  // namespace
}  // namespace dflash::spec
