// The session family (meta_ops.h): register and unregister (the heartbeat renews a
// lease in memory only and is the service's: MetaService::Handle). The sessions
// themselves are the Sessions component (sessions.h).
#include <cerrno>

#include "metadata/namespace.h"
#include "metadata/namespace_internal.h"

namespace dpmfs::meta {

int Namespace::DoRegister(const RegisterRequest& req, OpContext& ctx, RegisterReply* reply) {
  if (ctx.session == 0) return EINVAL;
  Session& s = client_sessions_.GetOrCreate(ctx.session);
  s.client_name = req.client_name;
  if (ctx.lease_deadline_ms != 0) s.lease_deadline_ms.store(ctx.lease_deadline_ms);
  reply->lease_ms = config_.lease_ms;
  reply->cluster = config_.cluster;
  return 0;
}

int Namespace::DoUnregister(const UnregisterRequest&, OpContext& ctx, EmptyReply*) {
  return EndSession(ctx.session, ctx);
}

int Namespace::EndSession(uint64_t id, OpContext& ctx) {
  Session* found = client_sessions_.Find(id);
  if (found == nullptr) return 0;
  Session& s = *found;
  while (!s.handles.empty()) CloseHandle(s, s.handles.begin()->first, ctx);
  client_sessions_.Erase(id);
  return 0;
}

}  // namespace dpmfs::meta
