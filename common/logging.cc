#include "common/logging.h"

#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

namespace dpmfs {

Status InitLogging(std::string_view program, std::string_view level) {
  std::string name(level);
  if (name.empty()) {
    const char* env = std::getenv(std::string(kLogLevelEnv).c_str());
    name = env != nullptr && *env != '\0' ? env : "info";
  }
  spdlog::level::level_enum lvl = spdlog::level::from_str(name);
  // from_str maps unknown names to "off"; only accept "off" when asked for.
  if (lvl == spdlog::level::off && name != "off") {
    return Status::InvalidArgument("unknown log level '" + name + "' (use one of " +
                                   std::string(kLogLevelNames) + ")");
  }
  auto logger = spdlog::stderr_color_mt(std::string(program));
  logger->set_level(lvl);
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%^%l%$] %v");
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return Status::OK();
}

Status SetLogLevel(std::string_view level) {
  const std::string name(level);
  spdlog::level::level_enum lvl = spdlog::level::from_str(name);
  if (lvl == spdlog::level::off && name != "off") {
    return Status::InvalidArgument("unknown log level '" + name + "' (use one of " +
                                   std::string(kLogLevelNames) + "); level unchanged");
  }
  const auto old = spdlog::default_logger()->level();
  spdlog::warn("log level changed from {} to {} by an admin request",
               spdlog::level::to_string_view(old), name);
  spdlog::default_logger()->set_level(lvl);
  return Status::OK();
}

namespace {

// Replaces the default logger by one named `program` on `sink`, with the old level.
void ReplaceDefault(std::string_view program, spdlog::sink_ptr sink, const char* pattern) {
  spdlog::level::level_enum lvl = spdlog::default_logger()->level();
  spdlog::drop(std::string(program));
  auto logger = std::make_shared<spdlog::logger>(std::string(program), std::move(sink));
  logger->set_level(lvl);
  logger->set_pattern(pattern);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace

void LogToSyslog(std::string_view program) {
  // syslog stamps time, host and ident itself.
  auto sink = std::make_shared<spdlog::sinks::syslog_sink_mt>(std::string(program), LOG_PID,
                                                              LOG_DAEMON, true);
  ReplaceDefault(program, std::move(sink), "%v");
}

Status LogToFile(std::string_view program, const std::string& path) {
  // Created 0600 here (the file sink would create it by the umask), and an existing file
  // is made 0600 too.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "cannot open log file " + path);
  int rc = ::fchmod(fd, 0600);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "cannot make log file " + path + " mode 0600");
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
    ReplaceDefault(program, std::move(sink), "[%Y-%m-%d %H:%M:%S.%e] [%n] [%l] %v");
  } catch (const spdlog::spdlog_ex& e) {
    return Status::IOError("cannot open log file " + path + ": " + e.what());
  }
  return Status::OK();
}

}  // namespace dpmfs
