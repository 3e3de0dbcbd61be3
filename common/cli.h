// Command-line handling shared by every dpmfs binary, on top of CLI11: a --help that
// answers (CLI11's, with the program's description and each flag's meaning), the
// common --log-level flag, and logging set up once parsing succeeded.
//
// Usage:
//   CLI::App app{"what this program does"};
//   dpmfs::CommonFlags common;
//   dpmfs::AddCommonFlags(app, &common);
//   ... app.add_option(...) ...
//   if (auto rc = dpmfs::ParseCommandLine(app, argc, argv, common)) return *rc;
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common/endpoint.h"

namespace dpmfs {

struct CommonFlags {
  std::string log_level;  // empty: $DPMFS_LOG_LEVEL or info
};

// Adds --log-level and --version (which prints VersionText()).
void AddCommonFlags(CLI::App& app, CommonFlags* flags);

// "dpmfs 0.1.0 (commit 1a2b3c4d5e6f)": what every program's --version says.
std::string VersionText();

// Parses argv. Returns an exit code when the program should stop now (--help printed:
// 0; bad flags: 2 with CLI11's message naming the flag; bad log level: 2), or
// std::nullopt when it should go on, with logging initialised.
std::optional<int> ParseCommandLine(CLI::App& app, int argc, char** argv,
                                    const CommonFlags& flags);

// Adds `name` taking ADDR:PORT (common/endpoint.h) into *out. A value that is not an
// address is a bad flag: ParseCommandLine exits 2 with a message naming the flag and why.
CLI::Option* AddEndpointOption(CLI::App& app, const std::string& name,
                               std::optional<Endpoint>* out, const std::string& help);

}  // namespace dpmfs
