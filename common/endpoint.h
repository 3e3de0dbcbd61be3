// A network endpoint "host:port" as given on command lines and in cluster files.
// IPv6 literals are written in brackets: "[::1]:7000". Thread-safety: a value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace dpmfs {

struct Endpoint {
  std::string host;
  uint16_t port = 0;

  // Accepts "host:port" and "[v6addr]:port"; the port must be 0..65535.
  static Result<Endpoint> Parse(std::string_view text);
  std::string ToString() const;
};

}  // namespace dpmfs
