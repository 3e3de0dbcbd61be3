#include "common/cli.h"

#include <gtest/gtest.h>

#include <vector>

namespace dpmfs {
namespace {

// An app with an --at endpoint option, parsed from `args` (after the program name).
// Returns what ParseCommandLine returned (nullopt: go on, else the exit code); only the
// refusals go through it, since going on initialises the process's logging, which a
// test binary can do once.
struct EndpointApp {
  CLI::App app{"test", "cli_test"};
  CommonFlags common;
  std::optional<Endpoint> at;
  std::vector<std::string> args;
  std::vector<char*> argv;

  explicit EndpointApp(std::vector<std::string> a) : args(std::move(a)) {
    AddCommonFlags(app, &common);
    AddEndpointOption(app, "--at", &at, "where");
    argv.push_back(const_cast<char*>("cli_test"));
    for (std::string& s : args) argv.push_back(s.data());
  }
  void Parse() { app.parse(static_cast<int>(argv.size()), argv.data()); }
  std::optional<int> ParseCommandLine() {
    return dpmfs::ParseCommandLine(app, static_cast<int>(argv.size()), argv.data(), common);
  }
};

TEST(CliTest, AnEndpointOptionFillsTheAddress) {
  EndpointApp a({"--at", "127.0.0.1:9100"});
  ASSERT_NO_THROW(a.Parse());
  ASSERT_TRUE(a.at.has_value());
  EXPECT_EQ(a.at->ToString(), "127.0.0.1:9100");
}

TEST(CliTest, AnEndpointOptionLeftOutStaysEmpty) {
  EndpointApp a({});
  ASSERT_NO_THROW(a.Parse());
  EXPECT_FALSE(a.at.has_value());
}

TEST(CliTest, ABadEndpointIsABadFlagNamingTheFlagAndTheReason) {
  EndpointApp a({"--at", "nowhere"});
  testing::internal::CaptureStderr();
  EXPECT_EQ(a.ParseCommandLine(), 2);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(a.at.has_value());
  EXPECT_NE(err.find("--at"), std::string::npos) << err;
  EXPECT_NE(err.find("nowhere"), std::string::npos) << err;
  EXPECT_NE(err.find("expected HOST:PORT"), std::string::npos) << err;
}

}  // namespace
}  // namespace dpmfs
