// How a daemon tells whoever started it how far it got: systemd (Type=notify units, via
// sd_notify(3) from libsystemd; a no-op when $NOTIFY_SOCKET is unset) and the launchers
// that read its stdout (tools/dpmfs, common/daemon_process.h).
//
//   ServiceProgress("replaying journal: 120000 records")  -> "PROGRESS ..." on stdout,
//       STATUS=... and EXTEND_TIMEOUT_USEC=... to systemd: the supervisor's start timeout
//       is extended while work goes on, so a long replay is not killed as a hung start.
//   ServiceReady("127.0.0.1:7000")   -> "READY 127.0.0.1:7000" on stdout, READY=1.
//   ServiceStopping()                -> STOPPING=1.
//
// Thread-safety: safe from any thread (each call writes one line and one datagram).
#pragma once

#include <chrono>
#include <string_view>

namespace dpmfs {

// How much longer each progress report asks systemd to wait (EXTEND_TIMEOUT_USEC): a
// replay that reports at least this often is never timed out.
inline constexpr std::chrono::seconds kProgressExtension{30};

void ServiceProgress(std::string_view what);
void ServiceReady(std::string_view endpoint);
void ServiceStopping();

}  // namespace dpmfs
