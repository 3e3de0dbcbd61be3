#include "datapath/persist_method.h"

#include <string>

#include "datapath/persist/persist_strategy.h"

namespace dpmfs::datapath {

std::string_view PersistMethodName(PersistMethod m) {
  const persist::PersistStrategy* s = persist::Find(m);
  return s != nullptr ? s->name() : "unknown";
}

Result<PersistMethod> ParsePersistMethod(std::string_view name) {
  std::string known;
  for (const persist::PersistStrategy* s : persist::All()) {
    if (s->name() == name) return s->method();
    known += known.empty() ? "" : ", ";
    known += s->name();
  }
  return Status::InvalidArgument("unknown persist method '" + std::string(name) + "' (use " +
                                 known + ")");
}

std::string_view PersistMethodHelp() {
  static const std::string help = [] {
    std::string h;
    for (const persist::PersistStrategy* s : persist::All()) {
      h += h.empty() ? "" : "; ";
      h += s->help();
    }
    return h;
  }();
  return help;
}

std::span<const PersistMethod> AllPersistMethods() {
  static const std::vector<PersistMethod> all = [] {
    std::vector<PersistMethod> v;
    for (const persist::PersistStrategy* s : persist::All()) v.push_back(s->method());
    return v;
  }();
  return all;
}

bool IsDurable(PersistMethod m) {
  const persist::PersistStrategy* s = persist::Find(m);
  return s != nullptr && s->durable();
}

}  // namespace dpmfs::datapath
