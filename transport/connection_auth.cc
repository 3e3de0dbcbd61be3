#include "transport/connection_auth.h"

#include <algorithm>

#include <sodium.h>
#include <spdlog/spdlog.h>

#include "common/byte_codec.h"

namespace dpmfs::transport::auth {
namespace {

using codec::ByteReader;
using codec::ByteSizer;
using codec::ByteWriter;

// crypto_kdf: an 8-character context and a subkey id; the cluster key itself never keys
// a MAC directly, so another use of the key later gets a different subkey.
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "dpmfsAU1";
constexpr uint64_t kKdfProofSubkey = 1;
static_assert(kProofSize == crypto_auth_BYTES);
static_assert(kClusterKeySize == crypto_kdf_KEYBYTES);

template <class IO>
void Header(IO& io, uint32_t& magic, uint16_t& version, uint16_t& reserved) {
  io.U32("magic", magic);
  io.U16("version", version);
  io.U16("reserved", reserved);
}

template <class Message, class FieldsFn>
std::vector<uint8_t> Encode(uint32_t magic, Message& m, FieldsFn&& fields) {
  uint16_t version = kVersion, reserved = 0;
  ByteSizer sizer;
  Header(sizer, magic, version, reserved);
  fields(sizer, m);
  std::vector<uint8_t> out(sizer.size());
  ByteWriter w(out.data());
  Header(w, magic, version, reserved);
  fields(w, m);
  return out;
}

// Reads the header and the fields, then allows only zero bytes after them.
template <class Message, class FieldsFn>
Result<Message> Decode(std::span<const uint8_t> in, const char* name, uint32_t want_magic,
                       FieldsFn&& fields) {
  ByteReader r(in, name);
  uint32_t magic = 0;
  uint16_t version = 0, reserved = 0;
  Header(r, magic, version, reserved);
  if (r.ok() && magic != want_magic) {
    return Status::Corruption(std::string(name) + " is not a dpmfs handshake message (bad magic)");
  }
  if (r.ok() && version != kVersion) {
    return Status::NotSupported(std::string(name) + " has handshake version " +
                                std::to_string(version) + "; this dpmfs speaks " +
                                std::to_string(kVersion));
  }
  r.Require(reserved == 0, "reserved", "must be 0");
  Message m;
  fields(r, m);
  if (!r.ok()) return Status::Corruption(r.Finish().message());
  size_t consumed = in.size() - r.left();
  if (!std::all_of(in.begin() + static_cast<ptrdiff_t>(consumed), in.end(),
                   [](uint8_t b) { return b == 0; })) {
    return Status::Corruption(std::string(name) + " is followed by non-zero bytes");
  }
  return m;
}

auto HelloFields = [](auto& io, Hello& m) { io.Fixed("nonce", m.nonce); };
auto ChallengeFields = [](auto& io, Challenge& m) {
  io.Fixed("nonce", m.nonce);
  io.Fixed("proof", m.proof);
};

void AppendString(std::vector<uint8_t>& t, std::string_view s) {
  uint32_t n = static_cast<uint32_t>(s.size());
  for (int i = 0; i < 4; ++i) t.push_back(static_cast<uint8_t>(n >> (8 * i)));
  t.insert(t.end(), s.begin(), s.end());
}

// The transcript a proof covers. Every variable-size piece is length-prefixed so two
// different transcripts can never be the same bytes.
Proof MakeProof(const ClusterKey& key, std::string_view role, const Nonce& ni, const Nonce& nt,
                const ConnectionParams& conn, std::span<const uint8_t> app_data,
                std::span<const uint8_t> credential) {
  InitCrypto();
  std::vector<uint8_t> t;
  t.reserve(160 + app_data.size());
  AppendString(t, role);
  t.push_back(static_cast<uint8_t>(kVersion));
  t.push_back(static_cast<uint8_t>(kVersion >> 8));
  t.insert(t.end(), ni.begin(), ni.end());
  t.insert(t.end(), nt.begin(), nt.end());
  AppendString(t, BackendName(conn.backend));
  AppendString(t, conn.initiator);
  AppendString(t, conn.target);
  AppendString(t, std::string_view(reinterpret_cast<const char*>(app_data.data()),
                                   app_data.size()));
  // The credential too: lifted off one handshake it proves nothing on another.
  AppendString(t, std::string_view(reinterpret_cast<const char*>(credential.data()),
                                   credential.size()));
  std::array<uint8_t, crypto_auth_KEYBYTES> subkey{};
  static_assert(crypto_auth_KEYBYTES >= crypto_kdf_BYTES_MIN &&
                crypto_auth_KEYBYTES <= crypto_kdf_BYTES_MAX);
  crypto_kdf_derive_from_key(subkey.data(), subkey.size(), kKdfProofSubkey, kKdfContext,
                             key.bytes().data());
  Proof p{};
  crypto_auth(p.data(), t.data(), t.size(), subkey.data());
  sodium_memzero(subkey.data(), subkey.size());
  return p;
}

}  // namespace

std::vector<uint8_t> EncodeHello(const Hello& m) {
  return Encode(kHelloMagic, const_cast<Hello&>(m), HelloFields);
}
std::vector<uint8_t> EncodeChallenge(const Challenge& m) {
  return Encode(kChallengeMagic, const_cast<Challenge&>(m), ChallengeFields);
}
std::vector<uint8_t> EncodeAuthRequest(const AuthRequest& m) {
  AuthRequest& mm = const_cast<AuthRequest&>(m);
  return Encode(kAuthMagic, mm, [](auto& io, AuthRequest& a) {
    io.Fixed("proof", a.proof);
    std::string s(a.app_data.begin(), a.app_data.end());
    io.Bytes("app_data", s, kMaxConnectPrivateData);
    // Left out when empty: an AUTH without one is the same bytes as before credentials.
    if (!a.credential.empty()) {
      std::string c(a.credential.begin(), a.credential.end());
      io.Bytes("credential", c, kMaxCredential);
    }
  });
}

Result<Hello> DecodeHello(std::span<const uint8_t> in) {
  return Decode<Hello>(in, "Hello", kHelloMagic, HelloFields);
}
Result<Challenge> DecodeChallenge(std::span<const uint8_t> in) {
  return Decode<Challenge>(in, "Challenge", kChallengeMagic, ChallengeFields);
}
Result<AuthRequest> DecodeAuthRequest(std::span<const uint8_t> in) {
  return Decode<AuthRequest>(in, "AuthRequest", kAuthMagic, [](ByteReader& r, AuthRequest& a) {
    r.Fixed("proof", a.proof);
    std::string s;
    r.Bytes("app_data", s, kMaxConnectPrivateData);
    a.app_data.assign(s.begin(), s.end());
    // Optional: a message that ends after app_data (or is zero-padded, as verbs pads
    // private data, by fewer bytes than a length) carries no credential.
    if (r.left() >= 4) {
      std::string c;
      r.Bytes("credential", c, kMaxCredential);
      a.credential.assign(c.begin(), c.end());
    }
  });
}

Nonce FreshNonce() {
  InitCrypto();
  Nonce n;
  randombytes_buf(n.data(), n.size());
  return n;
}

Proof TargetProof(const ClusterKey& key, const Nonce& initiator_nonce, const Nonce& target_nonce,
                  const ConnectionParams& conn) {
  return MakeProof(key, "dpmfs target", initiator_nonce, target_nonce, conn, {}, {});
}

Proof InitiatorProof(const ClusterKey& key, const Nonce& initiator_nonce,
                     const Nonce& target_nonce, const ConnectionParams& conn,
                     std::span<const uint8_t> app_data,
                     std::span<const uint8_t> credential) {
  return MakeProof(key, "dpmfs initiator", initiator_nonce, target_nonce, conn, app_data,
                   credential);
}

bool ProofsEqual(const Proof& a, const Proof& b) {
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string AuthFailureGate::HostOf(const std::string& peer) {
  // "ip:port" or "[v6]:port": the address without the port.
  size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

bool AuthFailureGate::Admit(const std::string& peer) {
  const std::string host = HostOf(peer);
  MutexLock lock(mu_);
  auto it = windows_.find(host);
  if (it == windows_.end()) return true;
  if (Clock::now() - it->second.start >= kWindow) {
    windows_.erase(it);
    return true;
  }
  if (it->second.failures < kMaxFailures) return true;
  refused_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void AuthFailureGate::Failed(const std::string& peer, std::string_view backend,
                             std::string_view why) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  const std::string host = HostOf(peer);
  const Clock::time_point now = Clock::now();
  int count;
  {
    MutexLock lock(mu_);
    auto it = windows_.find(host);
    if (it != windows_.end() && now - it->second.start >= kWindow) {
      windows_.erase(it);
      it = windows_.end();
    }
    if (it == windows_.end()) {
      if (windows_.size() >= kMaxTracked) {
        auto oldest = std::min_element(windows_.begin(), windows_.end(), [](auto& a, auto& b) {
          return a.second.start < b.second.start;
        });
        windows_.erase(oldest);
      }
      it = windows_.emplace(host, Window{now, 0}).first;
    }
    count = ++it->second.failures;
  }
  if (count < kMaxFailures) {
    spdlog::warn("{} transport: authentication of {} failed: {} ({} failures in total)", backend,
                 peer, why, failures());
  } else if (count == kMaxFailures) {
    spdlog::warn("{} transport: authentication of {} failed: {}; {} failures from {} within {} s: "
                 "its connections are refused unheard until the window ends",
                 backend, peer, why, count, host, kWindow.count());
  }
}

}  // namespace dpmfs::transport::auth
