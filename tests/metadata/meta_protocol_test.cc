// The metadata message codec: every message round-trips with non-trivial values, the
// wire layout is pinned by golden bytes, every truncation and corrupted length/count
// fails cleanly, the protocol limits hold at and beyond their edge, encoding allocates
// once, and the reply framing (SplitReply) and name rules (CheckName) behave.
#include "metadata/meta_protocol.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <tuple>

#include "tests/support/allocation_counter.h"

// Allocation counting (for "encoding allocates once").
using dpmfs::test_support::t_allocations;
using dpmfs::test_support::t_counting;

namespace dpmfs::meta {

// ---- Field-by-field equality, written independently of the codec's field lists ----

auto Tie(const DataServerInfo& m) { return std::tie(m.index, m.endpoint, m.data_size); }
auto Tie(const ClusterInfo& m) {
  return std::tie(m.cluster_uuid, m.block_size, m.stripe_unit, m.servers, m.replicas);
}
auto Tie(const DirEntry& m) { return std::tie(m.name, m.ino, m.mode, m.cookie, m.attr); }
auto Tie(const ByteRange& m) { return std::tie(m.offset, m.length); }
bool operator==(const DataServerInfo& a, const DataServerInfo& b) { return Tie(a) == Tie(b); }
bool operator==(const ClusterInfo& a, const ClusterInfo& b) { return Tie(a) == Tie(b); }
bool operator==(const DirEntry& a, const DirEntry& b) { return Tie(a) == Tie(b); }
bool operator==(const ByteRange& a, const ByteRange& b) { return Tie(a) == Tie(b); }

auto Tie(const RegisterRequest& m) { return std::tie(m.client_name); }
auto Tie(const RegisterReply& m) { return std::tie(m.lease_ms, m.cluster); }
auto Tie(const HeartbeatRequest&) { return std::tie(); }
auto Tie(const HeartbeatReply& m) { return std::tie(m.known, m.data_token, m.epoch); }
auto Tie(const UnregisterRequest&) { return std::tie(); }
auto Tie(const EmptyReply&) { return std::tie(); }
auto Tie(const LookupRequest& m) { return std::tie(m.parent, m.name); }
auto Tie(const EntryReply& m) { return std::tie(m.attr, m.dirs); }
auto Tie(const GetattrRequest& m) { return std::tie(m.ino); }
auto Tie(const AttrReply& m) { return std::tie(m.attr); }
auto Tie(const SetattrRequest& m) {
  return std::tie(m.ino, m.valid, m.mode, m.uid, m.gid, m.size, m.atime, m.mtime, m.ctime);
}
auto Tie(const CreateRequest& m) {
  return std::tie(m.parent, m.name, m.mode, m.uid, m.gid, m.flags, m.umask);
}
auto Tie(const CreateReply& m) { return std::tie(m.attr, m.handle, m.created, m.dirs); }
auto Tie(const MkdirRequest& m) { return std::tie(m.parent, m.name, m.mode, m.uid, m.gid, m.umask); }
auto Tie(const MknodRequest& m) {
  return std::tie(m.parent, m.name, m.mode, m.rdev, m.uid, m.gid, m.umask);
}
auto Tie(const SymlinkRequest& m) { return std::tie(m.parent, m.name, m.target, m.uid, m.gid); }
auto Tie(const ReadlinkRequest& m) { return std::tie(m.ino); }
auto Tie(const ReadlinkReply& m) { return std::tie(m.target); }
auto Tie(const LinkRequest& m) { return std::tie(m.ino, m.new_parent, m.new_name); }
auto Tie(const UnlinkRequest& m) { return std::tie(m.parent, m.name); }
auto Tie(const DirsReply& m) { return std::tie(m.dirs); }
auto Tie(const RenameRequest& m) {
  return std::tie(m.parent, m.name, m.new_parent, m.new_name, m.flags);
}
auto Tie(const ReaddirRequest& m) { return std::tie(m.ino, m.cookie, m.max_entries, m.plus); }
auto Tie(const ReaddirReply& m) { return std::tie(m.entries, m.eof, m.last_cookie); }
auto Tie(const OpenRequest& m) { return std::tie(m.ino, m.flags); }
auto Tie(const OpenReply& m) { return std::tie(m.attr, m.handle); }
auto Tie(const ReleaseRequest& m) { return std::tie(m.ino, m.handle); }
bool operator==(const ReleaseRequest& a, const ReleaseRequest& b) { return Tie(a) == Tie(b); }
auto Tie(const ReleaseManyRequest& m) { return std::tie(m.handles); }
auto Tie(const ReleaseManyReply& m) { return std::tie(m.refused); }
auto Tie(const StatfsRequest&) { return std::tie(); }
auto Tie(const StatfsReply& m) {
  return std::tie(m.block_size, m.total_blocks, m.free_blocks, m.total_inodes, m.free_inodes,
                  m.name_max);
}
auto Tie(const GetxattrRequest& m) { return std::tie(m.ino, m.name); }
auto Tie(const GetxattrReply& m) { return std::tie(m.value); }
auto Tie(const SetxattrRequest& m) { return std::tie(m.ino, m.name, m.value, m.flags); }
auto Tie(const ListxattrRequest& m) { return std::tie(m.ino); }
auto Tie(const ListxattrReply& m) { return std::tie(m.names); }
auto Tie(const RemovexattrRequest& m) { return std::tie(m.ino, m.name); }
auto Tie(const LayoutRequest& m) { return std::tie(m.ino, m.offset, m.length); }
auto Tie(const LayoutReply& m) { return std::tie(m.attr, m.extents, m.truncated); }
auto Tie(const AllocateRequest& m) { return std::tie(m.ino, m.offset, m.length); }
auto Tie(const AllocateReply& m) { return std::tie(m.extents); }
auto Tie(const CommitRequest& m) {
  return std::tie(m.ino, m.valid, m.new_size, m.mtime, m.written);
}
auto Tie(const FallocateRequest& m) { return std::tie(m.ino, m.mode, m.offset, m.length); }
auto Tie(const StatsRequest&) { return std::tie(); }
auto Tie(const StatsReply& m) { return std::tie(m.bundle); }
auto Tie(const PushStatsRequest& m) { return std::tie(m.report); }
auto Tie(const LogLevelRequest& m) { return std::tie(m.level); }
auto Tie(const GetClusterMapRequest&) { return std::tie(); }
auto Tie(const ClusterMapReply& m) { return std::tie(m.epoch, m.servers); }
auto Tie(const ReportDataServerRequest& m) { return std::tie(m.server, m.epoch); }
auto Tie(const MarkDegradedRequest& m) { return std::tie(m.epoch, m.ranges); }

namespace {

// ---- Samples: every field non-zero and distinct, so a dropped or swapped field shows ----

Timespec Ts(int64_t sec, uint32_t nsec) { return Timespec{sec, nsec}; }

InodeAttr SampleAttr(uint64_t seed) {
  InodeAttr a;
  a.ino = 0x1000 + seed;
  a.generation = 0x0102030405060708ull + seed;
  a.mode = 0100644;
  a.uid = 1001;
  a.gid = 1002;
  a.nlink = 3;
  a.size = (1ull << 40) + 17;
  a.blocks = 4242;
  a.rdev = 0x0803;
  a.atime = Ts(1700000000, 1);
  a.mtime = Ts(-5, 999999999);  // before the epoch: sec is signed
  a.ctime = Ts(1700000002, 500000000);
  return a;
}

InodeAttr SampleDirAttr(uint64_t seed) {
  InodeAttr a = SampleAttr(seed);
  a.mode = 040750;
  return a;
}

std::vector<Extent> SampleExtents() {
  return {Extent{0, 4096, 1ull << 30, 0, 0},
          Extent{1 << 20, 8192, 77 * 4096, 1, Extent::kUnwritten},
          Extent{2 << 20, 1 << 20, 3ull << 32, 2, Extent::kUnwritten | Extent::kSpeculative}};
}

ClusterInfo SampleCluster() {
  ClusterInfo c;
  for (int i = 0; i < 16; ++i) c.cluster_uuid[i] = static_cast<uint8_t>(0xA0 + i);
  c.block_size = 4096;
  c.stripe_unit = 1 << 20;
  c.servers = {DataServerInfo{0, "127.0.0.1:7001", 1ull << 30},
               DataServerInfo{1, "[::1]:7002", 3ull << 30}};
  c.replicas = 2;
  return c;
}

void Sample(RegisterRequest* m) { m->client_name = "host:4711 /mnt/dpmfs"; }
void Sample(RegisterReply* m) {
  m->lease_ms = 10000;
  m->cluster = SampleCluster();
}
void Sample(HeartbeatRequest*) {}
void Sample(HeartbeatReply* m) {
  m->known = true;
  m->data_token = std::string(70, 'T');
  m->epoch = 0x1122334455ull;
}
void Sample(UnregisterRequest*) {}
void Sample(EmptyReply*) {}
void Sample(LookupRequest* m) { *m = {77, "file.txt"}; }
void Sample(EntryReply* m) {
  m->attr = SampleAttr(1);
  m->dirs = {SampleDirAttr(11)};
}
void Sample(GetattrRequest* m) { m->ino = 0xFFFFFFFFFFFFFFF0ull; }
void Sample(AttrReply* m) { m->attr = SampleAttr(2); }
void Sample(SetattrRequest* m) {
  m->ino = 9;
  m->valid = SetattrRequest::kMode | SetattrRequest::kSize | SetattrRequest::kMtime;
  m->mode = 0755;
  m->uid = 5;
  m->gid = 6;
  m->size = 123456789;
  m->atime = Ts(1, 2);
  m->mtime = Ts(3, 4);
  m->ctime = Ts(5, 6);
}
void Sample(CreateRequest* m) { *m = {3, "new", 0100600, 10, 20, 0x80 /* O_EXCL */, 022}; }
void Sample(CreateReply* m) {
  m->attr = SampleAttr(3);
  m->handle = 0xABCDEF;
  m->created = true;
  m->dirs = {SampleDirAttr(12)};
}
void Sample(MkdirRequest* m) { *m = {4, "dir", 0700, 11, 21, 027}; }
void Sample(MknodRequest* m) { *m = {5, "fifo", 010644, 0x0801, 12, 22, 077}; }
void Sample(SymlinkRequest* m) { *m = {6, "link", "../a/b/c", 13, 23}; }
void Sample(ReadlinkRequest* m) { m->ino = 14; }
void Sample(ReadlinkReply* m) { m->target = "/abs/target"; }
void Sample(LinkRequest* m) { *m = {15, 16, "hard"}; }
void Sample(UnlinkRequest* m) { *m = {17, "gone"}; }
void Sample(DirsReply* m) { m->dirs = {SampleDirAttr(13), SampleDirAttr(14)}; }
void Sample(RenameRequest* m) { *m = {18, "from", 19, "to", 1}; }
void Sample(ReaddirRequest* m) { *m = {20, 0x123456789ull, 512, true}; }
void Sample(ReaddirReply* m) {
  m->entries = {DirEntry{"a", 100, 040755, 3, SampleAttr(4)},
                DirEntry{std::string(kMaxNameLength, 'n'), 101, 0100644, 4, SampleAttr(5)},
                DirEntry{"\xC3\xA9t\xC3\xA9", 102, 0120777, 9, InodeAttr{}}};
  m->eof = true;
  m->last_cookie = 12;
}
void Sample(OpenRequest* m) { *m = {21, 02 /* O_RDWR */}; }
void Sample(OpenReply* m) {
  m->attr = SampleAttr(6);
  m->handle = 99;
}
void Sample(ReleaseRequest* m) { *m = {22, 98}; }
void Sample(ReleaseManyRequest* m) { m->handles = {ReleaseRequest{1, 2}, ReleaseRequest{3, 4}}; }
void Sample(ReleaseManyReply* m) { m->refused = 1; }
void Sample(StatfsRequest*) {}
void Sample(StatsRequest*) {}
void Sample(StatsReply* m) { m->bundle = std::string("DPSB\x01\x00\x00\x00\x00\x00", 10); }
void Sample(PushStatsRequest* m) { m->report = "a report's bytes"; }
void Sample(LogLevelRequest* m) { m->level = "debug"; }
void Sample(StatfsReply* m) { *m = {4096, 1000000, 999, 50000, 49000, kMaxNameLength}; }
void Sample(GetxattrRequest* m) { *m = {23, "user.k"}; }
void Sample(GetxattrReply* m) { m->value = std::string("bin\0ary\xFF", 8); }
void Sample(SetxattrRequest* m) { *m = {24, "user.key", std::string("v\0v", 3), 2}; }
void Sample(ListxattrRequest* m) { m->ino = 25; }
void Sample(ListxattrReply* m) { m->names = {"user.a", "trusted.bb", "security.selinux"}; }
void Sample(RemovexattrRequest* m) { *m = {26, "user.gone"}; }
void Sample(LayoutRequest* m) { *m = {27, 4096, 1 << 20}; }
void Sample(LayoutReply* m) {
  m->attr = SampleAttr(7);
  m->extents = SampleExtents();
  m->truncated = true;
}
void Sample(AllocateRequest* m) { *m = {28, 8192, 65536}; }
void Sample(AllocateReply* m) { m->extents = SampleExtents(); }
void Sample(CommitRequest* m) {
  m->ino = 29;
  m->valid = CommitRequest::kSize;
  m->new_size = 1 << 21;
  m->mtime = Ts(1700000003, 3);
  m->written = {ByteRange{0, 4096}, ByteRange{1 << 20, 1 << 20}};
}
void Sample(FallocateRequest* m) { *m = {30, 1 /* KEEP_SIZE */, 4096, 8192}; }
void Sample(GetClusterMapRequest*) {}
void Sample(ClusterMapReply* m) {
  m->epoch = 42;
  m->servers = {DataServerStatus{DataServerState::kUp, 0, 1, 2},
                DataServerStatus{DataServerState::kDown, 3 << 20, 0, 0},
                DataServerStatus{DataServerState::kResyncing, 5 << 20, 6 << 20, 11 << 20}};
}
void Sample(ReportDataServerRequest* m) { *m = {2, 41}; }
void Sample(MarkDegradedRequest* m) {
  m->epoch = 43;
  m->ranges = {PrimaryRange{1, 1 << 20, 4096}, PrimaryRange{2, 0, 8 << 20}};
}

template <class T>
T Make() {
  T m;
  Sample(&m);
  return m;
}

template <class T>
std::vector<uint8_t> Enc(const T& m) {
  return Encode(m);
}

// Decodes `bytes` as a T, expecting success.
template <class T>
T Dec(const std::vector<uint8_t>& bytes) {
  T m;
  Status s = Decode(bytes, &m);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return m;
}

template <class T>
Status DecodeAs(std::span<const uint8_t> bytes) {
  T m;
  return Decode(bytes, &m);
}

void PutU32(std::vector<uint8_t>* b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*b)[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// Calls fn(T{}) for every message type T of the X-macro list, tracing its name.
template <class Fn>
void ForEveryMessage(Fn fn) {
#define X(T)          \
  {                   \
    SCOPED_TRACE(#T); \
    fn(T{});          \
  }
  DPMFS_META_MESSAGES(X)
#undef X
}

// ---- Round trips and framing, over every message of the X-macro list ----

template <class T>
void CheckRoundTrip() {
  const T m = Make<T>();
  std::vector<uint8_t> bytes = Encode(m);

  T back;
  Status s = Decode(bytes, &back);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(Tie(back) == Tie(m));

  // Decoding into an object that already holds values overwrites all of them.
  T reused = Make<T>();
  ASSERT_TRUE(Decode(bytes, &reused).ok());
  EXPECT_TRUE(Tie(reused) == Tie(m));

  // EncodeTo appends; EncodeReply prefixes errno 0.
  std::vector<uint8_t> appended = {0xEE};
  EncodeTo(m, &appended);
  ASSERT_EQ(appended.size(), bytes.size() + 1);
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), appended.begin() + 1));

  std::vector<uint8_t> reply = EncodeReply(m);
  int err = -1;
  std::span<const uint8_t> body;
  ASSERT_TRUE(SplitReply(reply, &err, &body).ok());
  EXPECT_EQ(err, 0);
  T from_reply;
  ASSERT_TRUE(Decode(body, &from_reply).ok());
  EXPECT_TRUE(Tie(from_reply) == Tie(m));
}

TEST(MetaProtocol, EveryMessageRoundTrips) {
  ForEveryMessage([](auto tag) { CheckRoundTrip<decltype(tag)>(); });
}

template <class T>
void CheckTruncationsAndTrailingBytes() {
  const std::vector<uint8_t> bytes = Encode(Make<T>());
  // The requests whose last field may be absent (kNewInodeUmask): that prefix decodes.
  constexpr bool kOptionalUmask = std::is_same_v<T, CreateRequest> ||
                                  std::is_same_v<T, MkdirRequest> ||
                                  std::is_same_v<T, MknodRequest>;
  for (size_t n = 0; n < bytes.size(); ++n) {
    if (kOptionalUmask && n == bytes.size() - 4) continue;  // MetaProtocol.UmaskMayBeAbsent
    Status s = DecodeAs<T>(std::span(bytes.data(), n));
    ASSERT_FALSE(s.ok()) << "a " << n << "-byte prefix of " << bytes.size() << " decoded";
    ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  Status s = DecodeAs<T>(longer);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("trailing"), std::string::npos) << s.ToString();
}

TEST(MetaProtocol, EveryTruncationAndTrailingByteFails) {
  ForEveryMessage([](auto tag) { CheckTruncationsAndTrailingBytes<decltype(tag)>(); });
}

// Journal records and clients from before the umask field end where it would start:
// they decode, with umask 0 (the client's kernel had masked the mode).
template <class T>
void CheckUmaskMayBeAbsent() {
  T sent = Make<T>();
  ASSERT_NE(sent.umask, 0u);
  std::vector<uint8_t> bytes = Encode(sent);
  bytes.resize(bytes.size() - 4);
  T got;
  ASSERT_TRUE(Decode(bytes, &got).ok());
  sent.umask = 0;
  EXPECT_TRUE(Tie(got) == Tie(sent));
}

TEST(MetaProtocol, UmaskMayBeAbsent) {
  CheckUmaskMayBeAbsent<CreateRequest>();
  CheckUmaskMayBeAbsent<MkdirRequest>();
  CheckUmaskMayBeAbsent<MknodRequest>();
}

// Overwrites every 4-byte window of every message with huge and off-by-one values, and
// flips every single byte: a decoder must either refuse or decode, never read out of
// bounds or allocate from a forged length (a 4-billion-entry vector would throw).
template <class T>
void CheckCorruptions() {
  const std::vector<uint8_t> bytes = Encode(Make<T>());
  for (size_t at = 0; at + 4 <= bytes.size(); ++at) {
    for (uint32_t v : {0xFFFFFFFFu, 0x7FFFFFFFu, 0x10000u, 0x1001u}) {
      std::vector<uint8_t> b = bytes;
      PutU32(&b, at, v);
      (void)DecodeAs<T>(b);
    }
  }
  for (size_t at = 0; at < bytes.size(); ++at) {
    std::vector<uint8_t> b = bytes;
    b[at] ^= 0xFF;
    (void)DecodeAs<T>(b);
  }
}

TEST(MetaProtocol, CorruptedBytesNeverCrashOrOverAllocate) {
  ForEveryMessage([](auto tag) { CheckCorruptions<decltype(tag)>(); });
}

template <class T>
void CheckOneAllocation() {
  const T m = Make<T>();
  t_allocations = 0;
  t_counting = true;
  std::vector<uint8_t> bytes = Encode(m);
  t_counting = false;
  EXPECT_EQ(t_allocations, bytes.empty() ? 0u : 1u);
  // EncodeTo into a buffer with room allocates nothing.
  std::vector<uint8_t> buf;
  buf.reserve(bytes.size() + 8);
  t_allocations = 0;
  t_counting = true;
  EncodeTo(m, &buf);
  t_counting = false;
  EXPECT_EQ(t_allocations, 0u);
  // A reply ([errno][body]) is sized once too: it is what every server call returns.
  t_allocations = 0;
  t_counting = true;
  std::vector<uint8_t> reply = EncodeReply(m);
  t_counting = false;
  EXPECT_EQ(t_allocations, 1u);
  EXPECT_EQ(reply.size(), 4 + bytes.size());
}

TEST(MetaProtocol, EncodingAllocatesOnce) {
#ifdef DPMFS_SANITIZED
  GTEST_SKIP() << "allocation counting needs the test's own operator new";
#endif
  ForEveryMessage([](auto tag) { CheckOneAllocation<decltype(tag)>(); });
}

// ---- The wire layout, pinned ----

TEST(MetaProtocol, GoldenBytes) {
  LookupRequest l{0x0102030405060708ull, "ab"};
  EXPECT_EQ(Encode(l), (std::vector<uint8_t>{8, 7, 6, 5, 4, 3, 2, 1, 2, 0, 0, 0, 'a', 'b'}));

  HeartbeatReply h{true, "", 0x0203};
  // known, the session token (u32 length + bytes; datapath/session_token.h), then the
  // cluster map's epoch (u64).
  EXPECT_EQ(Encode(h), (std::vector<uint8_t>{1, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(EncodeReply(h), (std::vector<uint8_t>{0, 0, 0, 0, 1, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(Encode(HeartbeatReply{true, "tk", 0}),
            (std::vector<uint8_t>{1, 2, 0, 0, 0, 't', 'k', 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(EncodeErrorReply(ENOENT), (std::vector<uint8_t>{ENOENT, 0, 0, 0}));
  EXPECT_TRUE(Encode(StatfsRequest{}).empty());

  // Fixed sizes documented in meta_protocol.cc.
  EXPECT_EQ(Encode(AttrReply{}).size(), 92u);
  AllocateReply one;
  one.extents = {Extent{0, 4096, 0, 0, 0}};
  EXPECT_EQ(Encode(one).size(), 4u + 32u);
  ReaddirReply entry;
  entry.entries = {DirEntry{"xyz", 1, 0, 1, {}}};
  entry.last_cookie = 1;
  EXPECT_EQ(Encode(entry).size(), 4u + 116u + 3u + 1u + 8u);

  Timespec t{-1, 7};
  SetattrRequest s;
  s.atime = t;
  auto b = Encode(s);
  // ino 8, valid 4, mode 4, uid 4, gid 4, size 8 -> atime at 32: sec -1 as two's complement.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(b[32 + i], 0xFF);
  EXPECT_EQ(b[40], 7);
}

// ---- Limits ----

TEST(MetaProtocol, CorruptedLengthAndCountFields) {
  auto b = Encode(LookupRequest{1, "abc"});
  PutU32(&b, 8, 0xFFFFFFFF);
  Status s = DecodeAs<LookupRequest>(b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("LookupRequest.name"), std::string::npos) << s.ToString();

  b = Encode(LookupRequest{1, "abc"});
  PutU32(&b, 8, 4);  // one byte more than there is
  EXPECT_FALSE(DecodeAs<LookupRequest>(b).ok());
  PutU32(&b, 8, 2);  // one byte less: a trailing byte
  EXPECT_FALSE(DecodeAs<LookupRequest>(b).ok());

  // A count within its cap but more than the bytes could hold is refused before sizing.
  auto r = Encode(Make<ReaddirReply>());
  PutU32(&r, 0, kMaxReaddirEntries);
  s = DecodeAs<ReaddirReply>(r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("entries"), std::string::npos) << s.ToString();
  PutU32(&r, 0, 0xFFFFFFFF);
  s = DecodeAs<ReaddirReply>(r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("limit"), std::string::npos) << s.ToString();
}

TEST(MetaProtocol, RequestNamesDecodeSoTheServerCanAnswerWithAnErrno) {
  // 300 bytes is ENAMETOOLONG for the server to say; "." and "a/b" are its EINVAL.
  for (std::string name : {std::string(300, 'x'), std::string("."), std::string("a/b"),
                           std::string(""), std::string("nul\0in", 6), std::string(4096, 'y')}) {
    auto b = Encode(LookupRequest{1, name});
    EXPECT_EQ(Dec<LookupRequest>(b).name, name);
    auto c = Encode(RenameRequest{1, name, 2, name, 0});
    EXPECT_EQ(Dec<RenameRequest>(c).new_name, name);
  }
  // Past the hard cap it is garbage, not a name.
  EXPECT_FALSE(DecodeAs<LookupRequest>(Encode(LookupRequest{1, std::string(4097, 'z')})).ok());
  // A 70 KiB xattr value decodes (the server answers E2BIG).
  SetxattrRequest x{1, "user.big", std::string(70000, 'v'), 0};
  EXPECT_EQ(Dec<SetxattrRequest>(Encode(x)).value.size(), 70000u);
  // Values the server judges (max_entries 0, unknown flags) decode too.
  EXPECT_EQ(Dec<ReaddirRequest>(Encode(ReaddirRequest{1, 0, 0, false})).max_entries, 0u);
  EXPECT_EQ(Dec<RenameRequest>(Encode(RenameRequest{1, "a", 1, "b", 0x80})).flags, 0x80u);
}

TEST(MetaProtocol, ReplyEntryNamesMustBeValidNames) {
  for (std::string bad : {std::string(256, 'x'), std::string(""), std::string("."),
                          std::string(".."), std::string("a/b"), std::string("a\0b", 3)}) {
    ReaddirReply r;
    r.entries = {DirEntry{"ok", 1, 0, 1, {}}, DirEntry{bad, 2, 0, 2, {}}};
    r.last_cookie = 2;
    Status s = DecodeAs<ReaddirReply>(Encode(r));
    EXPECT_FALSE(s.ok()) << "entry name of " << bad.size() << " bytes accepted";
  }
  ReaddirReply r;
  r.entries = {DirEntry{std::string(255, 'x'), 1, 0, 1, {}}, DirEntry{"...", 2, 0, 2, {}}};
  r.last_cookie = 2;
  EXPECT_TRUE(DecodeAs<ReaddirReply>(Encode(r)).ok());
  // The listing's end is at or past every entry it came with.
  r.last_cookie = 1;
  Status s = DecodeAs<ReaddirReply>(Encode(r));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("last_cookie"), std::string::npos) << s.ToString();
}

template <class T, class Fill>
void ExpectCountLimit(uint32_t limit, Fill fill) {
  T ok;
  fill(&ok, limit);
  Status s = DecodeAs<T>(Encode(ok));
  EXPECT_TRUE(s.ok()) << s.ToString();
  T over;
  fill(&over, limit + 1);
  s = DecodeAs<T>(Encode(over));
  ASSERT_FALSE(s.ok()) << limit + 1 << " elements accepted";
  EXPECT_NE(s.message().find("limit"), std::string::npos) << s.ToString();
}

TEST(MetaProtocol, CountLimits) {
  ExpectCountLimit<ReaddirReply>(kMaxReaddirEntries, [](ReaddirReply* r, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) r->entries.push_back({"e" + std::to_string(i), i, 0, i, {}});
    r->last_cookie = n;
  });
  auto extents = [](std::vector<Extent>* v, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) v->push_back(Extent{uint64_t{i} * 4096, 4096, i, 0, 0});
  };
  ExpectCountLimit<LayoutReply>(kMaxExtentsPerReply,
                                [&](LayoutReply* r, uint32_t n) { extents(&r->extents, n); });
  ExpectCountLimit<AllocateReply>(kMaxExtentsPerReply,
                                  [&](AllocateReply* r, uint32_t n) { extents(&r->extents, n); });
  ExpectCountLimit<CommitRequest>(kMaxWrittenRanges, [](CommitRequest* r, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) r->written.push_back({uint64_t{i} * 4096, 4096});
  });
  ExpectCountLimit<ReleaseManyRequest>(kMaxReleasesPerRequest,
                                       [](ReleaseManyRequest* r, uint32_t n) {
                                         for (uint32_t i = 0; i < n; ++i)
                                           r->handles.push_back({i + 1, i + 100});
                                       });
  ExpectCountLimit<DirsReply>(kMaxChangedDirs, [](DirsReply* r, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) r->dirs.push_back(SampleDirAttr(i));
  });
  ExpectCountLimit<RegisterReply>(kMaxDataServers, [](RegisterReply* r, uint32_t n) {
    r->lease_ms = 1;
    r->cluster.block_size = 4096;
    r->cluster.stripe_unit = 4096;
    for (uint32_t i = 0; i < n; ++i) r->cluster.servers.push_back({i, "h:1", 4096});
  });
}

TEST(MetaProtocol, ScalarValidation) {
  // Booleans are 0 or 1.
  EXPECT_FALSE(DecodeAs<HeartbeatReply>(std::vector<uint8_t>{2}).ok());
  auto rd = Encode(ReaddirRequest{1, 2, 3, true});
  rd.back() = 0xFF;
  EXPECT_FALSE(DecodeAs<ReaddirRequest>(rd).ok());

  // nsec < 1e9, in requests and in replies' attributes.
  SetattrRequest s;
  s.mtime = {1, 999999999};
  EXPECT_TRUE(DecodeAs<SetattrRequest>(Encode(s)).ok());
  s.mtime = {1, 1000000000};
  Status st = DecodeAs<SetattrRequest>(Encode(s));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("mtime"), std::string::npos) << st.ToString();
  AttrReply a;
  a.attr.ctime.nsec = 0xFFFFFFFF;
  EXPECT_FALSE(DecodeAs<AttrReply>(Encode(a)).ok());
  CommitRequest c;
  c.mtime.nsec = 1000000000;
  EXPECT_FALSE(DecodeAs<CommitRequest>(Encode(c)).ok());
}

TEST(MetaProtocol, ReplyValidation) {
  // Extents: non-empty, no wrap-around, known flags, sorted and disjoint.
  auto with = [](std::vector<Extent> e) {
    AllocateReply r;
    r.extents = std::move(e);
    return DecodeAs<AllocateReply>(Encode(r));
  };
  EXPECT_TRUE(with({{0, 4096, 0, 0, 0}, {4096, 4096, 0, 1, 0}}).ok());
  EXPECT_FALSE(with({{0, 0, 0, 0, 0}}).ok());
  EXPECT_FALSE(with({{~0ull - 100, 4096, 0, 0, 0}}).ok());
  EXPECT_FALSE(with({{0, 4096, ~0ull - 100, 0, 0}}).ok());
  EXPECT_FALSE(with({{0, 4096, 0, 0, 4}}).ok());
  EXPECT_FALSE(with({{4096, 4096, 0, 0, 0}, {0, 4096, 0, 0, 0}}).ok());
  EXPECT_FALSE(with({{0, 8192, 0, 0, 0}, {4096, 4096, 0, 0, 0}}).ok());

  // Changed directories: the client serves them as a directory's attributes, so they
  // must be one (a directory's type, a real inode number).
  auto dirs = [](InodeAttr a) { return DecodeAs<DirsReply>(Encode(DirsReply{{a}})); };
  EXPECT_TRUE(dirs(SampleDirAttr(1)).ok());
  EXPECT_FALSE(dirs(SampleAttr(1)).ok());
  InodeAttr no_ino = SampleDirAttr(1);
  no_ino.ino = 0;
  EXPECT_FALSE(dirs(no_ino).ok());
  EntryReply e = Make<EntryReply>();
  e.dirs[0].mode = 0120777;
  EXPECT_FALSE(DecodeAs<EntryReply>(Encode(e)).ok());

  // The cluster description.
  auto reg = [](auto change) {
    RegisterReply r = Make<RegisterReply>();
    change(&r);
    return DecodeAs<RegisterReply>(Encode(r));
  };
  EXPECT_TRUE(reg([](RegisterReply*) {}).ok());
  EXPECT_FALSE(reg([](RegisterReply* r) { r->lease_ms = 0; }).ok());
  EXPECT_FALSE(reg([](RegisterReply* r) { r->cluster.block_size = 4097; }).ok());
  EXPECT_FALSE(reg([](RegisterReply* r) { r->cluster.block_size = 256; }).ok());
  EXPECT_FALSE(reg([](RegisterReply* r) { r->cluster.block_size = 2u << 20; }).ok());
  EXPECT_FALSE(reg([](RegisterReply* r) { r->cluster.stripe_unit = 4096 + 512; }).ok());
  EXPECT_FALSE(reg([](RegisterReply* r) { r->cluster.stripe_unit = 0; }).ok());
  EXPECT_FALSE(reg([](RegisterReply* r) { r->cluster.servers[1].index = 5; }).ok());
  EXPECT_FALSE(reg([](RegisterReply* r) { r->cluster.servers[0].endpoint.assign(513, 'h'); }).ok());

  // Readlink targets and xattrs.
  EXPECT_TRUE(DecodeAs<ReadlinkReply>(Encode(ReadlinkReply{std::string(4095, 't')})).ok());
  EXPECT_FALSE(DecodeAs<ReadlinkReply>(Encode(ReadlinkReply{std::string(4096, 't')})).ok());
  EXPECT_FALSE(DecodeAs<ReadlinkReply>(Encode(ReadlinkReply{std::string("a\0b", 3)})).ok());
  EXPECT_TRUE(DecodeAs<GetxattrReply>(Encode(GetxattrReply{std::string(65536, 'v')})).ok());
  EXPECT_FALSE(DecodeAs<GetxattrReply>(Encode(GetxattrReply{std::string(65537, 'v')})).ok());
  ListxattrReply l;
  l.names = {std::string(255, 'n')};
  EXPECT_TRUE(DecodeAs<ListxattrReply>(Encode(l)).ok());
  l.names = {std::string(256, 'n')};
  EXPECT_FALSE(DecodeAs<ListxattrReply>(Encode(l)).ok());
  l.names = {""};
  EXPECT_FALSE(DecodeAs<ListxattrReply>(Encode(l)).ok());
  l.names = {std::string("a\0b", 3)};
  EXPECT_FALSE(DecodeAs<ListxattrReply>(Encode(l)).ok());
  l.names.assign(256, std::string(255, 'n'));  // 256 * 256 bytes = exactly the list limit
  EXPECT_TRUE(DecodeAs<ListxattrReply>(Encode(l)).ok());
  l.names.push_back("x");
  EXPECT_FALSE(DecodeAs<ListxattrReply>(Encode(l)).ok());
}

// ---- Reply framing ----

TEST(MetaProtocol, SplitReply) {
  int err = -1;
  std::span<const uint8_t> body;
  std::vector<uint8_t> p;

  for (size_t n = 0; n < 4; ++n) {
    p.assign(n, 0);
    EXPECT_FALSE(SplitReply(p, &err, &body).ok()) << n;
  }
  p = {0, 0, 0, 0};
  ASSERT_TRUE(SplitReply(p, &err, &body).ok());
  EXPECT_EQ(err, 0);
  EXPECT_TRUE(body.empty());

  p = {0, 0, 0, 0, 9, 8};
  ASSERT_TRUE(SplitReply(p, &err, &body).ok());
  EXPECT_EQ(err, 0);
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0], 9);

  p = EncodeErrorReply(EEXIST);
  ASSERT_TRUE(SplitReply(p, &err, &body).ok());
  EXPECT_EQ(err, EEXIST);
  EXPECT_TRUE(body.empty());

  p.push_back(1);  // an error reply with a body
  EXPECT_FALSE(SplitReply(p, &err, &body).ok());
  p = {0xFF, 0xFF, 0xFF, 0xFF};  // -1
  EXPECT_FALSE(SplitReply(p, &err, &body).ok());
  p = {0x00, 0x10, 0x00, 0x00};  // 4096: beyond any errno
  EXPECT_FALSE(SplitReply(p, &err, &body).ok());

  // A caller bug (errno 0 or negative) still produces a readable error, EIO.
  for (int bad : {0, -2}) {
    p = EncodeErrorReply(bad);
    ASSERT_TRUE(SplitReply(p, &err, &body).ok());
    EXPECT_EQ(err, EIO);
  }
}

// The caller in front of every request: its group count comes from the peer, so it is
// capped (kMaxCallerGroups) and checked against the bytes before the groups are read.
TEST(MetaProtocol, CallerGroupCountIsCappedBeforeAllocation) {
  Credentials c;
  c.uid = 1000;
  c.gid = 100;
  for (uint32_t g = 0; g < 20; ++g) c.groups.push_back(g);  // past the inline 16
  const std::vector<uint8_t> body = {7, 8, 9};
  std::vector<uint8_t> p = EncodeCall(c, body);
  Credentials out;
  std::span<const uint8_t> rest;
  ASSERT_TRUE(SplitCall(p, &out, &rest).ok());
  EXPECT_EQ(out, c);
  EXPECT_TRUE(std::equal(rest.begin(), rest.end(), body.begin(), body.end()));

  auto with_count = [](uint32_t n, size_t groups_present) {
    std::vector<uint8_t> q(12 + 4 * groups_present, 0);
    std::memcpy(q.data() + 8, &n, 4);  // little-endian host (x86-64, aarch64)
    return q;
  };
  // Exactly the cap, all present: fine. One more (all present), or a count the bytes do
  // not hold: InvalidArgument, and no groups taken.
  ASSERT_TRUE(SplitCall(with_count(kMaxCallerGroups, kMaxCallerGroups), &out, &rest).ok());
  EXPECT_EQ(out.groups.size(), kMaxCallerGroups);
  for (auto [n, present] : {std::pair<uint32_t, size_t>{kMaxCallerGroups + 1, kMaxCallerGroups + 1},
                            {0xFFFFFFFFu, 4}, {40, 39}}) {
    const std::vector<uint8_t> q = with_count(n, present);
    Credentials fresh;
    Status st = SplitCall(q, &fresh, &rest);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << n << ": " << st.ToString();
    EXPECT_NE(st.message().find("groups"), std::string::npos) << st.ToString();
    EXPECT_TRUE(fresh.groups.empty());
  }
  for (size_t n = 0; n < kCredentialsMinSize; ++n) {
    EXPECT_FALSE(SplitCall(std::vector<uint8_t>(n, 0), &out, &rest).ok()) << n;
  }
}

TEST(MetaProtocol, CheckName) {
  EXPECT_EQ(CheckName("a"), 0);
  EXPECT_EQ(CheckName("..."), 0);
  EXPECT_EQ(CheckName(".hidden"), 0);
  EXPECT_EQ(CheckName(std::string(255, 'x')), 0);
  EXPECT_EQ(CheckName("\xFF\xFE"), 0);  // names are bytes, not UTF-8
  EXPECT_EQ(CheckName(std::string(256, 'x')), ENAMETOOLONG);
  EXPECT_EQ(CheckName(std::string(5000, '/')), ENAMETOOLONG);
  EXPECT_EQ(CheckName(""), EINVAL);
  EXPECT_EQ(CheckName("."), EINVAL);
  EXPECT_EQ(CheckName(".."), EINVAL);
  EXPECT_EQ(CheckName("a/b"), EINVAL);
  EXPECT_EQ(CheckName("/"), EINVAL);
  EXPECT_EQ(CheckName(std::string_view("a\0b", 3)), EINVAL);
  EXPECT_EQ(CheckName(std::string_view("\0", 1)), EINVAL);
}

TEST(MetaProtocol, OpcodeNamesAndMutations) {
  std::set<std::string_view> names;
  int mutations = 0;
  for (int i = 0; i < 64; ++i) {
    auto op = static_cast<Opcode>(i);
    std::string_view n = OpcodeName(op);
    if (n == "unknown") {
      EXPECT_FALSE(IsMutation(op)) << i;
      continue;
    }
    EXPECT_TRUE(names.insert(n).second) << "duplicate name " << n;
    mutations += IsMutation(op) ? 1 : 0;
  }
  EXPECT_EQ(names.size(), 34u);  // every opcode of the enum has a name
  EXPECT_EQ(OpcodeName(Opcode::kLookup), "lookup");
  EXPECT_EQ(OpcodeName(Opcode::kRemovexattr), "removexattr");
  EXPECT_EQ(OpcodeName(static_cast<Opcode>(999)), "unknown");
  for (Opcode op : {Opcode::kCreate, Opcode::kUnlink, Opcode::kRename, Opcode::kSetattr,
                    Opcode::kCommit, Opcode::kAllocate, Opcode::kSetxattr, Opcode::kReleaseMany}) {
    EXPECT_TRUE(IsMutation(op)) << OpcodeName(op);
  }
  for (Opcode op : {Opcode::kLookup, Opcode::kGetattr, Opcode::kReaddir, Opcode::kLayout,
                    Opcode::kHeartbeat, Opcode::kStatfs, Opcode::kGetxattr}) {
    EXPECT_FALSE(IsMutation(op)) << OpcodeName(op);
  }
  EXPECT_EQ(mutations, 18);
}

}  // namespace
}  // namespace dpmfs::meta
