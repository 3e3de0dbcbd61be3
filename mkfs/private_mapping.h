// PrivateMapping: a pool file mapped copy-on-write (MAP_PRIVATE over a read-only
// descriptor), behind the persistent-memory seam, for mkfs.dpmfs check.
//
// Why: recovering the namespace (MetaStore::Recover) is the metadata server's own code,
// and that code writes: it finishes an interrupted checkpoint, zeroes a torn journal
// tail and raises the durable-LSN word. The check must run exactly that code and still
// leave the pool as it found it. With a private mapping every store lands in this
// process's own copies of the pages and the file is opened O_RDONLY, so nothing can
// reach it: the guarantee comes from the kernel, not from reading Recover carefully.
// "Persist" and "Sync" are no-ops (there is nothing durable to make).
//
// A device-DAX pool cannot be mapped privately (the driver refuses MAP_PRIVATE): copy
// it to a file (dd) and check the copy.
//
// Thread-safety: as PersistentMemory (the owner's thread).
#pragma once

#include <memory>
#include <string>

#include "common/persistent_memory.h"
#include "common/status.h"

namespace dpmfs::mkfs {

// The whole file at `path`, mapped copy-on-write. NotSupported for a character device;
// IOError (with the errno's text) when it cannot be opened or mapped.
Result<std::unique_ptr<pmem::PersistentMemory>> MapPrivateCopy(const std::string& path);

}  // namespace dpmfs::mkfs
