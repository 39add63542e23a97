// GoogleTest's answers for the harness (see TestContextHooks in support/util.h), installed before
// main. Linked into every test binary as an object (test/CMakeLists.txt), never into the bench.
#include <gtest/gtest.h>

#include "support/util.h"

namespace k8shmir::testing {
namespace {

const bool kInstalled = [] {
  SetTestContextHooks(TestContextHooks{
      [] {
        const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
        if (info == nullptr) return std::string();
        return std::string(info->test_suite_name()) + "." + info->name();
      },
      [] { return ::testing::Test::HasFailure(); },
  });
  return true;
}();

}  // namespace
}  // namespace k8shmir::testing
