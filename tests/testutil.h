// Helpers shared by gati's tests.
#ifndef GATI_TESTS_TESTUTIL_H_
#define GATI_TESTS_TESTUTIL_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/status.h"

namespace gati::testing {

// Path of a fixture written by tests/fixtures/make_fixtures.py.
inline std::string FixturePath(const std::string& name) {
  const char* dir = std::getenv("GATI_FIXTURES_DIR");
  return std::string(dir ? dir : "tests/fixtures") + "/" + name;
}

// A fresh directory removed at destruction.
class TempDir {
 public:
  TempDir() {
    const ::testing::TestInfo* info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("gati_test_" + std::string(info->test_suite_name()) + "_" +
             info->name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const {
    return (path_ / name).string();
  }

 private:
  std::filesystem::path path_;
};

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Asserts that `status_expr` is an error with `want_code` whose message contains
// `substring`.
#define EXPECT_ERROR(status_expr, want_code, substring)                         \
  do {                                                                     \
    const ::absl::Status st_ = (status_expr);                              \
    EXPECT_EQ(st_.code(), (want_code)) << st_;                                  \
    EXPECT_NE(std::string(st_.message()).find(substring),                  \
              std::string::npos)                                           \
        << "message: " << st_.message() << "\nwanted: " << (substring);    \
  } while (0)

}  // namespace gati::testing

#endif  // GATI_TESTS_TESTUTIL_H_
