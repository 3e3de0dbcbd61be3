// Small TCP helpers over POSIX sockets, shared by the soft transport and the
// benchmarks' raw-TCP baselines. Thread-safety: free functions; a UniqueFd is a value
// owned by one thread at a time.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <string>

#include "common/endpoint.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace dpmfs {

// Connects with a deadline; TCP_NODELAY set. Unavailable when refused/unreachable.
Result<UniqueFd> TcpConnect(const Endpoint& peer, std::chrono::milliseconds timeout);
// Binds and listens (SO_REUSEADDR). Port 0 picks a free port: see LocalEndpoint.
Result<UniqueFd> TcpListen(const Endpoint& local, int backlog = 128);
Result<Endpoint> LocalEndpoint(int fd);
std::string PeerName(int fd);  // "127.0.0.1:4711" or "?"
void SetNoDelay(int fd);

// Blocking full transfers. Unavailable on EOF / reset (the peer went away).
Status SendAll(int fd, const void* data, size_t n);
Status RecvAll(int fd, void* data, size_t n);
// Waits for readability up to `timeout`; TimedOut if nothing arrived.
Status WaitReadable(int fd, std::chrono::milliseconds timeout);

}  // namespace dpmfs
