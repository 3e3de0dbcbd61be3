#include "common/endpoint.h"

#include <algorithm>
#include <charconv>

namespace dpmfs {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_';
}

bool IsV6Char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
         c == ':' || c == '.';
}

}  // namespace

Result<Endpoint> Endpoint::Parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("bad address '" + std::string(text) + "': " +
                                   std::string(why) + " (expected HOST:PORT)");
  };
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  // A host is a name (letters, digits, '-', '.', '_') or, in brackets, an IPv6 address
  // with an optional %zone. Nothing else: the host is written back into cluster files and
  // logs, where '#', blanks and NUL bytes would change what a line says.
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    const std::string_view address = host.substr(0, host.find('%'));
    const std::string_view zone =
        address.size() < host.size() ? host.substr(address.size() + 1) : std::string_view("-");
    if (address.find(':') == std::string_view::npos || zone.empty() ||
        !std::all_of(address.begin(), address.end(), IsV6Char) ||
        !std::all_of(zone.begin(), zone.end(), IsNameChar)) {
      return bad("brackets hold an IPv6 address (hex digits and colons, an optional %zone)");
    }
  } else if (host.find(':') != std::string_view::npos) {
    return bad("IPv6 addresses must be written in brackets");
  } else if (!std::all_of(host.begin(), host.end(), IsNameChar)) {
    return bad("a host name has only letters, digits, '-', '.' and '_'");
  }
  if (host.empty()) return bad("empty host");
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return bad("port must be a number from 0 to 65535");
  }
  return Endpoint{std::string(host), static_cast<uint16_t>(value)};
}

std::string Endpoint::ToString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace dpmfs
