#include "tollgate/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "server/io_thread.h"
#include "server/services.h"
#include "spdlog/spdlog.h"
#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/store.h"

namespace tollgate {
namespace {

// Opens a non-blocking listening socket with SO_REUSEPORT, so every I/O thread can own one and the
// kernel spreads connections across them. Returns -1 and logs on failure.
int Listen(const std::string& bind_addr, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, bind_addr.c_str(), &addr.sin_addr) != 1) {
    spdlog::error("--bind {}: not an IPv4 address", bind_addr);
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 4096) != 0) {
    spdlog::error("cannot listen on {}:{}: {}", bind_addr, port, std::strerror(errno));
    ::close(fd);
    return -1;
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

}  // namespace

int RunServer(const ServerOptions& options) {
  // Signals are taken synchronously by this thread; every thread started below inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const int threads = options.io_threads > 0
                          ? options.io_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<server::IoThread>> io;

  RecoveredState recovered;
  DurableStore::Options store_opts;
  store_opts.dir = options.data_dir;
  store_opts.on_durable = [&io](uint64_t) {
    for (auto& t : io) t->OnDurable();
  };
  absl::StatusOr<std::unique_ptr<DurableStore>> store = DurableStore::Open(store_opts, &recovered);
  if (!store.ok()) {
    spdlog::error("{}", std::string(store.status().message()));
    return 1;
  }
  Clock* clock = RealClock();
  auto leases =
      std::make_unique<LeaseManager>(LeaseManager::Options{.clock = clock,
                                                           .journal = store->get(),
                                                           .lock_delay = options.lock_delay,
                                                           .timer_thread = true,
                                                           .wait_durable = false});
  FencedRegisters registers({.journal = store->get(), .wait_durable = false});
  leases->RestoreFence(recovered.max_fence);
  for (const auto& [key, lease] : recovered.leases) leases->RestoreLease(key, lease);
  for (const auto& r : recovered.registers) registers.Restore(r.resource, r.fence, r.value);
  spdlog::info("recovered {} leases, {} fenced registers, fence counter at {} from {}",
               leases->key_count(), registers.size(), leases->last_fence(), options.data_dir);

  server::ServerStats stats;
  server::Services services{options, *leases, registers, **store, stats, clock, clock->SteadyNow()};
  services.io_threads = threads;

  int port = options.port;
  std::vector<int> listeners;
  for (int i = 0; i < threads; ++i) {
    int fd = Listen(options.bind, port);
    if (fd < 0) {
      for (int l : listeners) ::close(l);
      return 1;
    }
    if (i == 0) port = BoundPort(fd);
    listeners.push_back(fd);
  }
  services.tcp_port = port;
  for (int i = 0; i < threads; ++i) {
    io.push_back(
        std::make_unique<server::IoThread>(i, services, listeners[i], protocol::ParserLimits{}));
  }
  for (auto& t : io) {
    if (absl::Status st = t->Start(); !st.ok()) {
      spdlog::error("{}", std::string(st.message()));
      return 1;
    }
  }
  spdlog::info("listening on {}:{} with {} I/O threads", options.bind, port, threads);
  std::printf("tollgate ready on %s:%d\n", options.bind.c_str(), port);
  std::fflush(stdout);

  int sig = 0;
  while (sigwait(&sigs, &sig) != 0) {
  }
  spdlog::info("received {}; finishing in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  for (auto& t : io) t->RequestStop();
  for (auto& t : io) t->Join();
  leases.reset();  // answers remaining waiters; their posts to the stopped threads are dropped
  absl::Status st = (*store)->Close();
  io.clear();
  if (!st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 1;
  }
  spdlog::info("store synced; exiting");
  return 0;
}

}  // namespace tollgate
