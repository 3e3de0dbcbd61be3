// Internal to metadata/: the inode and directory records behind Namespace, shared by
// namespace.cc, the handlers (ops_*.cc) and checkpoint_codec.cc.
//
// Thread-safety: none (guarded by the Namespace's owner, like Namespace itself).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>

#include "metadata/extent_map.h"
#include "metadata/namespace.h"

namespace dpmfs::meta {

// A directory's entries. Names hash for lookups; cookies order readdir. A cookie is
// assigned from next_cookie when an entry is added and never changes while the entry
// exists (a rename adds a new entry), so a readdir resuming after cookie c sees every
// surviving entry exactly once. by_cookie points at the (name, entry) nodes of by_name,
// which do not move on rehash.
struct Namespace::Directory {
  struct Entry {
    InodeId ino = 0;
    uint64_t cookie = 0;
  };
  using NameMap = std::unordered_map<std::string, Entry>;
  NameMap by_name;
  std::map<uint64_t, NameMap::value_type*> by_cookie;
  uint64_t next_cookie = 1;  // 0 means "from the start" in a readdir request
};

struct Namespace::Inode {
  InodeAttr attr;       // attr.blocks is derived from `extents` when an attr is produced
  InodeId parent = 0;   // directories only: the one directory naming it (root: itself)
  std::string symlink;  // symlinks: the target
  std::map<std::string, std::string> xattrs;
  uint64_t xattr_list_bytes = 0;   // sum of (name length + 1), as listxattr returns them
  ExtentMap extents;               // regular files
  std::unique_ptr<Directory> dir;  // directories
  uint32_t open_count = 0;         // handles open on it, over every session

  bool is_dir() const { return S_ISDIR(attr.mode); }
  bool is_reg() const { return S_ISREG(attr.mode); }
};

// A bounds-checked little-endian reader for journal records and checkpoints: never reads
// outside its span; the first failure is kept (field and byte offset) and turns every
// later read into a no-op returning zeros. Errors are Corruption: these bytes come from
// the metadata pool, not from the wire. Thread-safety: a value used by one thread.
class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> in, const char* what) : in_(in), what_(what) {}
  void U16(const char* f, uint16_t& v) { v = static_cast<uint16_t>(Get(f, 2)); }
  void U32(const char* f, uint32_t& v) { v = static_cast<uint32_t>(Get(f, 4)); }
  void U64(const char* f, uint64_t& v) { v = Get(f, 8); }
  void I32(const char* f, int32_t& v) {
    v = static_cast<int32_t>(static_cast<uint32_t>(Get(f, 4)));
  }
  void I64(const char* f, int64_t& v) { v = static_cast<int64_t>(Get(f, 8)); }
  void Bytes(const char* f, std::string& s, size_t cap) {
    const uint64_t len = Get(f, 4);
    if (!ok_) return;
    if (len > cap || len > left()) {
      Fail(f, "has length " + std::to_string(len) + " (limit " + std::to_string(cap) + ", " +
                  std::to_string(left()) + " bytes left)");
      return;
    }
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), len);
    pos_ += len;
  }
  void Require(bool cond, const char* what) {
    if (ok_ && !cond) Fail(nullptr, what);
  }
  bool ok() const { return ok_; }
  size_t left() const { return in_.size() - pos_; }
  size_t position() const { return pos_; }
  // OK when every read succeeded and every byte was consumed.
  Status Finish() {
    if (ok_ && pos_ != in_.size()) Fail(nullptr, "is followed by trailing bytes");
    return ok_ ? Status::OK() : Status::Corruption(error_);
  }
  void Fail(const char* field, const std::string& what) {
    if (!ok_) return;
    ok_ = false;
    error_ = std::string(what_) + (field ? std::string(" field '") + field + "'" : "") + " (byte " +
             std::to_string(pos_) + " of " + std::to_string(in_.size()) + ") " + what;
  }

 private:
  uint64_t Get(const char* f, int n) {
    if (!ok_) return 0;
    if (static_cast<size_t>(n) > left()) {
      Fail(f, "is truncated");
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t{in_[pos_ + i]} << (8 * i);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  std::span<const uint8_t> in_;
  const char* what_;
  size_t pos_ = 0;
  bool ok_ = true;
  std::string error_;
};

inline uint64_t RoundUp(uint64_t v, uint64_t unit) { return (v + unit - 1) / unit * unit; }
inline uint64_t RoundDown(uint64_t v, uint64_t unit) { return v / unit * unit; }

}  // namespace dpmfs::meta
