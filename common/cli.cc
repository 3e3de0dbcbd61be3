#include "common/cli.h"

#include <iostream>

#include "common/logging.h"
#include "dpmfs_commit.h"  // generated: DPMFS_GIT_COMMIT

namespace dpmfs {

std::string VersionText() {
  return std::string("dpmfs ") + DPMFS_VERSION + " (commit " + DPMFS_GIT_COMMIT + ")";
}

void AddCommonFlags(CLI::App& app, CommonFlags* flags) {
  app.add_option("--log-level", flags->log_level,
                 "Log verbosity: trace, debug, info, warn, error, critical, off "
                 "(default: $DPMFS_LOG_LEVEL, else info)");
  app.set_version_flag("--version", VersionText());
}

CLI::Option* AddEndpointOption(CLI::App& app, const std::string& name,
                               std::optional<Endpoint>* out, const std::string& help) {
  return app.add_option_function<std::string>(
      name,
      [name, out](const std::string& value) {
        Result<Endpoint> ep = Endpoint::Parse(value);
        if (!ep.ok()) throw CLI::ValidationError(name, ep.status().message());
        *out = *ep;
      },
      help)->type_name("ADDR:PORT");
}

std::optional<int> ParseCommandLine(CLI::App& app, int argc, char** argv,
                                    const CommonFlags& flags) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help/version to stdout, errors to stderr
    return rc == 0 ? 0 : 2;
  }
  Status st = InitLogging(app.get_name(), flags.log_level);
  if (!st.ok()) {
    std::cerr << app.get_name() << ": " << st.message() << "\n";
    return 2;
  }
  return std::nullopt;
}

}  // namespace dpmfs
