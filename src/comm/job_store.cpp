// JobStore: the job's key-value store on c10d's TCPStore, and the coordinator's listening socket.
#include <arpa/inet.h>
#include <kdist/comm.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cerrno>
#include <cstring>

#include "base/errors.h"
#include "comm/job_store.h"
#include "comm/listen.h"

namespace kdist::comm {

namespace detail {

int listen_on(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    kdist::detail::failure("runtime", "cannot resolve coordinator host '", host, "': ", gai_strerror(rc));
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) {
      freeaddrinfo(found);
      return fd;
    }
    last_error = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  kdist::detail::failure("runtime", "coordinator cannot listen on ", host, ":", port, ": ", last_error);
}

int bound_port(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

}  // namespace detail

struct JobStore::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  std::string address;
  int port = 0;
};

namespace {

std::shared_ptr<JobStore> open(const std::string& host, int port, bool serve,
                               std::chrono::milliseconds timeout) {
  auto impl = std::make_shared<JobStore::Impl>();
  c10d::TCPStoreOptions options;
  options.isServer = serve;
  options.waitWorkers = false;
  options.timeout = timeout;
  if (serve) {
    const int fd = detail::listen_on(host, port);
    port = detail::bound_port(fd);
    options.masterListenFd = fd;
  }
  options.port = static_cast<uint16_t>(port);
  impl->port = port;
  impl->address = host + ":" + std::to_string(port);
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(host, options);
  } catch (const std::exception& e) {
    kdist::detail::failure("comm", "cannot ", serve ? "serve" : "reach", " the job's store at ",
                           impl->address, " within ", timeout.count() / 1000.0,
                           " s: ", std::string(e.what()).substr(0, 300));
  }
  return std::make_shared<JobStore>(impl);
}

template <typename Call>
auto guarded(const JobStore::Impl& impl, const char* what, Call call) -> decltype(call()) {
  try {
    return call();
  } catch (const std::exception& e) {
    kdist::detail::failure("comm", "the job's store at ", impl.address, " failed (", what,
                           "): ", std::string(e.what()).substr(0, 300));
  }
}

}  // namespace

std::shared_ptr<JobStore> JobStore::serve(const std::string& host, int port,
                                          std::chrono::milliseconds timeout) {
  return open(host, port, true, timeout);
}

std::shared_ptr<JobStore> JobStore::connect(const std::string& host, int port,
                                            std::chrono::milliseconds timeout) {
  return open(host, port, false, timeout);
}

JobStore::JobStore(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
int JobStore::port() const { return impl_->port; }
const std::string& JobStore::address() const { return impl_->address; }

void JobStore::set(const std::string& key, const std::string& value) {
  guarded(*impl_, "set", [&] {
    impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
    return 0;
  });
}

std::optional<std::string> JobStore::get(const std::string& key) {
  return guarded(*impl_, "get", [&]() -> std::optional<std::string> {
    if (!impl_->store->check({key})) return std::nullopt;
    auto bytes = impl_->store->get(key);
    return std::string(bytes.begin(), bytes.end());
  });
}

int64_t JobStore::add(const std::string& key, int64_t delta) {
  return guarded(*impl_, "add", [&] { return impl_->store->add(key, delta); });
}

}  // namespace kdist::comm
