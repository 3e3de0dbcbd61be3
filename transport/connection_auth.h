// Mutual challenge-response authentication of a connection, on the cluster key
// (common/cluster_key.h; the threat model and the message flow are in docs/security.md,
// the bytes in transport/README.md "Authentication"). Both transport backends run it inside
// their connection setup, before the application's connect request reaches its accept
// handler, so the metadata server's RPC port and every data server's port are covered by
// this one seam:
//
//   initiator  HELLO {nonce_i}                 ->  target
//   initiator  <- CHALLENGE {nonce_t, proof_t}      target
//   initiator  AUTH {proof_i, app request}     ->  target   (proof_i checked here)
//   initiator  <- ACCEPT {app reply} | REJECT       target
//
// A proof is crypto_auth (HMAC-SHA-512-256) under a subkey derived from the cluster key
// (crypto_kdf), over: a role label, the version, both nonces, the backend, both ends'
// addresses and, for proof_i, the application's request. Fresh nonces both ways make a
// recorded handshake useless on a new connection.
//
// Thread-safety: the codec and proof functions are pure; AuthFailureGate is thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/cluster_key.h"
#include "common/mutex.h"
#include "common/status.h"
#include "transport/transport.h"

namespace dpmfs::transport::auth {

inline constexpr uint32_t kHelloMagic = 0x4F4C4548;      // "HELO"
inline constexpr uint32_t kChallengeMagic = 0x4C4C4843;  // "CHLL"
inline constexpr uint32_t kAuthMagic = 0x48545541;       // "AUTH"
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kProofSize = 32;  // crypto_auth_BYTES
using Nonce = std::array<uint8_t, kNonceSize>;
using Proof = std::array<uint8_t, kProofSize>;

// Encoded sizes (fixed; AUTH's is its largest, with kMaxConnectPrivateData of request).
inline constexpr size_t kHelloSize = 4 + 2 + 2 + kNonceSize;                        // 40
inline constexpr size_t kChallengeSize = 4 + 2 + 2 + kNonceSize + kProofSize;       // 72
inline constexpr size_t kMaxAuthSize =
    4 + 2 + 2 + kProofSize + 4 + kMaxConnectPrivateData + 4 + kMaxCredential;

struct Hello {
  Nonce nonce{};
};
struct Challenge {
  Nonce nonce{};
  Proof proof{};
};
struct AuthRequest {
  Proof proof{};
  std::vector<uint8_t> app_data;  // the application's connect request (≤ 56 bytes)
  // QueuePairOptions::credential (≤ kMaxCredential bytes; empty when none): a data
  // client's session token. Optional on the wire, after app_data.
  std::vector<uint8_t> credential;
};

std::vector<uint8_t> EncodeHello(const Hello& m);
std::vector<uint8_t> EncodeChallenge(const Challenge& m);
std::vector<uint8_t> EncodeAuthRequest(const AuthRequest& m);
// Decoders take untrusted bytes. Trailing zero bytes are allowed (verbs pads private
// data); anything else wrong is Corruption (not a dpmfs handshake, truncated, reserved
// bits) or NotSupported (another version), naming the message and field.
Result<Hello> DecodeHello(std::span<const uint8_t> in);
Result<Challenge> DecodeChallenge(std::span<const uint8_t> in);
Result<AuthRequest> DecodeAuthRequest(std::span<const uint8_t> in);

Nonce FreshNonce();

// What a proof is bound to besides the nonces: the connection as both ends see it.
struct ConnectionParams {
  Backend backend = Backend::kSoft;
  std::string initiator;  // "ip:port" of the initiator's end
  std::string target;     // "ip:port" of the target's end
};

Proof TargetProof(const ClusterKey& key, const Nonce& initiator_nonce, const Nonce& target_nonce,
                  const ConnectionParams& conn);
Proof InitiatorProof(const ClusterKey& key, const Nonce& initiator_nonce,
                     const Nonce& target_nonce, const ConnectionParams& conn,
                     std::span<const uint8_t> app_data,
                     std::span<const uint8_t> credential = {});
// Constant-time comparison.
bool ProofsEqual(const Proof& a, const Proof& b);

// Failed handshakes, per peer address (without the port): each is logged with the
// address and counted; an address with kMaxFailures in a window of kWindow is refused
// without a try (and without a log line per refusal) until the window ends. The table
// holds at most kMaxTracked addresses; the oldest windows make room.
class AuthFailureGate {
 public:
  static constexpr int kMaxFailures = 10;
  static constexpr std::chrono::seconds kWindow{10};
  static constexpr size_t kMaxTracked = 4096;

  // Whether a peer at `peer` ("ip:port") may attempt a handshake now.
  bool Admit(const std::string& peer);
  // Logs (at most kMaxFailures lines per address and window) and counts one failure.
  void Failed(const std::string& peer, std::string_view backend, std::string_view why);

  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Window {
    Clock::time_point start;
    int failures = 0;
  };
  static std::string HostOf(const std::string& peer);

  Mutex mu_;
  std::unordered_map<std::string, Window> windows_ GUARDED_BY(mu_);
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> refused_{0};
};

}  // namespace dpmfs::transport::auth
