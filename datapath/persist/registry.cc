// The persist methods dpmfs knows: one row per method (its file in this folder).
#include "datapath/persist/persist_strategy.h"

namespace dpmfs::datapath::persist {

const PersistStrategy& NoneStrategy();
const PersistStrategy& Read2Strategy();
const PersistStrategy& ReadStrategy();
const PersistStrategy& ImmStrategy();
const PersistStrategy& RpcStrategy();
const PersistStrategy& FlushStrategy();

std::span<const PersistStrategy* const> All() {
  // A function-local table: safe to use from other files' static initializers.
  static const PersistStrategy* const registry[] = {
      &NoneStrategy(), &Read2Strategy(), &ReadStrategy(),
      &ImmStrategy(),  &RpcStrategy(),   &FlushStrategy(),
  };
  return registry;
}

const PersistStrategy* Find(PersistMethod m) {
  for (const PersistStrategy* s : All()) {
    if (s->method() == m) return s;
  }
  return nullptr;
}

const PersistStrategy& Of(PersistMethod m) {
  const PersistStrategy* s = Find(m);
  return s != nullptr ? *s : ReadStrategy();  // unreachable for a registered value
}

transport::WorkRequest DataWrite(const WriteChain& w, bool signaled, Step step) {
  transport::WorkRequest r;
  r.opcode = transport::Opcode::kWrite;
  r.signaled = signaled;
  r.context = StepContext(step, w.slot);
  r.local_addr = w.data;
  r.length = w.length;
  r.lkey = w.lkey;
  r.remote_addr = w.server->pool.addr + w.offset;
  r.rkey = w.server->pool.rkey;
  return r;
}

transport::WorkRequest PersistingRead(const WriteChain& w) {
  transport::WorkRequest r;
  r.opcode = transport::Opcode::kRead;
  r.signaled = true;
  r.context = StepContext(Step::kDone, w.slot);
  r.local_addr = w.scratch;
  r.length = w.length > 0 ? 1 : 0;
  r.lkey = w.lkey;
  r.remote_addr = w.server->pool.addr + w.offset + (w.length > 0 ? w.length - 1 : 0);
  r.rkey = w.server->pool.rkey;
  return r;
}

}  // namespace dpmfs::datapath::persist
