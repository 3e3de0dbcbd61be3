// A short, fixed metadata workload run on a live namespace as MetaService runs one: the
// journal records it produces and the state after each. The seed generator
// (make_seeds.cc) writes them as seeds, and meta_store_fuzz builds its template pool
// image from them, so the fuzzers start from real encodings of every kind of record
// (mkdir, create, allocate + commit, symlink, xattr, rename, link, unlink, release).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <vector>

#include "metadata/meta_protocol.h"
#include "metadata/mutation.h"
#include "metadata/namespace.h"
#include "namespace_config.h"

namespace dpmfs::fuzz {

struct MetaWorkload {
  std::vector<std::vector<uint8_t>> records;  // EncodeMutation of each operation
  std::vector<std::vector<uint8_t>> states;   // Serialize() after records[i]
};

inline MetaWorkload RunMetaWorkload() {
  using namespace meta;
  MetaWorkload w;
  Namespace ns(FuzzNamespaceConfig());
  uint64_t seq = 0;
  auto mutate = [&](Opcode op, const std::vector<uint8_t>& payload) {
    OpContext ctx;
    ++seq;
    ctx.now = Timespec{1700000000 + static_cast<int64_t>(seq), static_cast<uint32_t>(seq)};
    ctx.session = 0x5e55;
    ctx.seq = seq;
    ctx.lease_deadline_ms = 1;
    int err = -1;
    auto reply = ns.Mutate(static_cast<uint16_t>(op), payload, ctx, &err);
    std::vector<uint8_t> bytes;
    EncodeMutation(RecordOf(static_cast<uint16_t>(op), ctx, err, payload), &bytes);
    w.records.push_back(std::move(bytes));
    w.states.push_back(ns.Serialize());
    std::vector<uint8_t> body;
    int e = -1;
    std::span<const uint8_t> b;
    if (reply.ok() && SplitReply(*reply, &e, &b).ok() && e == 0) body.assign(b.begin(), b.end());
    return body;
  };
  mutate(Opcode::kRegister, Encode(RegisterRequest{"fuzz:1 /mnt"}));
  // A step that fails leaves its reply empty and the next steps fail in turn: still a
  // workload, so the decode results are not checked.
  EntryReply dir;
  (void)Decode(mutate(Opcode::kMkdir, Encode(MkdirRequest{kRootInode, "d", 0755, 1, 2})), &dir);
  CreateReply file;
  (void)Decode(mutate(Opcode::kCreate,
                      Encode(CreateRequest{dir.attr.ino, "f", S_IFREG | 0644, 1000, 1000, 0})),
               &file);
  mutate(Opcode::kAllocate, Encode(AllocateRequest{file.attr.ino, 0, 3 * kFuzzBlock}));
  CommitRequest c;
  c.ino = file.attr.ino;
  c.valid = CommitRequest::kSize;
  c.new_size = 3 * kFuzzBlock - 100;
  c.mtime = Timespec{1800000000, 7};
  c.written = {{0, 3 * kFuzzBlock}};
  mutate(Opcode::kCommit, Encode(c));
  mutate(Opcode::kSymlink, Encode(SymlinkRequest{kRootInode, "s", "d/f", 0, 0}));
  mutate(Opcode::kSetxattr, Encode(SetxattrRequest{dir.attr.ino, "user.k", "value", 0}));
  mutate(Opcode::kLink, Encode(LinkRequest{file.attr.ino, kRootInode, "hard"}));
  mutate(Opcode::kRename, Encode(RenameRequest{dir.attr.ino, "f", kRootInode, "g", 0}));
  mutate(Opcode::kMkdir, Encode(MkdirRequest{kRootInode, "d", 0755, 0, 0}));  // EEXIST
  mutate(Opcode::kRelease, Encode(ReleaseRequest{file.attr.ino, file.handle}));
  mutate(Opcode::kUnlink, Encode(UnlinkRequest{kRootInode, "hard"}));
  return w;
}

}  // namespace dpmfs::fuzz
