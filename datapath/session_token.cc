#include "datapath/session_token.h"

#include <sodium.h>

#include <algorithm>
#include <ctime>

#include "common/byte_codec.h"

namespace dpmfs::datapath {
namespace {

using codec::ByteReader;
using codec::ByteSizer;
using codec::ByteWriter;

// Its own subkey (not the handshake's, "dpmfsAU1"): a token MAC can never stand in for a
// handshake proof or the other way round.
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "dpmfsTK1";
constexpr uint64_t kKdfTokenSubkey = 1;
static_assert(kSessionTokenMacSize >= crypto_generichash_BYTES_MIN);
static_assert(kClusterKeySize == crypto_kdf_KEYBYTES);

using Mac = std::array<uint8_t, kSessionTokenMacSize>;

template <class IO>
void Fields(IO& io, SessionToken& t, uint16_t& version, uint16_t& reserved) {
  uint32_t magic = kSessionTokenMagic;
  io.U32("magic", magic);
  io.Require(magic == kSessionTokenMagic, "magic", "is not a dpmfs session token's");
  io.U16("version", version);
  io.Require(version == kSessionTokenVersion, "version", "is not 1");
  io.U16("reserved", reserved);
  io.Require(reserved == 0, "reserved", "must be 0");
  io.U64("session", t.session);
  io.I64("issued_ms", t.issued_ms);
  io.I64("expires_ms", t.expires_ms);
  io.U64("epoch", t.epoch);
  io.Bytes("client", t.client, kMaxTokenClientName);
}

Mac ComputeMac(const ClusterKey& key, std::span<const uint8_t> body) {
  InitCrypto();
  std::array<uint8_t, crypto_generichash_KEYBYTES> subkey{};
  crypto_kdf_derive_from_key(subkey.data(), subkey.size(), kKdfTokenSubkey, kKdfContext,
                             key.bytes().data());
  Mac mac{};
  crypto_generichash(mac.data(), mac.size(), body.data(), body.size(), subkey.data(),
                     subkey.size());
  sodium_memzero(subkey.data(), subkey.size());
  return mac;
}

// The token's fields, and where its MAC starts, from untrusted bytes.
Result<SessionToken> DecodeBody(std::span<const uint8_t> bytes, size_t* body_size) {
  if (bytes.size() > kMaxSessionTokenSize) {
    return Status::InvalidArgument("session token is " + std::to_string(bytes.size()) +
                                   " bytes, more than a token's " +
                                   std::to_string(kMaxSessionTokenSize));
  }
  if (bytes.size() < kSessionTokenMacSize) {
    return Status::InvalidArgument("session token is truncated (" +
                                   std::to_string(bytes.size()) + " bytes)");
  }
  *body_size = bytes.size() - kSessionTokenMacSize;
  ByteReader r(bytes.first(*body_size), "SessionToken");
  SessionToken t;
  uint16_t version = 0, reserved = 0;
  Fields(r, t, version, reserved);
  DPMFS_RETURN_IF_ERROR(r.Finish());
  return t;
}

}  // namespace

Status StaleEpochStatus(uint64_t token_epoch, uint64_t fence) {
  return Status::PermissionDenied(
      std::string(kStaleEpochRefusal) + " " + std::to_string(token_epoch) +
      ", the cluster is at " + std::to_string(fence) +
      ": this client's session token predates the cluster map's last change of the write "
      "set; it must fetch a new token and map before it writes here");
}

bool IsStaleEpoch(const Status& st) {
  // Anywhere in the message: the transport and the connection pool put context in front.
  return !st.ok() && st.message().find(std::string(kStaleEpochRefusal) + " ") != std::string::npos;
}

int64_t UnixMs() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

std::vector<uint8_t> IssueSessionToken(const ClusterKey& key, SessionToken t) {
  if (t.client.size() > kMaxTokenClientName) t.client.resize(kMaxTokenClientName);
  uint16_t version = kSessionTokenVersion, reserved = 0;
  ByteSizer sizer;
  Fields(sizer, t, version, reserved);
  std::vector<uint8_t> out(sizer.size() + kSessionTokenMacSize);
  ByteWriter w(out.data());
  Fields(w, t, version, reserved);
  Mac mac = ComputeMac(key, {out.data(), sizer.size()});
  std::copy(mac.begin(), mac.end(), out.begin() + static_cast<ptrdiff_t>(sizer.size()));
  return out;
}

Result<SessionToken> DecodeSessionToken(std::span<const uint8_t> bytes) {
  size_t body = 0;
  return DecodeBody(bytes, &body);
}

Result<SessionToken> VerifySessionToken(const ClusterKey& key, std::span<const uint8_t> bytes,
                                        int64_t now_ms) {
  if (bytes.empty()) {
    return Status::PermissionDenied(
        "no session token: a data server grants memory only to a session the metadata server "
        "vouches for (a client must register with the metadata server first)");
  }
  size_t body = 0;
  Result<SessionToken> t = DecodeBody(bytes, &body);
  if (!t.ok()) return Status::PermissionDenied("malformed session token: " + t.status().message());
  Mac want = ComputeMac(key, bytes.first(body));
  if (crypto_verify_16(want.data(), bytes.data() + body) != 0) {
    return Status::PermissionDenied("session token of session " + std::to_string(t->session) +
                                    " does not carry the cluster key's MAC (forged or altered)");
  }
  if (t->expires_ms <= now_ms) {
    return Status::PermissionDenied(
        "session token of session " + std::to_string(t->session) + " (" + t->client +
        ") expired " + std::to_string(now_ms - t->expires_ms) +
        " ms ago (its lease was not renewed, or the clocks of the metadata server and this data "
        "server disagree: keep them in step with NTP)");
  }
  return t;
}

std::shared_ptr<SessionTokenSource> SessionTokenSource::SelfIssued(
    std::shared_ptr<const ClusterKey> key, std::string client, std::chrono::milliseconds lifetime) {
  auto s = std::make_shared<SessionTokenSource>();
  s->key_ = std::move(key);
  s->client_ = std::move(client);
  s->lifetime_ = lifetime;
  return s;
}

Status SessionTokenSource::Set(std::vector<uint8_t> bytes) {
  DPMFS_ASSIGN_OR_RETURN(SessionToken t, DecodeSessionToken(bytes));
  MutexLock lock(mu_);
  current_ = Current{std::move(bytes), t.issued_ms, t.expires_ms, t.epoch};
  epoch_.store(t.epoch, std::memory_order_release);
  return Status::OK();
}

SessionTokenSource::Current SessionTokenSource::Get() {
  MutexLock lock(mu_);
  if (key_ != nullptr) {
    const int64_t now = UnixMs();
    if (current_.bytes.empty() || current_.epoch < self_epoch_ ||
        now >= TokenRefreshAtMs(current_.issued_ms, current_.expires_ms)) {
      SessionToken t;
      t.client = client_;
      t.issued_ms = now;
      t.expires_ms = now + lifetime_.count();
      t.epoch = self_epoch_;
      current_ = Current{IssueSessionToken(*key_, t), t.issued_ms, t.expires_ms, t.epoch};
      epoch_.store(t.epoch, std::memory_order_release);
    }
  }
  return current_;
}

void SessionTokenSource::RaiseEpoch(uint64_t epoch) {
  MutexLock lock(mu_);
  self_epoch_ = std::max(self_epoch_, epoch);
}

int64_t TokenRefreshAtMs(int64_t issued_ms, int64_t expires_ms) {
  return expires_ms - (expires_ms - issued_ms) / 3;
}

}  // namespace dpmfs::datapath
