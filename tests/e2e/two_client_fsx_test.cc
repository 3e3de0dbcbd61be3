// An fsx-style random workload on one file through two mounts, checked against a model
// of the bytes the file must hold: writes (also far past EOF), truncates down and up,
// punch hole, zero range, fallocate, shared-mmap writes, each done by a client chosen at
// random, and whole-file reads through the other one (or a third mount) compared with
// the model. Operations run one after another, each with its own open and close, so
// close-to-open consistency makes every result exact: any difference is a bug (bytes
// lost, stale bytes showing in a hole or past a truncate, a size gone wrong).
//
// DPMFS_FSX_OPS (default 300, CI) sets the number of operations; the long run by hand
// is `tests/e2e/run_e2e.sh fsx-long` (20,000). DPMFS_FSX_SEED picks the sequence
// (default: from the clock, printed, so a failure can be replayed).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/two_client_fixture.h"

namespace dpmfs::e2e {
namespace {

// Spans three 1 MiB stripe units (the default), so pieces land on both data servers.
constexpr uint64_t kMaxSize = 3u << 20;

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

class RandomWorkload {
 public:
  // `dpmfs`: the paths are on dpmfs mounts, which must support every operation.
  RandomWorkload(uint64_t seed, std::string path1, std::string path2, std::string reader,
                 bool dpmfs)
      : rng_(seed),
        paths_{std::move(path1), std::move(path2)},
        reader_(std::move(reader)),
        dpmfs_(dpmfs) {}

  // Runs `ops` operations; stops at the first one that fails or disagrees.
  void Run(uint64_t ops) {
    for (op_ = 0; op_ < ops && !::testing::Test::HasFailure(); ++op_) {
      const int client = static_cast<int>(rng_() % 2);
      switch (rng_() % 10) {
        case 0: case 1: case 2: Write(client); break;
        case 3: Truncate(client); break;
        case 4: Fallocate(client, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE); break;
        case 5: Fallocate(client, FALLOC_FL_ZERO_RANGE); break;
        case 6: Fallocate(client, rng_() % 2 ? 0 : FALLOC_FL_KEEP_SIZE); break;
        case 7: MapWrite(client); break;
        default: Check(rng_() % 3 == 0 ? reader_ : paths_[1 - client]); break;
      }
    }
    if (!::testing::Test::HasFailure()) Check(reader_);
  }

 private:
  // A range mostly small and unaligned, sometimes large, anywhere up to kMaxSize.
  void PickRange(uint64_t* off, uint64_t* len) {
    *off = rng_() % kMaxSize;
    const uint64_t cap = kMaxSize - *off;
    const uint64_t want = rng_() % 4 == 0 ? 1 + rng_() % (256u << 10) : 1 + rng_() % 9000;
    *len = std::max<uint64_t>(1, std::min(want, cap));
  }
  void Note(const std::string& what) {
    history_.push_back("op " + std::to_string(op_) + ": " + what);
    if (history_.size() > 12) history_.pop_front();
  }
  std::string History() const {
    std::ostringstream o;
    for (const std::string& h : history_) o << "\n  " << h;
    return o.str();
  }

  void Write(int client) {
    uint64_t off, len;
    PickRange(&off, &len);
    const std::vector<uint8_t> data = Pattern(op_ + 1, off, len);
    Note("client " + std::to_string(client + 1) + " pwrite [" + std::to_string(off) + ", +" +
         std::to_string(len) + ")");
    Fd fd(::open(paths_[client].c_str(), O_WRONLY));
    ASSERT_TRUE(fd.ok()) << std::strerror(errno) << History();
    ASSERT_TRUE(PwriteAll(fd.get(), data.data(), len, static_cast<off_t>(off)))
        << std::strerror(errno) << History();
    ASSERT_EQ(fd.Close(), 0) << History();
    if (model_.size() < off + len) model_.resize(off + len, 0);
    std::copy(data.begin(), data.end(), model_.begin() + static_cast<long>(off));
  }

  void Truncate(int client) {
    const uint64_t size = rng_() % 2 ? rng_() % (model_.size() + 1) : rng_() % kMaxSize;
    Note("client " + std::to_string(client + 1) + " truncate to " + std::to_string(size));
    ASSERT_EQ(::truncate(paths_[client].c_str(), static_cast<off_t>(size)), 0)
        << std::strerror(errno) << History();
    model_.resize(size, 0);
  }

  void Fallocate(int client, int mode) {
    uint64_t off, len;
    PickRange(&off, &len);
    Note("client " + std::to_string(client + 1) + " fallocate mode " + std::to_string(mode) +
         " [" + std::to_string(off) + ", +" + std::to_string(len) + ")");
    Fd fd(::open(paths_[client].c_str(), O_WRONLY));
    ASSERT_TRUE(fd.ok()) << std::strerror(errno) << History();
    const int rc = ::fallocate(fd.get(), mode, static_cast<off_t>(off), static_cast<off_t>(len));
    if (rc != 0 && errno == EOPNOTSUPP && (mode & FALLOC_FL_ZERO_RANGE) && !dpmfs_) {
      return;  // tmpfs has no zero range (checking the test itself there); it changed nothing
    }
    ASSERT_EQ(rc, 0) << std::strerror(errno) << History();
    ASSERT_EQ(fd.Close(), 0) << History();
    const uint64_t end = off + len;
    if (!(mode & FALLOC_FL_KEEP_SIZE) && model_.size() < end) model_.resize(end, 0);
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
      const uint64_t stop = std::min<uint64_t>(end, model_.size());
      if (off < stop) {
        std::fill(model_.begin() + static_cast<long>(off), model_.begin() + static_cast<long>(stop), 0);
      }
    }
  }

  void MapWrite(int client) {
    if (model_.empty()) return Write(client);
    const uint64_t off = rng_() % model_.size();
    const uint64_t len = std::max<uint64_t>(1, std::min<uint64_t>(1 + rng_() % 20000, model_.size() - off));
    const std::vector<uint8_t> data = Pattern(op_ + 7777, off, len);
    Note("client " + std::to_string(client + 1) + " mmap write [" + std::to_string(off) + ", +" +
         std::to_string(len) + ")");
    Fd fd(::open(paths_[client].c_str(), O_RDWR));
    ASSERT_TRUE(fd.ok()) << std::strerror(errno) << History();
    // A mapping past the size this client sees would fault (SIGBUS) instead of failing.
    struct stat st{};
    ASSERT_EQ(::fstat(fd.get(), &st), 0) << std::strerror(errno);
    ASSERT_EQ(static_cast<uint64_t>(st.st_size), model_.size())
        << "client " << client + 1 << " sees a stale size after open" << History();
    void* m = ::mmap(nullptr, model_.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(m, MAP_FAILED) << std::strerror(errno) << History();
    std::memcpy(static_cast<uint8_t*>(m) + off, data.data(), len);
    EXPECT_EQ(::msync(m, model_.size(), MS_SYNC), 0) << std::strerror(errno) << History();
    ASSERT_EQ(::munmap(m, model_.size()), 0);
    ASSERT_EQ(fd.Close(), 0) << History();
    std::copy(data.begin(), data.end(), model_.begin() + static_cast<long>(off));
  }

  void Check(const std::string& path) {
    Note("read all through " + path);
    const std::vector<uint8_t> got = ReadFile(path);
    ASSERT_EQ(got.size(), model_.size()) << "size differs from the model" << History();
    const long at = FirstDifference(got, model_);
    ASSERT_EQ(at, -1) << "byte " << at << " is " << int(got[at]) << ", the model says "
                      << int(model_[at]) << History();
  }

  std::mt19937_64 rng_;
  const std::string paths_[2];
  const std::string reader_;
  const bool dpmfs_;
  std::vector<uint8_t> model_;
  std::deque<std::string> history_;
  uint64_t op_ = 0;
};

TEST_F(TwoClientTest, RandomOperationsFromBothClientsMatchAModel) {
  const uint64_t seed = EnvU64(
      "DPMFS_FSX_SEED",
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()));
  const uint64_t ops = EnvU64("DPMFS_FSX_OPS", 300);
  std::cout << "[ fsx      ] seed " << seed << ", " << ops
            << " operations (DPMFS_FSX_SEED / DPMFS_FSX_OPS)" << std::endl;
  ASSERT_TRUE(WriteFile(P("f"), ""));
  const bool dpmfs = dir() != dir2_;  // one local file system when both are the same
  RandomWorkload w(seed, P("f"), Q("f"), R("f"), dpmfs);
  w.Run(ops);
  if (HasFailure()) std::cout << "[ fsx      ] replay with DPMFS_FSX_SEED=" << seed << "\n";
}

}  // namespace
}  // namespace dpmfs::e2e
