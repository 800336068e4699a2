#include "util/status.h"

#include <gtest/gtest.h>

namespace dflash::util {
namespace {

Result<int> parse_positive(int x) {
  if (x <= 0) return invalid_argument(strfmt("expected a positive number, got %d", x));
  return x;
}

Status twice(int x, int* out) {
  DFLASH_ASSIGN_OR_RETURN(int v, parse_positive(x));
  *out = 2 * v;
  return Status::ok();
}

TEST(Status, PropagatesErrorsWithContext) {
  int out = 0;
  EXPECT_TRUE(twice(3, &out).is_ok());
  EXPECT_EQ(out, 6);
  Status st = twice(-1, &out).with_context("reading --n");
  EXPECT_FALSE(st.is_ok());
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.to_string(), "invalid argument: reading --n: expected a positive number, got -1");
}

}  // namespace
}  // namespace dflash::util
