#include "common/service_notify.h"

#include <systemd/sd-daemon.h>

#include <cstdio>
#include <string>

#include <spdlog/spdlog.h>

namespace dpmfs {

void ServiceProgress(std::string_view what) {
  std::string line = "PROGRESS " + std::string(what) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
  spdlog::info("{}", what);
  const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(kProgressExtension);
  sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%lld\nSTATUS=%.*s", static_cast<long long>(usec.count()),
             static_cast<int>(what.size()), what.data());
}

void ServiceReady(std::string_view endpoint) {
  std::printf("READY %.*s\n", static_cast<int>(endpoint.size()), endpoint.data());
  std::fflush(stdout);
  sd_notifyf(0, "READY=1\nSTATUS=serving on %.*s", static_cast<int>(endpoint.size()),
             endpoint.data());
}

void ServiceStopping() { sd_notify(0, "STOPPING=1\nSTATUS=stopping"); }

}  // namespace dpmfs
