// Session tokens: the metadata server's word that a client session is alive, which a
// data server checks before it registers any memory for a connection
// (docs/security.md, "Tokens").
//
// A token names a session (its id and the client's name), when it was issued and when
// it expires (Unix milliseconds: data servers and the metadata server are different
// hosts, so the wall clock, kept by NTP, is the only clock they share) and an epoch
// (the cluster map's when the token was issued: a data server refuses a token below its
// fence, docs/replication.md "Fencing"). It is MACed
// with crypto_generichash (BLAKE2b) keyed by a subkey of the cluster key
// (crypto_kdf, context "dpmfsTK1"): only a holder of the key can make one, and a data
// server, which holds it too, checks it without asking anyone.
//
// The metadata server issues a token lasting one lease whenever it renews a lease
// (heartbeat; a client asks for one right after it registers). A token is not renewed
// on a connection: a data server revokes a connection's registration when its token
// expires, and clients replace connections whose token is in its last third
// (DataClient::token_due) by new ones carrying the current token. An evicted session
// gets no new token, so its access ends within one lease of its last renewal.
//
// Wire layout (little-endian, common/byte_codec.h), ≤ transport::kMaxCredential bytes:
//   0 magic u32 0x4B4F5444 ("DTOK"), 4 version u16 (1), 6 reserved u16 (0),
//   8 session u64, 16 issued_ms i64, 24 expires_ms i64, 32 epoch u64,
//   40 client: u32 length (≤ 40) + bytes, then mac [16] over every byte before it.
//
// Thread-safety: the functions are pure; SessionTokenSource is thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/cluster_key.h"
#include "common/mutex.h"
#include "common/status.h"

namespace dpmfs::datapath {

inline constexpr uint32_t kSessionTokenMagic = 0x4B4F5444;  // "DTOK"
inline constexpr uint16_t kSessionTokenVersion = 1;
inline constexpr size_t kSessionTokenMacSize = 16;  // crypto_generichash_BYTES_MIN
inline constexpr size_t kMaxTokenClientName = 40;   // longer names are cut
inline constexpr size_t kMaxSessionTokenSize = 8 + 32 + 4 + kMaxTokenClientName + kSessionTokenMacSize;

// Lifetime of the tokens a key holder issues itself (the metadata server's own
// connections, tools on a cluster host): its connections are replaced a few times an
// hour, and a token copied off the wire is good for minutes, not for ever.
inline constexpr std::chrono::milliseconds kSelfIssuedTokenLifetime{10 * 60 * 1000};

struct SessionToken {
  uint64_t session = 0;
  std::string client;  // who the session belongs to, for log lines
  int64_t issued_ms = 0;   // Unix milliseconds
  int64_t expires_ms = 0;  // Unix milliseconds
  uint64_t epoch = 0;
};

// The word a data server's refusal of a token below its fence starts with: the reject
// reason is all a connecting client learns (the transport carries text), and a client
// must tell "my token is older than the cluster map" (get a fresh one, write again)
// from "the server is unreachable" (report it).
inline constexpr std::string_view kStaleEpochRefusal = "stale epoch";
// The refusal itself: PermissionDenied "stale epoch E, the cluster is at F: ...".
Status StaleEpochStatus(uint64_t token_epoch, uint64_t fence);
// Whether `st` (as any layer above the transport passes it on) is such a refusal.
bool IsStaleEpoch(const Status& st);

// Milliseconds since the Unix epoch (CLOCK_REALTIME): the clock tokens speak.
int64_t UnixMs();

// The encoded, MACed token. `t.client` is cut to kMaxTokenClientName bytes.
std::vector<uint8_t> IssueSessionToken(const ClusterKey& key, SessionToken t);
// Decodes without checking the MAC: what a client needs to know when to replace it.
Result<SessionToken> DecodeSessionToken(std::span<const uint8_t> bytes);
// What a data server does with the credential of a connection: decodes untrusted bytes,
// checks the MAC (constant time) and that the token has not expired at `now_ms`.
// PermissionDenied naming what is wrong (no token, forged or altered, expired and when).
Result<SessionToken> VerifySessionToken(const ClusterKey& key, std::span<const uint8_t> bytes,
                                        int64_t now_ms);

// Where a data client takes the token it presents when it connects. Either fed by the
// metadata server's replies (Set) or, for a key holder that vouches for itself (the
// metadata server's own connections, tools run on a cluster host), issuing its own
// when the current one enters its last third.
class SessionTokenSource {
 public:
  struct Current {
    std::vector<uint8_t> bytes;  // empty: no token yet
    int64_t issued_ms = 0;
    int64_t expires_ms = 0;
    uint64_t epoch = 0;
  };

  SessionTokenSource() = default;
  // Self-issuing: session 0, named `client`, lasting `lifetime`.
  static std::shared_ptr<SessionTokenSource> SelfIssued(std::shared_ptr<const ClusterKey> key,
                                                        std::string client,
                                                        std::chrono::milliseconds lifetime);

  // A token from the metadata server. InvalidArgument (and nothing changes) when the
  // bytes are no token.
  Status Set(std::vector<uint8_t> bytes) EXCLUDES(mu_);
  Current Get() EXCLUDES(mu_);
  // The epoch of the current token, without copying it (the write path asks it after
  // every replicated write: file_io.cc). 0 before the first token.
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
  // Self-issuing: tokens from now on carry `epoch` (the current one is replaced at the
  // next Get when it carries less). The metadata server raises its own source to an
  // epoch before it asks data servers to refuse the epochs below it. Never lowers.
  void RaiseEpoch(uint64_t epoch) EXCLUDES(mu_);

 private:
  Mutex mu_;
  Current current_ GUARDED_BY(mu_);
  std::shared_ptr<const ClusterKey> key_;  // set: self-issuing
  std::string client_;
  std::chrono::milliseconds lifetime_{0};
  uint64_t self_epoch_ GUARDED_BY(mu_) = 0;  // self-issuing: the epoch its tokens carry
  std::atomic<uint64_t> epoch_{0};           // current_'s epoch
};

// When a connection made with a token issued at `issued_ms` and expiring at `expires_ms`
// should be replaced: at the start of its last third, so that a renewed token (issued
// every third of a lease) is always there to replace it with.
int64_t TokenRefreshAtMs(int64_t issued_ms, int64_t expires_ms);

}  // namespace dpmfs::datapath
