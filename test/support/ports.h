// Free TCP ports on the loopback interface for the processes a test starts.
#pragma once

#include <cstdint>

namespace k8shmir::testing {

// A TCP port that nothing listens on at 127.0.0.1 right now, never the same one twice in this
// process. Ports are taken below the kernel's ephemeral range when possible (so that outgoing
// connections, whose source ports come from that range, cannot occupy them between this call
// and the child's bind), checked by binding 127.0.0.1:port, and reserved against every other
// process that calls FreePort (an flock held until this process exits): tests running in
// parallel never hand out the same port.
uint16_t FreePort();

}  // namespace k8shmir::testing
