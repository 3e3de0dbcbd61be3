#include "mkfs/private_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/unique_fd.h"

namespace dpmfs::mkfs {
namespace {

class PrivateMapping final : public pmem::PersistentMemory {
 public:
  PrivateMapping(std::string name, uint8_t* base, size_t size)
      : PersistentMemory(std::move(name), base, size, /*is_pmem=*/false) {}
  ~PrivateMapping() override { ::munmap(base(), size()); }

  // Nothing here is durable, by design (see the header).
  void Persist(const void*, size_t) override {}
  void Flush(const void*, size_t) override {}
  void Drain() override {}
  void MemcpyPersist(void* dst, const void* src, size_t len) override { std::memcpy(dst, src, len); }
  void MemsetPersist(void* dst, int c, size_t len) override { std::memset(dst, c, len); }
  Status Sync(const void*, size_t) override { return Status::OK(); }
};

}  // namespace

Result<std::unique_ptr<pmem::PersistentMemory>> MapPrivateCopy(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "cannot open " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "cannot stat " + path);
  if (S_ISCHR(st.st_mode)) {
    return Status::NotSupported(path +
                                " is a device-DAX device, which cannot be mapped copy-on-write; "
                                "copy it to a file (dd) and check the copy");
  }
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + " is not a regular file");
  if (st.st_size <= 0) return Status::InvalidArgument(path + " is empty: not a dpmfs pool");
  const size_t size = static_cast<size_t>(st.st_size);
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
  if (base == MAP_FAILED) return Status::FromErrno(errno, "cannot map " + path);
  return std::unique_ptr<pmem::PersistentMemory>(
      new PrivateMapping(path, static_cast<uint8_t*>(base), size));
}

}  // namespace dpmfs::mkfs
