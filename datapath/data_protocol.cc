#include "datapath/data_protocol.h"

#include <bit>
#include <cstring>
#include <string>

namespace dpmfs::datapath {
namespace {

static_assert(std::endian::native == std::endian::little, "data protocol is little-endian");

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>* out) : out_(out) {}
  template <typename T>
  void Put(T v) {
    size_t at = out_->size();
    out_->resize(at + sizeof v);
    std::memcpy(out_->data() + at, &v, sizeof v);
  }
  void PutBytes(std::span<const uint8_t> b) { out_->insert(out_->end(), b.begin(), b.end()); }

 private:
  std::vector<uint8_t>* out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  template <typename T>
  bool Get(T* v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetBytes(std::span<uint8_t> b) {
    if (in_.size() - pos_ < b.size()) return false;
    std::memcpy(b.data(), in_.data() + pos_, b.size());
    pos_ += b.size();
    return true;
  }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

Status CheckHeader(Reader& r, const char* what) {
  uint32_t magic = 0;
  uint16_t version = 0;
  if (!r.Get(&magic) || !r.Get(&version)) {
    return Status::Corruption(std::string(what) + " too short");
  }
  if (magic != kDataProtocolMagic) {
    return Status::Corruption(std::string(what) + " is not from dpmfs (bad magic)");
  }
  if (version != kDataProtocolVersion) {
    return Status::NotSupported(std::string(what) + " has protocol version " +
                                std::to_string(version) + "; this dpmfs speaks " +
                                std::to_string(kDataProtocolVersion));
  }
  return Status::OK();
}

}  // namespace

std::vector<uint8_t> EncodeConnectRequest(const ConnectRequest& req) {
  std::vector<uint8_t> out;
  Writer w(&out);
  w.Put(kDataProtocolMagic);
  w.Put(kDataProtocolVersion);
  w.Put(static_cast<uint8_t>(req.method));
  w.Put(uint8_t{0});
  w.Put(req.queue_depth);
  w.Put(req.max_io_size);
  return out;
}

Result<ConnectRequest> DecodeConnectRequest(std::span<const uint8_t> data) {
  Reader r(data);
  DPMFS_RETURN_IF_ERROR(CheckHeader(r, "connection request"));
  uint8_t method = 0, pad = 0;
  ConnectRequest req;
  if (!r.Get(&method) || !r.Get(&pad) || !r.Get(&req.queue_depth) || !r.Get(&req.max_io_size)) {
    return Status::Corruption("connection request too short");
  }
  if (method > static_cast<uint8_t>(PersistMethod::kFlush)) {
    return Status::InvalidArgument("unknown persist method " + std::to_string(method));
  }
  req.method = static_cast<PersistMethod>(method);
  if (req.queue_depth == 0 || req.queue_depth > kMaxQueueDepth) {
    return Status::InvalidArgument("queue depth " + std::to_string(req.queue_depth) +
                                   " outside 1.." + std::to_string(kMaxQueueDepth));
  }
  if (req.max_io_size == 0 || req.max_io_size > kMaxIoSize) {
    return Status::InvalidArgument("I/O size " + std::to_string(req.max_io_size) +
                                   " outside 1.." + std::to_string(kMaxIoSize));
  }
  return req;
}

std::vector<uint8_t> EncodeServerInfo(const ServerInfo& s) {
  std::vector<uint8_t> out;
  Writer w(&out);
  w.Put(kDataProtocolMagic);
  w.Put(kDataProtocolVersion);
  w.Put(static_cast<uint16_t>(s.is_pmem ? 1 : 0));
  w.Put(s.pool.addr);
  w.Put(s.pool.length);
  w.Put(s.pool.rkey);
  w.Put(s.ring.addr);
  w.Put(s.ring.length);
  w.Put(s.ring.rkey);
  w.PutBytes(s.cluster);
  w.Put(s.pool_index);
  w.Put(s.block_size);
  return out;
}

Result<ServerInfo> DecodeServerInfo(std::span<const uint8_t> data) {
  Reader r(data);
  DPMFS_RETURN_IF_ERROR(CheckHeader(r, "server reply"));
  ServerInfo s;
  uint16_t flags = 0;
  if (!r.Get(&flags) || !r.Get(&s.pool.addr) || !r.Get(&s.pool.length) || !r.Get(&s.pool.rkey) ||
      !r.Get(&s.ring.addr) || !r.Get(&s.ring.length) || !r.Get(&s.ring.rkey) ||
      !r.GetBytes(s.cluster) || !r.Get(&s.pool_index) || !r.Get(&s.block_size)) {
    return Status::Corruption("server reply too short");
  }
  s.is_pmem = (flags & 1) != 0;
  if (s.pool.length == 0) return Status::Corruption("server reply names an empty pool");
  if (s.pool.addr + s.pool.length < s.pool.addr) {
    return Status::Corruption("server reply names a pool that wraps the address space");
  }
  return s;
}

void EncodeDescriptor(const WriteDescriptor& d, uint8_t out[kDescriptorSize]) {
  std::memset(out, 0, kDescriptorSize);
  std::memcpy(out, &kDataProtocolMagic, 4);
  std::memcpy(out + 4, &d.slot, 4);
  std::memcpy(out + 8, &d.offset, 8);
  std::memcpy(out + 16, &d.length, 4);
  std::memcpy(out + 20, &d.flags, 4);
}

Result<WriteDescriptor> DecodeDescriptor(std::span<const uint8_t> in) {
  if (in.size() < kDescriptorSize) return Status::Corruption("write descriptor too short");
  uint32_t magic;
  std::memcpy(&magic, in.data(), 4);
  if (magic != kDataProtocolMagic) return Status::Corruption("write descriptor has a bad magic");
  WriteDescriptor d;
  std::memcpy(&d.slot, in.data() + 4, 4);
  std::memcpy(&d.offset, in.data() + 8, 8);
  std::memcpy(&d.length, in.data() + 16, 4);
  std::memcpy(&d.flags, in.data() + 20, 4);
  if ((d.flags & ~kDescriptorZero) != 0) {
    return Status::Corruption("write descriptor has unknown flags " + std::to_string(d.flags));
  }
  return d;
}

void EncodeReply(const Reply& r, uint8_t out[kReplySize]) {
  std::memset(out, 0, kReplySize);
  std::memcpy(out, &kDataProtocolMagic, 4);
  std::memcpy(out + 4, &r.slot, 4);
  int32_t code = static_cast<int32_t>(r.code);
  std::memcpy(out + 8, &code, 4);
}

Result<Reply> DecodeReply(std::span<const uint8_t> in) {
  if (in.size() < kReplySize) return Status::Corruption("reply too short");
  uint32_t magic;
  std::memcpy(&magic, in.data(), 4);
  if (magic != kDataProtocolMagic) return Status::Corruption("reply has a bad magic");
  Reply r;
  int32_t code;
  std::memcpy(&r.slot, in.data() + 4, 4);
  std::memcpy(&code, in.data() + 8, 4);
  if (code < 0 || code > static_cast<int32_t>(StatusCode::kInternal)) {
    return Status::Corruption("reply has an unknown status " + std::to_string(code));
  }
  r.code = static_cast<StatusCode>(code);
  return r;
}

}  // namespace dpmfs::datapath
