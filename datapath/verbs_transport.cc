#include "datapath/transport.h"
namespace dpmfs::transport {
Result<std::unique_ptr<Device>> OpenVerbsDevice(const DeviceOptions&) { return Status::NotSupported("verbs transport not built yet"); }
}
