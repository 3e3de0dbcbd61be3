// Writes the seed corpus of every target in tests/fuzz (tests/fuzz/README.md): valid
// encodings made by the real encoders, a few per decoder, a few KiB per target. Run it
// from the fuzz build when a format changes and commit the result:
//
//   build-fuzz/tests/fuzz_make_seeds tests/fuzz/corpus
//
// Deterministic: the same tree writes the same files.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "datapath/data_protocol.h"
#include "meta_store_image.h"
#include "meta_workload.h"
#include "metadata/meta_protocol.h"
#include "rpc/rpc_protocol.h"
#include "transport/soft/soft_wire.h"

namespace {

using namespace dpmfs;
using Bytes = std::vector<uint8_t>;

std::filesystem::path root;

void Write(const std::string& target, const std::string& name, const Bytes& bytes) {
  std::filesystem::path dir = root / target;
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes Le(uint64_t v, int n) {
  Bytes b(static_cast<size_t>(n));
  fuzz::PutLe(b.data(), v, n);
  return b;
}

void RpcSeeds() {
  const std::string t = "rpc_protocol_fuzz";
  rpc::MessageHeader h;
  h.opcode = 14;
  h.request_id = 7;
  h.session = 0x5e55;
  h.seq = 3;
  h.payload_len = 5;
  Bytes msg(rpc::kHeaderSize + 5, 'p');
  rpc::EncodeHeader(h, msg.data());
  Write(t, "request", Cat({{0}, Le(rpc::kDefaultMessageSize, 4), msg}));
  h.kind = rpc::MessageKind::kResponse;
  h.status = static_cast<int32_t>(StatusCode::kNotFound);
  h.payload_len = 0;
  Bytes reply(rpc::kHeaderSize);
  rpc::EncodeHeader(h, reply.data());
  Write(t, "response", Cat({{0}, Le(rpc::kMinMessageSize, 4), reply}));
  Write(t, "connect", Cat({{1}, rpc::EncodeConnectRequest({0x5e55, 65536, 16})}));
  Write(t, "accept", Cat({{2}, rpc::EncodeConnectReply({65536, 16})}));
}

void DataProtocolSeeds() {
  const std::string t = "data_protocol_fuzz";
  using namespace datapath;
  Write(t, "connect", Cat({{0}, EncodeConnectRequest({PersistMethod::kImm, 16, 1u << 20})}));
  ServerInfo s;
  s.pool = {0x7f0000000000, 1ull << 30, 0x1234};
  s.ring = {0x7f1000000000, 16 * kDescriptorSize, 0x5678};
  for (size_t i = 0; i < s.cluster.size(); ++i) s.cluster[i] = static_cast<uint8_t>(i + 1);
  s.pool_index = 1;
  s.block_size = 4096;
  s.is_pmem = true;
  Write(t, "server_info", Cat({{1}, EncodeServerInfo(s)}));
  Bytes d(kDescriptorSize);
  EncodeDescriptor({1 << 20, 4096, 3, 0}, d.data());
  Write(t, "descriptor", Cat({{2}, d}));
  EncodeDescriptor({0, 1 << 20, 0, kDescriptorZero}, d.data());
  Write(t, "descriptor_zero", Cat({{2}, d}));
  Bytes r(kReplySize);
  EncodeReply({3, StatusCode::kIOError}, r.data());
  Write(t, "reply", Cat({{3}, r}));
  AdminRequest fence;
  fence.kind = AdminKind::kFence;
  fence.epoch = 7;
  Write(t, "admin_fence", Cat({{4}, EncodeAdminRequest(fence)}));
  AdminRequest level;
  level.kind = AdminKind::kLogLevel;
  level.level = "debug";
  Write(t, "admin_log_level", Cat({{4}, EncodeAdminRequest(level)}));
}

void SoftWireSeeds() {
  using namespace transport::soft;
  const std::string t = "soft_wire_fuzz";
  auto frame = [&](const char* name, FrameType type, uint32_t payload, uint32_t length) {
    FrameHeader h;
    h.type = type;
    h.flags = kFlagSignaled;
    h.payload_len = payload;
    h.length = length;
    h.seq = 42;
    h.remote_addr = 0x7f0000001000;
    h.rkey = 0x1234;
    h.imm = 5;
    Bytes b(kHeaderSize);
    EncodeHeader(h, b.data());
    Write(t, name, b);
  };
  frame("write", FrameType::kWrite, 4096, 4096);
  frame("write_imm", FrameType::kWriteWithImm, 64, 64);
  frame("read", FrameType::kRead, 0, 4096);
  frame("send", FrameType::kSend, 100, 100);
  frame("flush", FrameType::kFlush, 0, 0);
  frame("ack", FrameType::kAck, 0, 0);
  frame("read_response", FrameType::kReadResponse, 4096, 4096);
  frame("nak", FrameType::kNak, 0, 0);
  frame("connect", FrameType::kConnect, 16, 0);
  frame("accept", FrameType::kAccept, 72, 0);
  frame("reject", FrameType::kReject, 20, 0);
}

void PoolHeaderSeeds() {
  namespace L = pool::layout;
  auto image = [](pool::Role role, uint32_t bs, uint64_t data_size) {
    const uint64_t size = pool::kHeaderSize + data_size;
    Bytes img(size, 0);
    uint8_t* h = img.data();
    std::memcpy(h, pool::kMagic.data(), pool::kMagic.size());
    fuzz::PutLe(h + L::kVersionOffset, pool::kFormatVersion, 4);
    fuzz::PutLe(h + L::kRoleOffset, static_cast<uint32_t>(role), 4);
    for (int i = 0; i < 16; ++i) h[L::kClusterOffset + i] = static_cast<uint8_t>(i * 7 + 1);
    fuzz::PutLe(h + L::kIndexOffset, role == pool::Role::kData ? 1 : 0, 4);
    fuzz::PutLe(h + L::kBlockSizeOffset, bs, 4);
    fuzz::PutLe(h + L::kPoolSizeOffset, size, 8);
    fuzz::PutLe(h + L::kDataOffsetOffset, pool::kHeaderSize, 8);
    fuzz::PutLe(h + L::kDataSizeOffset, data_size, 8);
    fuzz::PutLe(h + L::kHeaderCrcOffset, pool::HeaderCrc(h), 4);
    return img;
  };
  Write("pool_header_fuzz", "data_512", Cat({{0}, image(pool::Role::kData, 512, 1024)}));
  Write("pool_header_fuzz", "meta_4096", Cat({{1}, image(pool::Role::kMetadata, 4096, 4096)}));
}

void JournalAndCheckpointSeeds() {
  fuzz::MetaWorkload w = fuzz::RunMetaWorkload();
  Bytes journal;
  for (size_t i = 0; i < w.records.size(); ++i) {
    const Bytes& r = w.records[i];
    Write("journal_record_fuzz", "record_" + std::to_string(i), Cat({Le(r.size(), 2), r}));
    journal = Cat({journal, Le(r.size(), 2), r});
  }
  Write("journal_record_fuzz", "journal", journal);
  meta::Namespace empty(fuzz::FuzzNamespaceConfig());
  Write("checkpoint_fuzz", "empty", empty.Serialize());
  for (size_t i : {3, 8, 12}) {
    if (i < w.states.size()) Write("checkpoint_fuzz", "state_" + std::to_string(i), w.states[i]);
  }
}

void MetaStoreSeeds() {
  const std::string t = "meta_store_fuzz";
  Write(t, "intact", {0});
  Write(t, "intact_fixed", {1});
  // The durable-LSN word zeroed, a record's length changed (checksums fixed), the
  // checkpoint slot header's generation changed: three different paths of Recover.
  fuzz::MetaStoreImage img = fuzz::BuildMetaStoreImage();
  auto patch_at = [&](uint64_t off, const Bytes& bytes) {
    return Cat({Le(off * 65536 / img.bytes.size() + ((off * 65536) % img.bytes.size() != 0), 2),
                Le(bytes.size(), 1), bytes});
  };
  const uint64_t j = img.superblock.journal_offset;
  Write(t, "durable_zero", Cat({{0}, patch_at(j + meta::store_layout::kDurableLsnOffset, Bytes(8, 0))}));
  Write(t, "record_len", Cat({{1}, patch_at(j + meta::store_layout::kRecordAreaOffset + 4, Le(3, 4))}));
  Write(t, "slot_generation",
        Cat({{1}, patch_at(img.superblock.checkpoint_offset[0] + 8, Le(9, 8))}));
}

void ClusterFileSeeds() {
  const std::string t = "cluster_file_fuzz";
  auto text = [](const std::string& s) { return Bytes(s.begin(), s.end()); };
  Write(t, "one_host", text("# tools/dpmfs up\n"
                            "cluster_uuid 1b4e28ba-2fa1-41d2-883f-0016d3cca427\n"
                            "block_size 4K\nstripe_unit 1M\n"
                            "meta 127.0.0.1:7000 /dev/shm/dpmfs/meta.pool 256M\n"
                            "data 127.0.0.1:7001 /dev/shm/dpmfs/data0.pool 1G\n"
                            "data 127.0.0.1:7002 data1.pool 2GiB  # relative\n"));
  Write(t, "ipv6", text("meta [::1]:7000 m.pool 64M\ndata [fe80::1]:7001 /p/d.pool 4M\n"));
}

template <class T>
void MetaMessageSeed(size_t index, const char* name) {
  Write("meta_decode_fuzz", name, Cat({{static_cast<uint8_t>(index)}, meta::Encode(T{})}));
}

void MetaDecodeSeeds() {
  size_t i = 0;
#define X(T) MetaMessageSeed<meta::T>(i++, #T);
  DPMFS_META_MESSAGES(X)
#undef X
  meta::CreateRequest c{meta::kRootInode, "file", S_IFREG | 0644, 1000, 1000, 0};
  size_t create = 0, k = 0;
#define X(T) if (std::string(#T) == "CreateRequest") create = k; ++k;
  DPMFS_META_MESSAGES(X)
#undef X
  Write("meta_decode_fuzz", "CreateRequest_file", Cat({{static_cast<uint8_t>(create)}, meta::Encode(c)}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (e.g. tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  root = argv[1];
  RpcSeeds();
  DataProtocolSeeds();
  SoftWireSeeds();
  PoolHeaderSeeds();
  JournalAndCheckpointSeeds();
  MetaStoreSeeds();
  ClusterFileSeeds();
  MetaDecodeSeeds();
  return 0;
}
