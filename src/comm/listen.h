#pragma once
// A listening TCP socket on one address, for the store's server: the coordinator listens on
// the address it was given, not on every interface.
#include <string>

namespace kdist::comm::detail {

// Binds host:port (port 0: a free one) and listens; returns the socket. Throws
// std::runtime_error naming the address when it cannot.
int listen_on(const std::string& host, int port);
// The port a listening socket is bound to.
int bound_port(int fd);

}  // namespace kdist::comm::detail
