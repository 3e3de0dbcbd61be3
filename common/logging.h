// The one logger setup of dpmfs: every binary calls InitLogging once after parsing its
// flags, then logs with spdlog's free functions (spdlog::info(...)), which go to the
// default logger configured here: stderr, "[time] [program] [level] message".
//
// Level: --log-level if given, otherwise $DPMFS_LOG_LEVEL, otherwise "info".
// Thread-safety: InitLogging is not; call it before starting threads. Logging is.
#pragma once

#include <string_view>

#include "common/status.h"

namespace dpmfs {

inline constexpr std::string_view kLogLevelEnv = "DPMFS_LOG_LEVEL";
inline constexpr std::string_view kLogLevelNames = "trace|debug|info|warn|error|critical|off";

// `level` empty means: take $DPMFS_LOG_LEVEL or "info". An unknown level name is an
// InvalidArgument naming the accepted ones.
Status InitLogging(std::string_view program, std::string_view level);

// Changes the level of the default logger while running (an admin request: `dpmfs
// log-level`). InvalidArgument, level unchanged, for an unknown name. The change itself
// is logged at warn, so the log shows when debug lines start and stop.
Status SetLogLevel(std::string_view level);

// Sends the default logger (level kept) to syslog (ident `program`, facility daemon), for
// a process that detached from its terminal.
void LogToSyslog(std::string_view program);
// Sends the default logger (level kept) to the file `path`, appended, created (or made)
// mode 0600: logs name files and users. IOError when it cannot be opened.
Status LogToFile(std::string_view program, const std::string& path);

}  // namespace dpmfs
