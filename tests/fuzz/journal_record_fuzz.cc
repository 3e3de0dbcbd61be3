// libFuzzer target for the metadata journal's records (metadata/mutation.h): the bytes
// recovery reads back from the metadata pool and replays through Namespace::Mutate. The
// input is a journal: records of [u16 length][bytes], decoded and applied in order to a
// fresh namespace (ApplyRecord, as MetaStore::Recover's replay does), up to the first
// refusal. Properties:
//   - an accepted record re-encodes to exactly its bytes (the layout is canonical; a
//     first-version record to the same fields);
//   - after every record that applies, the namespace's invariants hold
//     (Namespace::CheckInvariants: entries name live inodes, link counts, parents,
//     handles, allocator usage against extents): a record that passes replay cannot
//     leave an impossible state behind;
//   - every refusal is a clean Status (fuzz_check.h), and ASan sees every byte read.
#include <algorithm>
#include <cstring>

#include "fuzz_check.h"
#include "metadata/mutation.h"
#include "metadata/namespace.h"
#include "namespace_config.h"

namespace {

using namespace dpmfs;
using namespace dpmfs::meta;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Namespace ns(fuzz::FuzzNamespaceConfig());
  size_t at = 0;
  for (uint64_t lsn = 1; at + 2 <= size && lsn <= 32; ++lsn) {
    const size_t len = std::min<size_t>(fuzz::Le(data + at, 2), size - at - 2);
    std::vector<uint8_t> rec = fuzz::Exact({data + at + 2, len});
    at += 2 + len;

    MutationRecord m;
    std::vector<PoolRange> ranges;
    Status decoded = DecodeMutation(rec, &m, &ranges);
    if (decoded.ok()) {
      FUZZ_CHECK(m.err >= 0 && m.err <= 4095, "accepted a record whose errno is no errno");
      std::vector<uint8_t> again;
      EncodeMutation(m, &again);
      if (fuzz::Le(rec.data(), 4) == 0x32524d44) {  // "DMR2", what EncodeMutation writes
        FUZZ_CHECK(again == rec, "accepted journal record re-encodes differently");
      } else {
        // A first-version record ("DMR1", no caller) re-encodes as the current version.
        MutationRecord m2;
        std::vector<PoolRange> ranges2;
        FUZZ_CHECK(DecodeMutation(again, &m2, &ranges2).ok() && m2.op == m.op &&
                       m2.session == m.session && m2.seq == m.seq && m2.err == m.err &&
                       m2.now.sec == m.now.sec && m2.now.nsec == m.now.nsec &&
                       std::equal(m2.request.begin(), m2.request.end(), m.request.begin(),
                                  m.request.end()) &&
                       ranges2.size() == ranges.size(),
                   "a first-version record changes when written as the current version");
      }
    } else {
      fuzz::CheckRefusal(decoded, "DecodeMutation");
    }

    Status applied = ApplyRecord(ns, lsn, rec);
    if (!applied.ok()) {
      fuzz::CheckRefusal(applied, "ApplyRecord");
      break;
    }
    FUZZ_CHECK(decoded.ok(), "a record that does not decode was applied");
    Status inv = ns.CheckInvariants();
    if (!inv.ok()) std::fprintf(stderr, "after LSN %llu: %s\n",
                                static_cast<unsigned long long>(lsn), inv.ToString().c_str());
    FUZZ_CHECK(inv.ok(), "replayed records left an inconsistent namespace");
  }
  return 0;
}
