// Smoke test of the verbs backend on a real RDMA device (a NIC or Soft-RoCE): a QP
// connected to a listener on the same device over the device's IP address does a
// WRITE, READs it back and does a WRITE_WITH_IMM the target receives with its
// immediate. Skips where the machine has no RDMA device; transport semantics are
// covered backend by backend in the conformance suite.
//
// $DPMFS_VERBS_DEVICE picks the device (default: the first one);
// $DPMFS_VERBS_TEST_IP the address to listen on (default: an IPv4 address of the
// device's network interface).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <infiniband/verbs.h>
#include <netinet/in.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "transport/transport.h"

namespace dpmfs::transport {
namespace {

constexpr auto kTimeout = std::chrono::seconds(20);

std::string EnvOr(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

std::string FirstDeviceName() {
  int num = 0;
  ibv_device** list = ibv_get_device_list(&num);
  std::string name = list != nullptr && num > 0 ? ibv_get_device_name(list[0]) : "";
  if (list != nullptr) ibv_free_device_list(list);
  return name;
}

// The network interfaces behind an RDMA device: RoCE lists them per GID
// (ports/N/gid_attrs/ndevs/I), a PCI NIC under device/net.
std::vector<std::string> NetdevsOf(const std::string& device) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  const fs::path base = fs::path("/sys/class/infiniband") / device;
  std::error_code ec;
  for (const auto& port : fs::directory_iterator(base / "ports", ec)) {
    for (const auto& ndev : fs::directory_iterator(port.path() / "gid_attrs" / "ndevs", ec)) {
      std::ifstream in(ndev.path());
      std::string name;
      if (std::getline(in, name) && !name.empty()) out.push_back(name);
    }
  }
  for (const auto& net : fs::directory_iterator(base / "device" / "net", ec)) {
    out.push_back(net.path().filename().string());
  }
  return out;
}

std::string Ipv4Of(const std::vector<std::string>& netdevs) {
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return "";
  std::string ip;
  for (const ifaddrs* i = ifs; i != nullptr && ip.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    for (const auto& n : netdevs) {
      if (n != i->ifa_name) continue;
      char buf[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, buf,
                sizeof buf);
      ip = buf;
      break;
    }
  }
  freeifaddrs(ifs);
  return ip;
}

TEST(VerbsSmokeTest, OpenWithoutDeviceExplainsWhatToDo) {
  DeviceOptions options;
  options.backend = Backend::kVerbs;
  auto device = OpenVerbsDevice(options);
  if (device.ok()) GTEST_SKIP() << "this machine has an RDMA device";
  EXPECT_EQ(device.status().code(), StatusCode::kUnavailable) << device.status().ToString();
  EXPECT_NE(device.status().message().find("rdma link add"), std::string::npos);
  EXPECT_NE(device.status().message().find("--transport soft"), std::string::npos);
}

TEST(VerbsSmokeTest, WriteReadBackAndWriteWithImm) {
  DeviceOptions options;
  options.backend = Backend::kVerbs;
  options.verbs_device = EnvOr("DPMFS_VERBS_DEVICE", FirstDeviceName());
  auto device = OpenVerbsDevice(options);
  if (!device.ok() && device.status().code() == StatusCode::kUnavailable) {
    GTEST_SKIP() << "no RDMA device: " << device.status().ToString();
  }
  ASSERT_TRUE(device.ok()) << device.status().ToString();
  Device& dev = **device;
  EXPECT_EQ(dev.backend(), Backend::kVerbs);

  // rdma_cm cannot route over lo, so use the address of the device's own interface.
  std::string ip = EnvOr("DPMFS_VERBS_TEST_IP", Ipv4Of(NetdevsOf(options.verbs_device)));
  if (ip.empty()) ip = "127.0.0.1";  // will likely fail in rdma_resolve_route: that is why
  auto listener = dev.Listen(Endpoint{ip, 0});
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  const Endpoint server = (*listener)->local_endpoint();
  ASSERT_NE(server.port, 0);

  constexpr uint32_t kSize = 64 * 1024;
  std::vector<uint8_t> target(kSize, 0);  // the "remote" memory, on the accepting side
  std::vector<uint8_t> source(kSize);
  std::vector<uint8_t> readback(kSize, 0);
  std::vector<uint8_t> recv_buf(64, 0);
  for (uint32_t i = 0; i < kSize; ++i) source[i] = static_cast<uint8_t>(i * 7 + 3);

  auto target_mr =
      dev.RegisterMemory(target.data(), kSize, kLocalWrite | kRemoteWrite | kRemoteRead);
  ASSERT_TRUE(target_mr.ok()) << target_mr.status().ToString();
  auto source_mr = dev.RegisterMemory(source.data(), kSize, kLocalWrite);
  ASSERT_TRUE(source_mr.ok()) << source_mr.status().ToString();
  auto readback_mr = dev.RegisterMemory(readback.data(), kSize, kLocalWrite);
  ASSERT_TRUE(readback_mr.ok()) << readback_mr.status().ToString();
  auto recv_mr = dev.RegisterMemory(recv_buf.data(), recv_buf.size(), kLocalWrite);
  ASSERT_TRUE(recv_mr.ok()) << recv_mr.status().ToString();

  // Server: accept one connection, posting a RECV for the WRITE_WITH_IMM and telling the
  // initiator where the target region is.
  std::vector<uint8_t> hello;
  std::optional<Result<std::unique_ptr<QueuePair>>> accepted;
  std::thread server_thread([&] {
    QueuePairOptions qp_options;
    qp_options.prepare = [&](QueuePair& qp) {
      WorkRequest recv;
      recv.opcode = Opcode::kRecv;
      recv.context = 77;
      recv.local_addr = recv_buf.data();
      recv.length = static_cast<uint32_t>(recv_buf.size());
      recv.lkey = recv_mr->lkey;
      return qp.PostRecv({&recv, 1});
    };
    AcceptHandler handler = [&](std::span<const uint8_t> peer_data,
                                QueuePair&) -> Result<std::vector<uint8_t>> {
      hello.assign(peer_data.begin(), peer_data.end());
      RemoteRegion region{reinterpret_cast<uint64_t>(target.data()), kSize, target_mr->rkey};
      std::vector<uint8_t> reply(sizeof region);
      std::memcpy(reply.data(), &region, sizeof region);
      return reply;
    };
    accepted.emplace((*listener)->Accept(handler, qp_options, kTimeout));
  });

  const std::string greeting = "hello";
  auto client =
      dev.Connect(server, {reinterpret_cast<const uint8_t*>(greeting.data()), greeting.size()},
                  QueuePairOptions{}, kTimeout);
  server_thread.join();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE(accepted.has_value());
  ASSERT_TRUE(accepted->ok()) << accepted->status().ToString();
  QueuePair& initiator = **client;
  QueuePair& responder = ***accepted;
  EXPECT_EQ(initiator.state(), QpState::kConnected);
  EXPECT_EQ(responder.state(), QpState::kConnected);

  // The CM may pad private data with zeros; what was sent must be a prefix.
  ASSERT_GE(hello.size(), greeting.size());
  EXPECT_EQ(std::string(hello.begin(), hello.begin() + greeting.size()), greeting);
  RemoteRegion region;
  ASSERT_GE(initiator.peer_private_data().size(), sizeof region);
  std::memcpy(&region, initiator.peer_private_data().data(), sizeof region);
  EXPECT_EQ(region.rkey, target_mr->rkey);

  Completion c[4];
  // WRITE the whole source, then READ it back: the READ completing means the WRITE
  // before it on this QP reached the target's memory.
  WorkRequest write;
  write.opcode = Opcode::kWrite;
  write.context = 1;
  write.local_addr = source.data();
  write.length = kSize;
  write.lkey = source_mr->lkey;
  write.remote_addr = region.addr;
  write.rkey = region.rkey;
  WorkRequest read;
  read.opcode = Opcode::kRead;
  read.context = 2;
  read.local_addr = readback.data();
  read.length = kSize;
  read.lkey = readback_mr->lkey;
  read.remote_addr = region.addr;
  read.rkey = region.rkey;
  WorkRequest chain[] = {write, read};
  ASSERT_TRUE(initiator.PostSend(chain).ok());
  size_t got = 0;
  for (int tries = 0; got < 2 && tries < 2; ++tries) {
    got += initiator.WaitSend({c + got, 2 - got}, kTimeout);
  }
  ASSERT_EQ(got, 2u);
  EXPECT_TRUE(c[0].ok()) << CompletionStatusName(c[0].status);
  EXPECT_EQ(c[0].context, 1u);
  EXPECT_EQ(c[0].opcode, Opcode::kWrite);
  EXPECT_TRUE(c[1].ok()) << CompletionStatusName(c[1].status);
  EXPECT_EQ(c[1].context, 2u);
  EXPECT_EQ(c[1].opcode, Opcode::kRead);
  EXPECT_EQ(readback, source);
  EXPECT_EQ(target, source);

  // WRITE_WITH_IMM: new bytes at an offset, and the responder's RECV reports the
  // immediate as sent (byte order handled by the transport).
  constexpr uint32_t kImm = 0xDEADBEEF;
  constexpr uint32_t kOffset = 4096, kLen = 512;
  for (uint32_t i = 0; i < kLen; ++i) source[kOffset + i] = static_cast<uint8_t>(0xA5 ^ i);
  WorkRequest imm;
  imm.opcode = Opcode::kWriteWithImm;
  imm.context = 3;
  imm.local_addr = source.data() + kOffset;
  imm.length = kLen;
  imm.lkey = source_mr->lkey;
  imm.remote_addr = region.addr + kOffset;
  imm.rkey = region.rkey;
  imm.imm = kImm;
  ASSERT_TRUE(initiator.PostSend({&imm, 1}).ok());
  ASSERT_EQ(initiator.WaitSend({c, 1}, kTimeout), 1u);
  EXPECT_TRUE(c[0].ok()) << CompletionStatusName(c[0].status);
  EXPECT_EQ(c[0].context, 3u);
  EXPECT_EQ(c[0].opcode, Opcode::kWriteWithImm);

  ASSERT_EQ(responder.WaitRecv({c, 1}, kTimeout), 1u);
  EXPECT_TRUE(c[0].ok()) << CompletionStatusName(c[0].status);
  EXPECT_EQ(c[0].context, 77u);
  EXPECT_EQ(c[0].opcode, Opcode::kRecvWithImm);
  EXPECT_TRUE(c[0].has_imm);
  EXPECT_EQ(c[0].imm, kImm);
  EXPECT_EQ(c[0].byte_len, kLen);
  EXPECT_EQ(0, std::memcmp(target.data() + kOffset, source.data() + kOffset, kLen));

  // FLUSH is either supported or refused cleanly, never posted half-way.
  if (!dev.SupportsFlush()) {
    WorkRequest flush;
    flush.opcode = Opcode::kFlush;
    flush.length = kSize;
    flush.remote_addr = region.addr;
    flush.rkey = region.rkey;
    EXPECT_EQ(initiator.PostSend({&flush, 1}).code(), StatusCode::kNotSupported);
  }

  initiator.Disconnect();
  responder.Disconnect();
  EXPECT_EQ(initiator.state(), QpState::kError);
  client->reset();
  accepted->value().reset();
  for (auto* mr : {&*target_mr, &*source_mr, &*readback_mr, &*recv_mr}) {
    EXPECT_TRUE(dev.DeregisterMemory(*mr).ok());
  }
}

}  // namespace
}  // namespace dpmfs::transport
