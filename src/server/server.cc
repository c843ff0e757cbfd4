#include "tollgate/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/async/wait_queue.h"
#include "http/http_server.h"
#include "server/backend_url.h"
#include "server/checkpointer.h"
#include "server/io_thread.h"
#include "server/metrics_sources.h"
#include "server/services.h"
#include "server/state.h"
#include "spdlog/spdlog.h"
#include "tollgate/async_backend.h"
#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/limiter.h"
#include "tollgate/policy_config.h"
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

absl::Status ValidateServerOptions(const ServerOptions& o) {
  auto range = [](std::string_view what, int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v >= lo && v <= hi) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " must be in [", lo, ", ", hi, "], got ", v));
  };
  for (absl::Status st :
       {range("port", o.port, 0, 65535), range("http_port", o.http_port, kHttpOff, 65535),
        range("io_threads", o.io_threads, 0, kMaxIoThreads),
        range("max_clients", o.max_clients, 1, kMaxClients),
        range("lock_delay_ms",
              std::chrono::duration_cast<std::chrono::milliseconds>(o.lock_delay).count(), 0,
              86'400'000),
        range("throttle_max_buckets",
              static_cast<int64_t>(std::min<size_t>(o.throttle_max_buckets, size_t{1} << 62)), 1,
              kMaxThrottleBuckets)}) {
    if (!st.ok()) return st;
  }
  if (!o.backend_url.empty() && o.lock_delay > Duration(0) && !HonoursLockDelay(o.backend_url)) {
    // Refusing beats silently granting a key the moment its lease expired while INFO reports a
    // delay. (OpenBackend checks the options before connecting: the refusal, with its message.)
    return OpenBackend(o.backend_url, {.lock_delay = o.lock_delay}).status();
  }
  return absl::OkStatus();
}

int RunServer(const ServerOptions& options) {
  if (absl::Status st = ValidateServerOptions(options); !st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 2;
  }
  // Signals are taken synchronously by this thread; every thread started below inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Default: one I/O thread per core but one. The I/O threads run the group-commit syncs
  // themselves (one per event-loop pass, as Redis does); the remaining core serves the kernel's
  // network stack, RocksDB's background flushes and the timer/checkpoint threads. Measured on
  // 2 cores with the load generator co-located (README, Benchmarks): 1 I/O thread beat 2 by 27% on
  // unpipelined durable LOCK.ACQUIRE.
  //
  // With --backend an I/O thread never waits for the backend (its requests are in flight while it
  // serves other clients), so the same default applies.
  const bool shared = !options.backend_url.empty();
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int threads = options.io_threads > 0 ? options.io_threads : std::max(1, cores - 1);
  // Waiters on a shared backend are served in one arrival order per key across all I/O threads
  // (each has its own backend and wait queue); declared before `io` so it outlives them.
  WaitOrder wait_order;
  std::vector<std::unique_ptr<server::IoThread>> io;
  // What the store's commit callback wakes: the complete list of I/O threads, published once
  // after every thread was created and before any runs, never changed while the store is open.
  // The callback (on a committing thread) reads it with acquire and sees either nothing (no
  // thread can hold a reply yet) or the whole list, never a vector being appended to.
  std::atomic<const std::vector<std::unique_ptr<server::IoThread>>*> wake_list{nullptr};

  // With --backend the server keeps no state of its own: each I/O thread opens its own
  // connection(s) to the backend when it starts (below), and no store is opened. Checked here
  // first, so that a bad URL or an unreachable backend fails before anything else starts.
  std::string backend_kind;  // labels tollgate_backend_* (empty: the embedded store)
  if (shared) {
    absl::StatusOr<std::unique_ptr<Backend>> probe =
        OpenBackend(options.backend_url, {.lock_delay = options.lock_delay});
    if (!probe.ok()) {
      spdlog::error("--backend: {}", std::string(probe.status().message()));
      return 1;
    }
    spdlog::info("state lives on the {} backend at {}", (*probe)->kind(), options.backend_url);
    backend_kind = std::string((*probe)->kind());
    for (const std::string& w : (*probe)->Warnings()) spdlog::warn("--backend: {}", w);
  }

  RecoveredState recovered;
  std::unique_ptr<DurableStore> store;
  if (!shared) {
    DurableStore::Options store_opts;
    store_opts.dir = options.data_dir;
    store_opts.on_durable = [&wake_list](uint64_t) {
      const auto* threads = wake_list.load(std::memory_order_acquire);
      if (threads == nullptr) return;
      for (const auto& t : *threads) t->OnDurable();
    };
    absl::StatusOr<std::unique_ptr<DurableStore>> opened =
        DurableStore::Open(store_opts, &recovered);
    if (!opened.ok()) {
      spdlog::error("{}", std::string(opened.status().message()));
      return 1;
    }
    store = std::move(*opened);
  }
  Clock* clock = RealClock();
  auto leases =
      std::make_unique<LeaseManager>(LeaseManager::Options{.clock = clock,
                                                           .journal = store.get(),
                                                           .lock_delay = options.lock_delay,
                                                           .timer_thread = true,
                                                           .wait_durable = false});
  // FENCE.SET accepts only fences this server's lease manager issued (see FencedRegisters).
  FencedRegisters registers({.journal = store.get(),
                             .wait_durable = false,
                             .highest_issued = [&leases] { return leases->last_fence(); }});
  ApplyRecovered(recovered, *leases, registers);
  if (!shared) {
    spdlog::info("recovered {} leases, {} fenced registers, fence counter at {} from {}",
                 leases->key_count(), registers.size(), leases->last_fence(), options.data_dir);
  }

  Throttler throttler({.clock = clock, .max_buckets = options.throttle_max_buckets});
  PolicyEngine policies({.clock = clock});
  std::unique_ptr<PolicyFileWatcher> watcher;
  if (!options.config_file.empty()) {
    watcher = std::make_unique<PolicyFileWatcher>(
        options.config_file,
        [&](std::vector<PolicySpec> specs) { return policies.Install(std::move(specs)); });
    if (absl::Status st = watcher->Start(); !st.ok()) {
      spdlog::error("--config: {}", std::string(st.message()));
      return 1;
    }
  }
  std::unique_ptr<server::Checkpointer> checkpointer;
  if (!shared) {
    size_t restored = 0, discarded = 0;
    for (const BucketSnapshot& b : recovered.buckets) {
      if (throttler.Restore(b) || policies.Restore(b)) {
        ++restored;
      } else {
        ++discarded;  // its layer is gone
        (void)store->DeleteBucket(b.table, b.key);
      }
    }
    spdlog::info("restored {} token buckets ({} of removed layers discarded)", restored, discarded);
    checkpointer = std::make_unique<server::Checkpointer>(
        throttler, policies,
        [s = store.get()](const std::vector<BucketSnapshot>& changed,
                          const std::vector<std::pair<std::string, std::string>>& dropped) {
          return s->WriteBucketCheckpoint(changed, dropped);
        },
        server::Checkpointer::Options{});
  }

  server::ServerStats stats;
  server::Services services{options,  *leases, registers, store.get(),       throttler,
                            policies, stats,   clock,     clock->SteadyNow()};
  services.io_threads = threads;
  services.pass_state = std::vector<server::Services::PassState>(static_cast<size_t>(threads));
  services.watcher = watcher.get();
  std::unique_ptr<metrics::Metrics> metrics = server::NewServerMetrics(services, backend_kind);
  services.metrics = metrics.get();
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
  // The one place that knows which state the server runs on.
  server::IoThread::StateFactory make_state;
  if (shared) {
    make_state = [&](EventLoop& loop) -> absl::StatusOr<std::unique_ptr<server::State>> {
      absl::StatusOr<std::unique_ptr<AsyncBackend>> b =
          OpenAsyncBackend(options.backend_url, loop, {.lock_delay = options.lock_delay});
      if (!b.ok()) return b.status();
      (*b)->ShareWaitOrder(&wait_order);
      return server::NewMeteredState(server::NewSharedState(std::move(*b), policies, clock),
                                     *metrics, clock, /*shared_backend=*/true);
    };
  } else {
    make_state = [&](EventLoop& loop) -> absl::StatusOr<std::unique_ptr<server::State>> {
      return server::NewMeteredState(
          server::NewEmbeddedState(*leases, registers, throttler, policies, *store,
                                   options.data_dir, loop),
          *metrics, clock, /*shared_backend=*/false);
    };
  }
  for (int i = 0; i < threads; ++i) {
    io.push_back(std::make_unique<server::IoThread>(i, services, listeners[i],
                                                    protocol::ParserLimits{}, make_state));
  }
  wake_list.store(&io, std::memory_order_release);
  for (auto& t : io) {
    if (absl::Status st = t->Start(); !st.ok()) {
      spdlog::error("{}{}", shared ? "--backend: " : "", std::string(st.message()));
      for (auto& started : io) started->RequestStop();
      for (auto& started : io) started->Join();
      return 1;
    }
  }
  // The HTTP side channel: its handlers reach the I/O threads' States through PostToState.
  std::unique_ptr<http::HttpServer> http_server;
  if (options.http_port != kHttpOff) {
    absl::StatusOr<std::unique_ptr<http::HttpServer>> started = http::HttpServer::Start(
        {.bind = options.bind, .port = options.http_port}, services, io.size(),
        [&io](size_t i, absl::AnyInvocable<void(server::State&)> fn) {
          io[i % io.size()]->PostToState(std::move(fn));
        });
    if (!started.ok()) {
      spdlog::error("--http-port: {}", std::string(started.status().message()));
      for (auto& t : io) t->RequestStop();
      for (auto& t : io) t->Join();
      return 1;
    }
    http_server = std::move(*started);
    spdlog::info("HTTP on {}:{}", options.bind, http_server->port());
    std::printf("tollgate http on %s:%d\n", options.bind.c_str(), http_server->port());
  }
  spdlog::info("listening on {}:{} with {} I/O threads", options.bind, port, threads);
  std::printf("tollgate ready on %s:%d\n", options.bind.c_str(), port);
  std::fflush(stdout);

  int sig = 0;
  for (;;) {
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig != SIGHUP) break;
    if (watcher) {
      (void)watcher->Reload();  // logs its own errors and keeps the old policies
    } else {
      spdlog::info("SIGHUP: no --config file to reload");
    }
  }
  spdlog::info("received {}; finishing in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  // Each I/O thread shuts its State down (waiters get their null reply), answers what it read and
  // closes its connections.
  if (http_server) http_server->Stop();  // its waits are cancelled while the I/O threads run
  for (auto& t : io) t->RequestStop();
  for (auto& t : io) t->Join();
  leases.reset();  // answers remaining waiters; their posts to the stopped threads are dropped
  watcher.reset();
  checkpointer.reset();  // writes the last checkpoint
  absl::Status st = store ? store->Close() : absl::OkStatus();
  wake_list.store(nullptr, std::memory_order_release);
  io.clear();  // destroys the States (a shared backend's connections and worker threads)
  if (!st.ok()) {
    spdlog::error("{}", std::string(st.message()));
    return 1;
  }
  spdlog::info("store synced; exiting");
  return 0;
}

int RunMigrate(const std::string& backend_url) {
  absl::Status st = server::MigrateBackend(backend_url);
  if (!st.ok()) {
    std::fprintf(stderr, "tollgate migrate: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::printf("tollgate migrate: schema is up to date\n");
  return 0;
}

}  // namespace tollgate
