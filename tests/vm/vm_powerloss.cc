// vm_powerloss: the writer and the checker of the DAX power-off test that tests/vm runs
// inside its VM (set `dax`, see tests/vm/README.md). The general crash tool is
// dpmfs-powerloss (soft transport, kill -9); this one leaves the power loss to the VM.
//
//   vm_powerloss write --server HOST:PORT --ack-dir DIR [--transport verbs]
//                      [--methods read2,read,imm,rpc] [--record-size 256] [--qd 8]
//                      [--seed 1] [--seconds 60]
//     One thread per method, each with its own DataClient and its own equal part of the
//     pool's data area, streams numbered, checksummed records (tools/powerloss/record.h)
//     and marks every acknowledged one in the ack log DIR/acks-METHOD. The ack logs
//     belong on the same DAX file system as the pool: each is sized, fsynced and mapped
//     before the first write and each mark is pmem_persist'ed after the acknowledgement,
//     so after a power-off a mark means "this write was acknowledged". Prints
//     "STREAMING" once every method has had a write acknowledged, then writes until the
//     machine dies, its part of the pool is full or --seconds pass.
//   vm_powerloss check --server HOST:PORT --ack-dir DIR [--transport verbs]
//     Reads every acknowledged record back through the data server (one-sided READs)
//     and checks it. Exit 0: every acknowledged record is intact; 1: one is not (each
//     loss is printed); 3: the check could not be carried out.
#include <cstdlib>
#include <fcntl.h>
#include <libpmem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/cluster_key.h"
#include "datapath/session_token.h"
#include "common/cli.h"
#include "common/endpoint.h"
#include "datapath/data_client.h"
#include "datapath/persist_method.h"
#include "transport/transport.h"
#include "tools/powerloss/record.h"

namespace dpmfs::vmtest {
namespace {

using datapath::PersistMethod;
constexpr uint64_t kAckMagic = 0x314b434153464d44ull;  // "DMFSACK1" on media
constexpr size_t kAckHeaderSize = 64;

// The ack log: this header, then one byte per record (1: acknowledged).
struct AckHeader {
  uint64_t magic = kAckMagic;
  uint64_t seed = 0;
  uint64_t trial_id = 0;
  uint64_t base = 0;      // pool data offset of record 0
  uint64_t capacity = 0;  // records
  uint32_t record_size = 0;
  uint32_t method = 0;
};
static_assert(sizeof(AckHeader) <= kAckHeaderSize);

struct Flags {
  std::string server;
  std::string transport = "verbs";
  std::string ack_dir;
  std::vector<std::string> methods = {"read2", "read", "imm", "rpc"};
  uint32_t record_size = 256;
  uint32_t qd = 8;
  uint64_t seed = 1;
  double seconds = 60;
};

int Fail(const Status& st) {
  std::fprintf(stderr, "vm_powerloss: error: %s\n", st.ToString().c_str());
  return 3;
}

// A created-and-fsynced ack log, mapped.
class AckLog {
 public:
  static Result<std::unique_ptr<AckLog>> Create(const std::string& path, const AckHeader& h) {
    const size_t size = kAckHeaderSize + h.capacity;
    int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) return Status::FromErrno(errno, "creating " + path);
    // Written out (not fallocated): no unwritten extent may need converting at the
    // first mark, when a power-off could undo the conversion.
    std::vector<uint8_t> bytes(size, 0);
    std::memcpy(bytes.data(), &h, sizeof h);
    int err = 0;
    if (pwrite(fd, bytes.data(), size, 0) != static_cast<ssize_t>(size)) err = errno ? errno : EIO;
    if (err == 0 && fsync(fd) != 0) err = errno;
    ::close(fd);
    if (err != 0) return Status::FromErrno(err, "preparing " + path);
    // The directory entry too, so the file itself survives the power-off.
    int dir = ::open(std::filesystem::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {
      fsync(dir);
      ::close(dir);
    }
    auto log = std::unique_ptr<AckLog>(new AckLog);
    size_t mapped = 0;
    int is_pmem = 0;
    log->base_ = static_cast<uint8_t*>(pmem_map_file(path.c_str(), 0, 0, 0, &mapped, &is_pmem));
    if (log->base_ == nullptr) return Status::FromErrno(errno, "pmem_map_file " + path);
    log->size_ = mapped;
    log->is_pmem_ = is_pmem != 0;
    return log;
  }
  ~AckLog() {
    if (base_ != nullptr) pmem_unmap(base_, size_);
  }
  bool is_pmem() const { return is_pmem_; }
  void Mark(uint64_t seq) {
    uint8_t* p = base_ + kAckHeaderSize + seq;
    *p = 1;
    if (is_pmem_) {
      pmem_persist(p, 1);
    } else {
      pmem_msync(p, 1);
    }
  }

 private:
  AckLog() = default;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool is_pmem_ = false;
};

uint64_t TrialId(uint64_t seed, PersistMethod m) {
  return powerloss::Mix64(seed * 64 + static_cast<uint64_t>(m) + 1) | 1;
}

struct Writer {
  PersistMethod method;
  std::unique_ptr<datapath::DataClient> client;
  std::unique_ptr<AckLog> log;
  AckHeader header;
  std::atomic<uint64_t> acked{0};
  uint64_t submitted = 0;
  Status error;
};

void Stream(Writer& w, const Flags& f, const std::atomic<bool>& stop) {
  auto& c = *w.client;
  std::vector<uint64_t> slot_seq(f.qd);
  std::vector<uint32_t> free_slots;
  for (uint32_t s = 0; s < f.qd; ++s) free_slots.push_back(f.qd - 1 - s);
  std::vector<datapath::SlotResult> done;
  uint64_t next = 0;
  while (true) {
    while (!stop.load() && next < w.header.capacity && !free_slots.empty()) {
      uint32_t slot = free_slots.back();
      free_slots.pop_back();
      powerloss::RecordId id{f.seed, w.header.trial_id, next, w.header.base + next * f.record_size,
                             f.record_size};
      powerloss::EncodeRecord(id, c.slot_buffer(slot));
      Status st = c.Submit(slot, id.position, f.record_size);
      if (!st.ok()) {
        w.error = st.WithContext("submitting record " + std::to_string(next));
        return;
      }
      slot_seq[slot] = next++;
      ++w.submitted;
    }
    if (c.in_flight() == 0) return;
    done.clear();
    Status st = c.Reap(&done);
    for (const auto& d : done) {
      if (d.status.ok()) {
        w.log->Mark(slot_seq[d.slot]);
        w.acked.fetch_add(1);
      }
      free_slots.push_back(d.slot);
    }
    if (!st.ok()) {
      w.error = st.WithContext("waiting for writes");
      return;
    }
  }
}

Result<std::unique_ptr<transport::Device>> Open(const Flags& f) {
  transport::DeviceOptions options;
  DPMFS_ASSIGN_OR_RETURN(options.backend, transport::ParseBackend(f.transport));
  // The data server it talks to holds the guest's key (init.sh sets $DPMFS_KEY_FILE).
  if (std::getenv("DPMFS_KEY_FILE") != nullptr) {
    DPMFS_ASSIGN_OR_RETURN(options.cluster_key, LoadClusterKey("", ""));
  }
  return transport::OpenDevice(options);
}

// A data server with a key checks session tokens; a key holder vouches for itself, as
// dpmfs-powerloss does. Null without a key (the data server then checks none).
std::shared_ptr<datapath::SessionTokenSource> Token() {
  if (std::getenv("DPMFS_KEY_FILE") == nullptr) return nullptr;
  auto key = LoadClusterKey("", "");
  if (!key.ok()) return nullptr;
  return datapath::SessionTokenSource::SelfIssued(*key, "vm_powerloss",
                                                  datapath::kSelfIssuedTokenLifetime);
}

int Write(const Flags& f) {
  auto ep = Endpoint::Parse(f.server);
  if (!ep.ok()) return Fail(ep.status());
  auto device = Open(f);
  if (!device.ok()) return Fail(device.status());
  std::vector<std::unique_ptr<Writer>> writers;
  for (const auto& name : f.methods) {
    auto m = datapath::ParsePersistMethod(name);
    if (!m.ok()) return Fail(m.status());
    auto w = std::make_unique<Writer>();
    w->method = *m;
    datapath::DataClientOptions options;
    options.method = *m;
    options.queue_depth = f.qd;
    options.max_io_size = f.record_size;
    options.token = Token();
    auto client = datapath::DataClient::Connect(**device, *ep, options);
    if (!client.ok()) return Fail(client.status().WithContext("method " + name));
    w->client = std::move(*client);
    writers.push_back(std::move(w));
  }
  const uint64_t part = writers.front()->client->data_size() / writers.size();
  const uint64_t capacity = part / f.record_size;
  if (capacity == 0) return Fail(Status::InvalidArgument("the pool is too small"));
  for (size_t i = 0; i < writers.size(); ++i) {
    Writer& w = *writers[i];
    w.header.seed = f.seed;
    w.header.trial_id = TrialId(f.seed, w.method);
    w.header.base = i * capacity * f.record_size;
    w.header.capacity = capacity;
    w.header.record_size = f.record_size;
    w.header.method = static_cast<uint32_t>(w.method);
    std::string path = f.ack_dir + "/acks-" + std::string(datapath::PersistMethodName(w.method));
    auto log = AckLog::Create(path, w.header);
    if (!log.ok()) return Fail(log.status());
    if (!(*log)->is_pmem()) {
      std::fprintf(stderr, "vm_powerloss: note: %s is not on real PM; marks use msync\n",
                   path.c_str());
    }
    w.log = std::move(*log);
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (auto& w : writers) threads.emplace_back([&, wp = w.get()] { Stream(*wp, f, stop); });
  const auto start = std::chrono::steady_clock::now();
  const auto limit = std::chrono::duration<double>(f.seconds);
  bool announced = false;
  while (std::chrono::steady_clock::now() - start < limit) {
    bool all = true;
    for (auto& w : writers) all &= w->acked.load() > 0;
    if (all && !announced) {
      std::printf("STREAMING\n");
      std::fflush(stdout);
      announced = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  for (auto& t : threads) t.join();
  int rc = 0;
  for (auto& w : writers) {
    std::printf("method %s: %" PRIu64 " submitted, %" PRIu64 " acknowledged%s%s\n",
                std::string(datapath::PersistMethodName(w->method)).c_str(), w->submitted,
                w->acked.load(),
                w->error.ok() ? "" : ", error: ", w->error.ok() ? "" : w->error.ToString().c_str());
    if (!w->error.ok()) rc = 3;
  }
  return rc;
}

int Check(const Flags& f) {
  auto ep = Endpoint::Parse(f.server);
  if (!ep.ok()) return Fail(ep.status());
  auto device = Open(f);
  if (!device.ok()) return Fail(device.status());
  std::vector<std::filesystem::path> logs;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(f.ack_dir, ec)) {
    if (e.path().filename().string().rfind("acks-", 0) == 0) logs.push_back(e.path());
  }
  if (ec) return Fail(Status::FromErrno(ec.value(), "listing " + f.ack_dir));
  if (logs.empty()) return Fail(Status::NotFound("no ack logs (acks-*) in " + f.ack_dir));
  std::sort(logs.begin(), logs.end());
  uint64_t total_lost = 0;
  for (const auto& path : logs) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Fail(Status::FromErrno(errno, "opening " + path.string()));
    struct stat st = {};
    fstat(fd, &st);
    std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
    ssize_t got = pread(fd, bytes.data(), bytes.size(), 0);
    ::close(fd);
    AckHeader h;
    if (got < static_cast<ssize_t>(kAckHeaderSize)) {
      return Fail(Status::Corruption(path.string() + " is shorter than its header"));
    }
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.magic != kAckMagic || h.record_size < powerloss::kMinRecordSize ||
        h.record_size > powerloss::kMaxRecordSize ||
        kAckHeaderSize + h.capacity > static_cast<uint64_t>(got)) {
      return Fail(Status::Corruption(path.string() + ": bad ack log header"));
    }
    const auto method = static_cast<PersistMethod>(h.method);
    datapath::DataClientOptions options;
    options.method = PersistMethod::kRead;
    options.queue_depth = 1;
    options.max_io_size = h.record_size;
    options.token = Token();
    auto client = datapath::DataClient::Connect(**device, *ep, options);
    if (!client.ok()) return Fail(client.status());
    std::vector<uint8_t> buf(h.record_size);
    uint64_t acked = 0, lost = 0;
    for (uint64_t seq = 0; seq < h.capacity; ++seq) {
      if (bytes[kAckHeaderSize + seq] == 0) continue;
      ++acked;
      powerloss::RecordId id{h.seed, h.trial_id, seq, h.base + seq * h.record_size, h.record_size};
      Status rs = (*client)->Read(id.position, buf.data(), h.record_size);
      if (!rs.ok()) return Fail(rs.WithContext("reading record " + std::to_string(seq)));
      std::string detail;
      auto verdict = powerloss::CheckRecord(id, buf.data(), &detail);
      if (verdict != powerloss::RecordCheck::kOk) {
        if (++lost <= 20) {
          std::printf("LOST method %s record %" PRIu64 " at offset %" PRIu64 ": %s %s\n",
                      std::string(datapath::PersistMethodName(method)).c_str(), seq, id.position,
                      powerloss::RecordCheckName(verdict), detail.c_str());
        }
      }
    }
    std::printf("method %s: %" PRIu64 " acknowledged records, %" PRIu64 " lost\n",
                std::string(datapath::PersistMethodName(method)).c_str(), acked, lost);
    total_lost += lost;
  }
  return total_lost == 0 ? 0 : 1;
}

}  // namespace
}  // namespace dpmfs::vmtest

int main(int argc, char** argv) {
  using namespace dpmfs;
  CLI::App app{"vm_powerloss: writer and checker of the tests/vm DAX power-off test",
               "vm_powerloss"};
  CommonFlags common;
  AddCommonFlags(app, &common);
  app.require_subcommand(1);
  vmtest::Flags f;
  auto* write = app.add_subcommand("write", "Stream records and log the acknowledged ones");
  auto* check = app.add_subcommand("check", "Read every acknowledged record back");
  for (auto* sub : {write, check}) {
    sub->add_option("--server", f.server, "The dpmfs-data, HOST:PORT")->required();
    sub->add_option("--ack-dir", f.ack_dir, "Directory of the ack logs")->required();
    sub->add_option("--transport", f.transport, "soft or verbs")->capture_default_str();
  }
  write->add_option("--methods", f.methods, "Persist methods, one writer each")->delimiter(',');
  write->add_option("--record-size", f.record_size, "Bytes per record (64..4096)")
      ->capture_default_str();
  write->add_option("--qd", f.qd, "Writes in flight per method")->capture_default_str();
  write->add_option("--seed", f.seed, "Seed of the payloads")->capture_default_str();
  write->add_option("--seconds", f.seconds, "Stop writing after this long")->capture_default_str();
  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;
  if (f.record_size < powerloss::kMinRecordSize || f.record_size > powerloss::kMaxRecordSize ||
      f.qd == 0 || f.methods.empty()) {
    std::fprintf(stderr, "vm_powerloss: bad --record-size, --qd or --methods\n");
    return 2;
  }
  return write->parsed() ? vmtest::Write(f) : vmtest::Check(f);
}
