#include "datapath/transfer.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include <spdlog/spdlog.h>

namespace dpmfs::datapath {

// One data server's share of a call: its connection, where its next submission starts,
// and what each busy slot carries.
struct DataTransfer::Lane {
  struct Job {
    size_t piece = 0;
    uint64_t offset = 0;  // within the piece
    uint32_t length = 0;
  };
  DataClientPool::Lease lease;
  bool used = false;     // the call has pieces on this server
  bool active = false;   // still submitting or waiting
  bool finished = false; // the round moved every piece of this lane
  bool failure_named = false;  // `failure` names the server already
  int attempt = 0;
  size_t piece = 0;      // next piece to submit (of this server), or pieces.size()
  uint64_t offset = 0;   // of it
  uint32_t in_flight = 0;
  Status failure;
  std::vector<Job> jobs;         // per slot
  std::vector<uint32_t> free;    // free slots
};

// Per-thread working space of calls: kept between calls so that a call allocates nothing
// once the thread has made one of its size.
struct DataTransfer::Scratch {
  std::vector<Lane> lanes;
  std::vector<SlotResult> done;
  // Reads: which copy of each piece this round reads (kDone: none, it is read), and how
  // many copies it has tried.
  std::vector<uint8_t> copy;
  std::vector<uint8_t> tried;
};

namespace {

template <class Piece>
constexpr bool kIsWrite = std::is_same_v<Piece, WritePiece>;

constexpr uint8_t kDone = 0xff;

template <class Piece>
PieceLocation CopyOf(const Piece& p, uint32_t k) {
  return k == 0 ? p.where : p.more.at[k - 1];
}

// Where a call moves `piece` on `server`, if it does: a write to every copy, a read from
// the copy chosen for this round (`copy`).
template <class Piece>
bool LocationOn(const Piece& p, size_t index, uint32_t server, const std::vector<uint8_t>& copy,
                uint64_t* pool_offset) {
  if (p.length == 0) return false;
  if constexpr (kIsWrite<Piece>) {
    (void)index;
    (void)copy;
    for (uint32_t k = 0; k <= p.more.count; ++k) {
      const PieceLocation at = CopyOf(p, k);
      if (at.server == server) {
        *pool_offset = at.pool_offset;
        return true;
      }
    }
    return false;
  } else {
    if (copy[index] == kDone) return false;
    const PieceLocation at = CopyOf(p, copy[index]);
    *pool_offset = at.pool_offset;
    return at.server == server;
  }
}

// The next piece at or after `from` that the call moves on `server`.
template <class Piece>
size_t NextPiece(std::span<const Piece> pieces, size_t from, uint32_t server,
                 const std::vector<uint8_t>& copy) {
  uint64_t unused;
  while (from < pieces.size() && !LocationOn(pieces[from], from, server, copy, &unused)) ++from;
  return from;
}

// The copy of a piece a read tries first: spread over the copies by offset (per MiB), so
// that the readers of a file load every server that holds it.
uint8_t FirstCopy(const ReadPiece& p) {
  return static_cast<uint8_t>(((p.where.pool_offset >> 20) + p.where.server) %
                              (p.more.count + 1));
}

}  // namespace

DataTransfer::DataTransfer(transport::Device& device, std::vector<Endpoint> servers,
                           const DataTransferOptions& options)
    : options_(options),
      pool_(device, std::move(servers),
            DataClientPoolOptions{options.client, options.max_idle_per_server, options.expect}) {}

DataTransfer::~DataTransfer() = default;

Status DataTransfer::Probe(uint32_t server) {
  auto lease = pool_.Acquire(server);
  return lease.ok() ? Status::OK() : lease.status();
}

DataTransfer::Scratch& DataTransfer::ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

Status DataTransfer::Write(std::span<const WritePiece> pieces) {
  Scratch& sc = ThreadScratch();
  return Run(pieces, sc);
}

Status DataTransfer::Read(std::span<const ReadPiece> pieces) {
  Scratch& sc = ThreadScratch();
  sc.copy.resize(pieces.size());
  sc.tried.assign(pieces.size(), 1);
  bool replicated = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].more.count >= kMaxReplicas) {
      return Status::InvalidArgument("a piece names " + std::to_string(pieces[i].more.count + 1) +
                                     " copies; at most " + std::to_string(kMaxReplicas));
    }
    sc.copy[i] = FirstCopy(pieces[i]);
    replicated |= pieces[i].more.count > 0;
  }
  Status st = Run(pieces, sc);
  // Fail-over: the pieces whose server failed go again to their next copy; the others
  // are read (a lane that did not fail moved all its pieces).
  while (!st.ok() && replicated) {
    // A piece whose lane finished is read; one whose lane failed moves to its next copy
    // (until every copy was tried); one whose lane never ran (the call stopped early)
    // stays on its copy.
    bool moved = false;
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (sc.copy[i] == kDone || pieces[i].length == 0) continue;
      const uint32_t server = CopyOf(pieces[i], sc.copy[i]).server;
      if (server >= sc.lanes.size()) return st;
      const Lane& lane = sc.lanes[server];
      if (lane.finished) {
        sc.copy[i] = kDone;
      } else if (!lane.failure.ok()) {
        if (sc.tried[i] > pieces[i].more.count) return st;  // every copy failed
        sc.copy[i] = static_cast<uint8_t>((sc.copy[i] + 1) % (pieces[i].more.count + 1));
        ++sc.tried[i];
        moved = true;
      }
    }
    if (!moved) break;
    Status retry = Run(pieces, sc);
    if (retry.ok()) {
      spdlog::debug("read failed over to other copies after: {}", st.ToString());
    }
    st = retry;
  }
  return st;
}

template <class Piece>
Status DataTransfer::Run(std::span<const Piece> pieces, Scratch& sc) {
  const uint32_t n_servers = static_cast<uint32_t>(pool_.num_servers());
  if (sc.lanes.size() < n_servers) sc.lanes.resize(n_servers);
  for (uint32_t s = 0; s < n_servers; ++s) {
    Lane& lane = sc.lanes[s];
    lane.used = lane.active = lane.finished = lane.failure_named = false;
    lane.attempt = 0;
    lane.failure = Status::OK();
  }
  bool any = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    if (p.more.count >= kMaxReplicas) {
      return Status::InvalidArgument("a piece names " + std::to_string(p.more.count + 1) +
                                     " copies; at most " + std::to_string(kMaxReplicas));
    }
    for (uint32_t k = 0; k <= p.more.count; ++k) {
      const uint32_t server = CopyOf(p, k).server;
      if (server >= n_servers) {
        return Status::InvalidArgument("no data server " + std::to_string(server) +
                                       " (the cluster has " + std::to_string(n_servers) + ")");
      }
      for (uint32_t j = 0; j < k; ++j) {
        if (CopyOf(p, j).server == server) {
          return Status::InvalidArgument("a piece names data server " + std::to_string(server) +
                                         " for two of its copies");
        }
      }
    }
    if (p.length == 0) continue;
    if constexpr (kIsWrite<Piece>) {
      for (uint32_t k = 0; k <= p.more.count; ++k) sc.lanes[CopyOf(p, k).server].used = true;
      any = true;
    } else {
      if (sc.copy[i] == kDone) continue;
      sc.lanes[CopyOf(p, sc.copy[i]).server].used = true;
      any = true;
    }
  }
  if (!any) return Status::OK();
  const uint32_t max_io = options_.client.max_io_size;

  // Takes a connection for a lane and points it at its first piece. `wait`: wait for
  // registrable memory (DataClientPool::Acquire) rather than fail with ResourceExhausted.
  auto start_lane = [&](uint32_t s, bool wait) -> Status {
    Lane& lane = sc.lanes[s];
    auto lease = pool_.Acquire(s, wait);
    if (!lease.ok()) return lease.status();
    lane.lease = std::move(lease).value();
    const uint32_t qd = lane.lease->queue_depth();
    lane.jobs.resize(qd);
    sc.done.reserve(qd);  // a reap returns at most every slot
    lane.free.clear();
    for (uint32_t slot = qd; slot-- > 0;) lane.free.push_back(slot);
    lane.piece = NextPiece(pieces, 0, s, sc.copy);
    lane.offset = 0;
    lane.in_flight = 0;
    lane.failure = Status::OK();
    lane.active = true;
    return Status::OK();
  };
  auto fail_lane = [&](Lane& lane, const Status& st) {
    if (lane.failure.ok()) lane.failure = st;
    lane.active = false;
    lane.lease.MarkBroken();
  };
  // Submits the lane's next pieces into its free slots.
  auto fill = [&](uint32_t s) {
    Lane& lane = sc.lanes[s];
    DataClient& client = *lane.lease;
    while (lane.active && !lane.free.empty() && lane.piece < pieces.size()) {
      const Piece& p = pieces[lane.piece];
      const uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(max_io, p.length - lane.offset));
      const uint32_t slot = lane.free.back();
      uint64_t base = 0;
      (void)LocationOn(p, lane.piece, s, sc.copy, &base);  // true: NextPiece chose it
      const uint64_t at = base + lane.offset;
      Status st;
      if constexpr (kIsWrite<Piece>) {
        uint8_t* buf = client.slot_buffer(slot);
        if (p.source == nullptr) {
          std::memset(buf, 0, len);
        } else {
          std::memcpy(buf, p.source + lane.offset, len);
        }
        st = client.Submit(slot, at, len);
      } else {
        st = client.SubmitRead(slot, at, len);
      }
      if (!st.ok()) {
        fail_lane(lane, st);
        return;
      }
      lane.free.pop_back();
      lane.jobs[slot] = Lane::Job{lane.piece, lane.offset, len};
      ++lane.in_flight;
      lane.offset += len;
      if (lane.offset == p.length) {
        lane.piece = NextPiece(pieces, lane.piece + 1, s, sc.copy);
        lane.offset = 0;
      }
    }
  };
  // Takes the lane's finished slots from sc.done.
  auto finish = [&](uint32_t s) {
    Lane& lane = sc.lanes[s];
    DataClient& client = *lane.lease;
    for (const SlotResult& r : sc.done) {
      if (r.slot >= lane.jobs.size()) continue;
      if (!r.status.ok()) {
        fail_lane(lane, r.status);
        continue;
      }
      --lane.in_flight;
      lane.free.push_back(r.slot);
      if constexpr (!kIsWrite<Piece>) {
        const Lane::Job& job = lane.jobs[r.slot];
        std::memcpy(pieces[job.piece].destination + job.offset, client.slot_buffer(r.slot),
                    job.length);
      }
    }
    sc.done.clear();
    if (lane.active && lane.in_flight == 0 && lane.piece >= pieces.size()) lane.active = false;
  };
  // Runs every active lane to its end: all are posted to before any is waited on.
  auto drive = [&] {
    for (uint32_t s = 0; s < n_servers; ++s) {
      if (sc.lanes[s].active) fill(s);
    }
    uint32_t turn = 0;
    while (true) {
      uint32_t active = 0, last = 0;
      for (uint32_t s = 0; s < n_servers; ++s) {
        if (sc.lanes[s].active) {
          ++active;
          last = s;
        }
      }
      if (active == 0) return;
      if (active > 1) {
        // Take whatever any lane has finished; wait only when none has.
        bool progress = false;
        for (uint32_t s = 0; s < n_servers; ++s) {
          Lane& lane = sc.lanes[s];
          if (!lane.active) continue;
          sc.done.clear();
          Status st = lane.lease->Poll(&sc.done);
          progress |= !sc.done.empty() || !st.ok();
          finish(s);
          if (!st.ok()) fail_lane(lane, st);
          fill(s);
        }
        if (progress) continue;
        // Wait on the lanes in turn, so none is starved of attention.
        for (uint32_t i = 0; i < n_servers; ++i) {
          uint32_t s = (turn + i) % n_servers;
          if (sc.lanes[s].active) {
            last = s;
            break;
          }
        }
        turn = last + 1;
      }
      Lane& lane = sc.lanes[last];
      sc.done.clear();
      Status st = lane.lease->Reap(&sc.done);
      finish(last);
      if (!st.ok()) fail_lane(lane, st);
      fill(last);
    }
  };

  // Runs the lanes `first` .. `last` that have pieces, in parallel; their connections
  // are taken in ascending server order (DataClientPool: no waiting in a cycle).
  // ResourceExhausted when a second connection could not be had at once.
  auto run_lanes = [&](uint32_t first, uint32_t last) -> Status {
    bool holding = false;
    for (uint32_t s = first; s <= last; ++s) {
      if (!sc.lanes[s].used) continue;
      // Only the first connection may wait for memory: one that waited while holding
      // another could wait for a connection its holder's peer holds.
      Status st = start_lane(s, !holding);
      if (st.code() == StatusCode::kResourceExhausted) return st;
      if (!st.ok()) {
        // The other lanes go on: a replicated read moves this lane's pieces to other
        // copies, and every lane that finishes is work a retry need not redo.
        sc.lanes[s].failure = st;  // names the server already (DataClientPool)
        sc.lanes[s].failure_named = true;
        continue;
      }
      holding = true;
    }
    drive();
    // Lanes whose connection came from the idle list and failed go again, once, on a
    // fresh one: their server may have restarted while the connection idled. The
    // finished lanes' connections go back first, keeping the ascending order. A
    // failure no retry can help fails the call at once.
    bool again = false, hopeless = false;
    for (uint32_t s = first; s <= last; ++s) {
      Lane& lane = sc.lanes[s];
      if (!lane.used) continue;
      if (lane.failure.ok() || !lane.lease.reused()) {
        hopeless |= !lane.failure.ok();
        lane.lease.Release();
        continue;
      }
      again = true;
    }
    again &= !hopeless;
    holding = false;
    for (uint32_t s = first; s <= last && again; ++s) {
      Lane& lane = sc.lanes[s];
      if (!lane.used || lane.failure.ok()) continue;
      lane.lease.Release();  // marked broken: its server's idle connections go too
      ++lane.attempt;
      Status st = start_lane(s, !holding);
      if (!st.ok()) {
        fail_lane(lane, st);
      } else {
        holding = true;
      }
    }
    if (again) drive();
    Status first_failure;
    for (uint32_t s = first; s <= last; ++s) {
      Lane& lane = sc.lanes[s];
      if (!lane.used) continue;
      lane.finished = lane.failure.ok();
      if (!lane.failure.ok() && first_failure.ok()) {
        first_failure = lane.failure_named
                            ? lane.failure
                            : lane.failure.WithContext("data server " + std::to_string(s) + " (" +
                                                       pool_.endpoint(s).ToString() + ")");
      }
    }
    return first_failure;
  };

  Status result = run_lanes(0, n_servers - 1);
  if (result.code() == StatusCode::kResourceExhausted) {
    // Too little registrable memory for a connection per server at once (RLIMIT_MEMLOCK
    // of an unprivileged verbs client): one server after another, each waiting for a
    // connection as long as the pool lets it.
    for (uint32_t s = 0; s < n_servers; ++s) sc.lanes[s].lease.Release();
    result = Status::OK();
    for (uint32_t s = 0; s < n_servers && result.ok(); ++s) {
      if (!sc.lanes[s].used) continue;
      result = run_lanes(s, s);
      sc.lanes[s].lease.Release();
    }
  }
  for (uint32_t s = 0; s < n_servers; ++s) sc.lanes[s].lease.Release();
  return result;
}

template Status DataTransfer::Run(std::span<const WritePiece>, Scratch&);
template Status DataTransfer::Run(std::span<const ReadPiece>, Scratch&);

}  // namespace dpmfs::datapath
