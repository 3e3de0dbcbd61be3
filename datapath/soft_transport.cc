#include "datapath/transport.h"
namespace dpmfs::transport {
Result<std::unique_ptr<Device>> OpenSoftDevice(const DeviceOptions&) { return Status::NotSupported("soft transport not built yet"); }
}
