#include "common/logging.h"

#include <cstdlib>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
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

}  // namespace dpmfs
