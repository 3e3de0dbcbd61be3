// libFuzzer target for the metadata checkpoint blob (metadata/checkpoint_codec.cc,
// Namespace::Load): the namespace state recovery reads back from a checkpoint slot of
// the metadata pool. The input is the blob, loaded into a namespace of the geometry in
// namespace_config.h. Properties:
//   - a blob that loads describes a consistent namespace (Load runs CheckInvariants;
//     checked again here);
//   - Serialize of what was loaded loads again and serializes to the same bytes
//     (Serialize is deterministic; Load accepts whatever Serialize writes);
//   - every refusal is a clean Status (fuzz_check.h), and ASan sees every byte read.
#include "fuzz_check.h"
#include "metadata/namespace.h"
#include "namespace_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dpmfs;
  using namespace dpmfs::meta;
  std::vector<uint8_t> blob = fuzz::Exact({data, size});
  Namespace ns(fuzz::FuzzNamespaceConfig());
  Status st = ns.Load(blob);
  if (!st.ok()) {
    fuzz::CheckRefusal(st, "Namespace::Load");
    return 0;
  }
  FUZZ_CHECK(ns.CheckInvariants().ok(), "Load accepted an inconsistent namespace");
  std::vector<uint8_t> out = ns.Serialize();
  Namespace again(fuzz::FuzzNamespaceConfig());
  Status st2 = again.Load(out);
  if (!st2.ok()) std::fprintf(stderr, "reload: %s\n", st2.ToString().c_str());
  FUZZ_CHECK(st2.ok(), "Load refuses what Serialize wrote");
  FUZZ_CHECK(again.Serialize() == out, "Serialize(Load(Serialize(x))) differs");
  return 0;
}
