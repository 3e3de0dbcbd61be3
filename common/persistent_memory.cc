#include "common/persistent_memory.h"

#include <libpmem.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>

namespace dpmfs::pmem {
namespace {

// libpmem. Persist is pmem_persist also on the page cache: there it only flushes CPU
// caches, which is all a process crash needs (the page cache outlives the process).
class LibpmemMemory final : public PersistentMemory {
 public:
  LibpmemMemory(std::string path, uint8_t* base, size_t size, bool is_pmem)
      : PersistentMemory(std::move(path), base, size, is_pmem) {}
  ~LibpmemMemory() override {
    if (::pmem_unmap(base(), size()) != 0) {
      spdlog::warn("cannot unmap pool {}: {}", name(), std::strerror(errno));
    }
  }

  void Persist(const void* addr, size_t len) override {
    assert(Contains(addr, len));
    if (len != 0) ::pmem_persist(addr, len);
  }
  void Flush(const void* addr, size_t len) override {
    assert(Contains(addr, len));
    if (len != 0) ::pmem_flush(addr, len);
  }
  void Drain() override { ::pmem_drain(); }
  void MemcpyPersist(void* dst, const void* src, size_t len) override {
    assert(Contains(dst, len));
    if (len != 0) ::pmem_memcpy_persist(dst, src, len);
  }
  void MemsetPersist(void* dst, int c, size_t len) override {
    assert(Contains(dst, len));
    if (len != 0) ::pmem_memset_persist(dst, c, len);
  }
  Status Sync(const void* addr, size_t len) override {
    if (!Contains(addr, len)) {
      return Status::OutOfRange("persist range of " + std::to_string(len) +
                                " bytes lies outside the mapping of pool " + name());
    }
    if (len == 0) return Status::OK();
    if (is_pmem()) {
      ::pmem_persist(addr, len);
      return Status::OK();
    }
    if (::pmem_msync(addr, len) != 0) {
      return Status::FromErrno(errno, "cannot msync pool " + name());
    }
    return Status::OK();
  }
};

}  // namespace

bool PersistentMemory::Contains(const void* addr, size_t len) const {
  auto p = reinterpret_cast<uintptr_t>(addr);
  auto b = reinterpret_cast<uintptr_t>(base_);
  return base_ != nullptr && p >= b && p - b <= size_ && len <= size_ - (p - b);
}

bool IsCharDevice(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
}

Result<std::unique_ptr<PersistentMemory>> MapPersistentMemory(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT) {
      if (std::filesystem::path(path).lexically_normal().parent_path() == "/dev") {
        return Status::NotFound("device-DAX pool " + path +
                                " does not exist: no such device (`ndctl list -N` lists the "
                                "PM namespaces; `ndctl create-namespace -m devdax` makes one)");
      }
      return Status::NotFound("pool file " + path + " does not exist");
    }
    return Status::FromErrno(err, "cannot stat pool " + path);
  }
  if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
    return Status::NotSupported(path +
                                " is neither a regular file nor a device-DAX device; dpmfs "
                                "pools are files (on tmpfs or a DAX-mounted file system) or "
                                "device-DAX devices (/dev/daxX.Y)");
  }
  size_t len = 0;
  int is_pmem = 0;
  // Length 0 and no flags: a file is mapped whole, and a device-DAX device too (libpmem
  // refuses any other length or flag for one).
  void* addr = ::pmem_map_file(path.c_str(), 0, 0, 0, &len, &is_pmem);
  if (addr == nullptr) {
    int err = errno;
    std::string what = S_ISCHR(st.st_mode) ? "cannot map device-DAX pool " : "cannot map pool ";
    return Status::IOError(what + path + ": " + ::pmem_errormsg() + " (" + std::strerror(err) +
                           ")");
  }
  return std::unique_ptr<PersistentMemory>(
      new LibpmemMemory(path, static_cast<uint8_t*>(addr), len, is_pmem != 0));
}

}  // namespace dpmfs::pmem
