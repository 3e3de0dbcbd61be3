// The client side of a data server: connects one QP with a chosen persist method and
// makes writes into the server's pool durable before reporting them done; reads are
// one-sided READs. Offsets are relative to the pool's data area.
//
// This is the low-level, one-connection interface: the file system uses the transfer
// API above it (datapath/transfer.h), which hides slots; tools that measure or torture
// one connection at a fixed queue depth (dpmfs-bench persist, dpmfs-powerloss) use it
// directly. What each persist method posts is its strategy's (datapath/persist/).
//
// Two ways to use it:
//   - synchronous: Write(offset, data, len) / Read(offset, data, len);
//   - pipelined (queue depth > 1): fill slot_buffer(slot), Submit(slot, offset, len)
//     (or SubmitRead(slot, offset, len), whose data lands in slot_buffer(slot)), and
//     Reap() the slots that are done. A slot is free again once reaped. Writes and
//     reads may be mixed, but a reply method (imm, rpc) waits best on one kind at a time.
//
// Nothing here allocates per operation once connected (the vectors passed to Reap and
// Poll keep their capacity when the caller reuses them).
//
// Thread-safety: none; one thread per DataClient (open one per thread).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "common/endpoint.h"
#include "common/mutex.h"
#include "common/status.h"
#include "datapath/data_protocol.h"
#include "datapath/persist_method.h"
#include "datapath/session_token.h"
#include "transport/send_queue_credits.h"
#include "transport/transport.h"

namespace dpmfs::datapath {

struct DataClientOptions {
  PersistMethod method = PersistMethod::kRead;
  uint32_t queue_depth = 16;          // slots: writes in flight at once
  uint32_t max_io_size = 1u << 20;    // bytes per write / read
  transport::Duration timeout = std::chrono::seconds(5);  // connect and each wait
  // The session token presented at connect (session_token.h): a data server that checks
  // tokens refuses a connection without a valid one. Null: none presented.
  std::shared_ptr<SessionTokenSource> token;
};

struct SlotResult {
  uint32_t slot = 0;
  Status status;  // OK: durable under the method (none: merely acknowledged)
};

namespace persist {
class PersistStrategy;
struct WriteChain;
}  // namespace persist

class DataClient {
 public:
  static Result<std::unique_ptr<DataClient>> Connect(transport::Device& device,
                                                     const Endpoint& server,
                                                     const DataClientOptions& options);
  ~DataClient();

  // Bytes a connection with these options registers (pins) on the client.
  static uint64_t RegisteredBytes(const DataClientOptions& options);

  const ServerInfo& server() const { return server_; }
  uint64_t data_size() const { return server_.pool.length; }
  PersistMethod method() const { return options_.method; }
  // The token this connection was made with is in its last third: replace the
  // connection (the data server revokes it when the token expires). Never without one.
  bool token_due() const { return token_refresh_at_ms_ != 0 && UnixMs() >= token_refresh_at_ms_; }
  uint32_t queue_depth() const { return options_.queue_depth; }

  // Registered buffer of `slot` (max_io_size bytes): put a write's data here.
  uint8_t* slot_buffer(uint32_t slot);
  // Starts a persistent write of the first `len` bytes of slot_buffer(slot) to pool
  // data offset `offset`. OutOfRange if [offset, offset+len) leaves the data area;
  // FailedPrecondition if the slot is busy or the connection failed.
  Status Submit(uint32_t slot, uint64_t offset, uint32_t len);
  // Waits up to the timeout for at least one submitted write to finish; appends the
  // finished slots to `done`. TimedOut if none did; Unavailable once the QP failed
  // (failed slots are reported in `done` with their error first).
  Status Reap(std::vector<SlotResult>* done);
  // Appends the slots finished by now to `done`, without waiting. Unavailable once the
  // QP failed.
  Status Poll(std::vector<SlotResult>* done);
  // Starts a one-sided READ of [offset, offset+len) into slot_buffer(slot); Reap reports
  // the slot when the data is there. Same errors as Submit.
  Status SubmitRead(uint32_t slot, uint64_t offset, uint32_t len);
  size_t in_flight() const { return in_flight_; }

  // Copy + Submit + wait (queue depth 1 use).
  Status Write(uint64_t offset, const void* data, uint32_t len);
  // Makes [offset, offset+len) of the pool read as zeros, durably, with no data on the
  // wire (the server zeroes it: kDescriptorZero). Only with the rpc method
  // (FailedPrecondition otherwise); queue depth 1 use, like Write.
  Status Zero(uint64_t offset, uint32_t len);
  // One-sided READ of [offset, offset+len) into `data`.
  Status Read(uint64_t offset, void* data, uint32_t len);

 private:
  DataClient(transport::Device& device, const DataClientOptions& options);
  Status Setup();
  // Submit; `flags` (kDescriptorZero) only with the rpc method.
  Status SubmitWithFlags(uint32_t slot, uint64_t offset, uint32_t len, uint32_t flags);
  Status CheckRange(uint64_t offset, uint64_t len) const;
  void Finish(uint32_t slot, Status st, std::vector<SlotResult>* done);
  void HandleCompletion(const transport::Completion& c, bool recv_side,
                        std::vector<SlotResult>* done);
  Status FailAll(const Status& st, std::vector<SlotResult>* done);
  // The busy slot's write as its persist strategy sees it.
  persist::WriteChain Chain(uint32_t slot) const;
  // Handles whatever completions are there now, without waiting.
  void PollCompletions(bool recv_too, std::vector<SlotResult>* done);
  // Posts a chain once the send queue has room for it, reaping send completions
  // (into early_done_) while it waits.
  Status PostChain(transport::WorkRequest* wrs, uint32_t n);

  // ---- replies read by the caller (imm, rpc on soft: caller_reads_replies_) ----
  // The server's replies reach OnReply (QueuePairOptions::on_recv), on this caller's
  // thread while it reads the connection itself (DriveReceives) or on the transport's
  // thread otherwise; the caller takes them from replies_. Spares the transport thread's
  // wake-up per reply, as caller-driven reception does for the READ of `read`.
  void OnReply(const transport::Completion& c);
  // Send completions (stashed while deciding whether to stop reading) or replies.
  size_t TakeSends(transport::Completion* out, size_t max);
  size_t TakeReplies(transport::Completion* out, size_t max);
  // Whether a completion of either kind is there (polls the send queue into the stash).
  bool HaveCompletions();
  // Reads the connection until a completion is there or `timeout` passes, polling for
  // the first `poll_first`. Never calls WaitSend: the transport's thread is parked.
  void WaitCompletions(transport::Duration timeout, transport::Duration poll_first);

  struct Slot {
    bool busy = false;
    bool read = false;  // a SubmitRead, not a write
    uint64_t offset = 0;
    uint32_t len = 0;
    uint32_t flags = 0;  // kDescriptorZero or 0
  };

  transport::Device& device_;
  DataClientOptions options_;
  const persist::PersistStrategy* strategy_;
  ServerInfo server_;
  std::unique_ptr<transport::QueuePair> qp_;
  // One registered block: slot data buffers, then per-slot scratch (READ targets,
  // imm descriptors, rpc headers, reply receive buffers).
  std::vector<uint8_t> memory_;
  transport::MemoryRegion mr_;
  size_t slot_stride_ = 0;
  std::vector<Slot> slots_;
  size_t in_flight_ = 0;
  size_t reads_in_flight_ = 0;
  std::unique_ptr<SendQueueCredits> credits_;
  std::vector<SlotResult> early_done_;  // finished while Submit waited for credits
  std::vector<SlotResult> sync_done_;
  bool failed_ = false;
  Status failure_;

  int64_t token_refresh_at_ms_ = 0;  // Unix ms; 0: no token, never due

  bool caller_reads_replies_ = false;
  Mutex replies_mu_;
  std::condition_variable replies_cv_;
  std::vector<transport::Completion> replies_ GUARDED_BY(replies_mu_);  // capacity kept
  static constexpr size_t kStash = 32;
  transport::Completion send_stash_[kStash];
  size_t stash_begin_ = 0, stash_end_ = 0;
};

}  // namespace dpmfs::datapath
