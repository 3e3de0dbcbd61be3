#include "transport/transport_flags.h"

namespace dpmfs::transport {

void AddSoftLimitFlags(CLI::App& app, DeviceOptions* o) {
  app.add_option("--soft-stall-timeout-ms", o->soft_stall_timeout_ms,
                 "soft transport: close a connection whose peer began a frame and stopped "
                 "sending it, or stopped reading the responses it asked for, this long")
      ->check(CLI::Range(100u, 3600000u))
      ->capture_default_str();
  app.add_option("--soft-max-queued-bytes", o->soft_max_queued_bytes,
                 "soft transport: responses queued per connection for a peer that does not "
                 "read them; beyond it that connection's requests wait")
      ->check(CLI::Range(uint64_t{1} << 20, uint64_t{1} << 34))
      ->capture_default_str();
  app.add_option("--soft-handshake-timeout-ms", o->soft_handshake_timeout_ms,
                 "soft transport: a peer must send its connection request this soon after "
                 "connecting")
      ->check(CLI::Range(100u, 600000u))
      ->capture_default_str();
  app.add_option("--soft-max-pending-handshakes", o->soft_max_pending_handshakes,
                 "soft transport: connections waiting for their connection request; beyond "
                 "it the oldest is dropped")
      ->check(CLI::Range(1u, 65536u))
      ->capture_default_str();
}

void AddConnectionLimitFlags(CLI::App& app, uint32_t* max_connections,
                             uint32_t* max_connections_per_peer) {
  app.add_option("--max-connections", *max_connections,
                 "Client connections served at once; more are refused with a message saying so")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();
  app.add_option("--max-connections-per-peer", *max_connections_per_peer,
                 "Connections from one peer address at once (one host cannot take them all)")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();
}

}  // namespace dpmfs::transport
