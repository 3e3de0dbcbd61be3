#include "tools/admin/cluster_query.h"

#include <cerrno>
#include <cstring>

#include "datapath/data_admin_client.h"
#include "metadata/meta_protocol.h"
#include "rpc/rpc_client.h"

namespace dpmfs::admin {
namespace {

// One metadata admin call: the reply body, or the failure (an errno reply included).
Result<std::vector<uint8_t>> CallMeta(transport::Device& device, const Endpoint& ep,
                                      meta::Opcode op, const std::vector<uint8_t>& body,
                                      std::chrono::milliseconds timeout) {
  rpc::RpcClientOptions o;
  o.max_message = meta::kMetaMaxMessage;  // a stats bundle may be that large
  o.connect_timeout = timeout;
  o.default_timeout = timeout;
  o.reconnect_attempts = 0;
  o.depth = 1;
  DPMFS_ASSIGN_OR_RETURN(std::unique_ptr<rpc::RpcClient> client, rpc::RpcClient::Connect(device, ep, o));
  DPMFS_ASSIGN_OR_RETURN(std::vector<uint8_t> reply,
                         client->Call(static_cast<uint16_t>(op), meta::EncodeCall({}, body)));
  int err = 0;
  std::span<const uint8_t> rest;
  DPMFS_RETURN_IF_ERROR(meta::SplitReply(reply, &err, &rest));
  if (err != 0) {
    return Status::InvalidArgument("the metadata server answered " + std::string(std::strerror(err)));
  }
  return std::vector<uint8_t>(rest.begin(), rest.end());
}

ServerAnswer MetaStats(transport::Device& device, const Endpoint& ep,
                       std::chrono::milliseconds timeout) {
  ServerAnswer a{"meta", -1, ep, Status::OK(), {}};
  auto body = CallMeta(device, ep, meta::Opcode::kStats, meta::Encode(meta::StatsRequest{}), timeout);
  if (!body.ok()) {
    a.error = body.status();
    return a;
  }
  meta::StatsReply reply;
  a.error = meta::Decode(*body, &reply);
  if (!a.error.ok()) return a;
  metrics::StatsBundle bundle;
  a.error = metrics::DecodeStatsBundle(
      {reinterpret_cast<const uint8_t*>(reply.bundle.data()), reply.bundle.size()}, &bundle);
  if (a.error.ok()) a.reports = std::move(bundle.reports);
  return a;
}

ServerAnswer DataAsk(transport::Device& device, int index, const Endpoint& ep,
                     const datapath::AdminRequest& req, std::chrono::milliseconds timeout) {
  ServerAnswer a{"data", index, ep, Status::OK(), {}};
  auto reply = datapath::AskDataServer(device, ep, req, timeout);
  if (!reply.ok()) {
    a.error = reply.status();
    return a;
  }
  if (reply->code != StatusCode::kOk) {
    a.error = Status(reply->code, reply->message);
    return a;
  }
  if (req.kind == datapath::AdminKind::kStats) {
    metrics::StatsReport r;
    a.error = metrics::DecodeStatsReport(
        {reinterpret_cast<const uint8_t*>(reply->body.data()), reply->body.size()}, &r);
    if (a.error.ok()) a.reports.push_back(std::move(r));
  }
  return a;
}

}  // namespace

std::vector<ServerAnswer> AskStats(transport::Device& device, const ClusterAddresses& cluster,
                                   std::chrono::milliseconds timeout) {
  std::vector<ServerAnswer> out;
  out.push_back(MetaStats(device, cluster.meta, timeout));
  datapath::AdminRequest req;
  req.kind = datapath::AdminKind::kStats;
  for (size_t i = 0; i < cluster.data.size(); ++i) {
    out.push_back(DataAsk(device, static_cast<int>(i), cluster.data[i], req, timeout));
  }
  return out;
}

std::vector<ServerAnswer> SetLogLevel(transport::Device& device, const ClusterAddresses& cluster,
                                      const std::string& target, const std::string& level,
                                      std::chrono::milliseconds timeout) {
  std::vector<ServerAnswer> out;
  if (target == "meta" || target == "all") {
    ServerAnswer a{"meta", -1, cluster.meta, Status::OK(), {}};
    meta::LogLevelRequest q;
    q.level = level;
    auto body = CallMeta(device, cluster.meta, meta::Opcode::kLogLevel, meta::Encode(q), timeout);
    if (!body.ok()) a.error = body.status();
    out.push_back(std::move(a));
  }
  datapath::AdminRequest req;
  req.kind = datapath::AdminKind::kLogLevel;
  req.level = level;
  for (size_t i = 0; i < cluster.data.size(); ++i) {
    if (target == "all" || target == "data" || target == "data:" + std::to_string(i)) {
      out.push_back(DataAsk(device, static_cast<int>(i), cluster.data[i], req, timeout));
    }
  }
  return out;
}

}  // namespace dpmfs::admin
