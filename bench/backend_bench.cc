// Network backend throughput: tollgate's Redis and PostgreSQL backends used as a library, N threads
// each with its own Backend (its own connection), for a fixed time per workload; and, with
// --server, the same workloads through a running `tollgate serve` (N threads, one hiredis
// connection each, one synchronous command at a time: no pipelining).
//
//   backend_bench [--redis redis://host:port] [--postgres] [--etcd] [--server host:port]
//                 [--threads N] [--seconds S]
//
// Workloads (each run for S seconds on every chosen backend):
//   lease    Acquire (ttl 10 s) then Release on a random key of 10,000; counts completed pairs
//            (an Acquire that finds the key held by another thread counts as "busy", not a pair)
//   throttle Throttle(random key of 100,000, capacity 100, rate 10/s, cost 1); counts decisions
//
// --postgres starts a throwaway PostgreSQL 15 cluster (tests/support/postgres_server.h; as the
// postgres user when run as root) and migrates it. --server host:port sends the same workloads as
// commands to a tollgate server (e.g. `tollgate serve --backend redis://...`):
//   lease    LOCK.ACQUIRE key 10000 -> [lock_id, fence, ttl_ms] | nil (busy), then
//            LOCK.RELEASE key lock_id -> 1
//   throttle THROTTLE key 100 10 -> [allowed, remaining, retry_after_ms, reset_after_ms]
// Output, one line per backend and workload:
//   tollgate-redis lease_pairs_per_sec=12345 busy=3 threads=8 seconds=5
//   tollgate-redis throttle_per_sec=23456 allowed=... denied=... threads=8 seconds=5
//   tollgate-serve lease_pairs_per_sec=...  (likewise for --server)
// Exit status 1 on any error (an unexpected error status from the backend stops the run).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hiredis/hiredis.h"
#include "tests/support/postgres_server.h"
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
#include "tests/support/etcd_server.h"
#include "tollgate/etcd_backend.h"
#endif
#include "tollgate/backend.h"
#include "tollgate/postgres_backend.h"
#include "tollgate/redis_backend.h"

namespace {

using tollgate::Backend;
using Clock = std::chrono::steady_clock;

constexpr int kLeaseKeys = 10'000;
constexpr int kThrottleKeys = 100'000;

struct Counts {
  uint64_t ops = 0;
  uint64_t a = 0;  // lease: busy; throttle: allowed
  uint64_t b = 0;  // throttle: denied
  std::string error;
};

template <typename Conn>
using FactoryOf = std::function<absl::StatusOr<std::unique_ptr<Conn>>()>;
template <typename Conn>
using StepOf = std::function<absl::Status(Conn&, std::mt19937_64&, Counts&)>;
using Factory = FactoryOf<Backend>;

absl::Status LeaseStep(Backend& be, std::mt19937_64& rng, Counts& c) {
  const std::string key = "bench:lease:" + std::to_string(rng() % kLeaseKeys);
  auto grant = be.Acquire(key, std::chrono::seconds(10), std::nullopt);
  if (!grant.ok()) return grant.status();
  if (!grant->has_value()) {
    ++c.a;
    return absl::OkStatus();
  }
  absl::Status st = be.Release(key, (*grant)->lock_id);
  if (!st.ok()) return st;
  ++c.ops;
  return absl::OkStatus();
}

absl::Status ThrottleStep(Backend& be, std::mt19937_64& rng, Counts& c) {
  static const tollgate::BucketParams params{tollgate::Decimal::Units(100),
                                             tollgate::Decimal::Units(10)};
  const std::string key = "bench:throttle:" + std::to_string(rng() % kThrottleKeys);
  auto d = be.Throttle(key, params, tollgate::Decimal::Units(1));
  if (!d.ok()) return d.status();
  ++c.ops;
  ++(d->allowed ? c.a : c.b);
  return absl::OkStatus();
}

// --- through a tollgate server: one hiredis connection, one command at a time -----------------------
struct ServerConn {
  struct Free {
    void operator()(redisContext* c) const { redisFree(c); }
  };
  struct FreeReply {
    void operator()(redisReply* r) const { freeReplyObject(r); }
  };
  using Reply = std::unique_ptr<redisReply, FreeReply>;
  std::unique_ptr<redisContext, Free> ctx;

  // Sends one command (binary-safe arguments) and waits for its reply.
  absl::StatusOr<Reply> Command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx.get(), static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (r == nullptr) return absl::UnavailableError(std::string("connection: ") + ctx->errstr);
    Reply reply(r);
    if (reply->type == REDIS_REPLY_ERROR) {
      return absl::InternalError(args[0] + ": " + std::string(reply->str, reply->len));
    }
    return reply;
  }
};

absl::StatusOr<std::unique_ptr<ServerConn>> ConnectServer(const std::string& host, int port) {
  auto conn = std::make_unique<ServerConn>();
  conn->ctx.reset(redisConnect(host.c_str(), port));
  if (!conn->ctx) return absl::ResourceExhaustedError("redisConnect: out of memory");
  if (conn->ctx->err) {
    return absl::UnavailableError(host + ":" + std::to_string(port) + ": " + conn->ctx->errstr);
  }
  return conn;
}

bool IsInteger(const redisReply* r) { return r->type == REDIS_REPLY_INTEGER; }

std::string Describe(const redisReply* r) {
  return "unexpected reply (type " + std::to_string(r->type) + ")";
}

absl::Status ServerLeaseStep(ServerConn& conn, std::mt19937_64& rng, Counts& c) {
  const std::string key = "bench:lease:" + std::to_string(rng() % kLeaseKeys);
  auto grant = conn.Command({"LOCK.ACQUIRE", key, "10000"});
  if (!grant.ok()) return grant.status();
  const redisReply* g = grant->get();
  if (g->type == REDIS_REPLY_NIL) {
    ++c.a;
    return absl::OkStatus();
  }
  // [lock_id, fence, ttl_ms]
  if (g->type != REDIS_REPLY_ARRAY || g->elements != 3 ||
      (g->element[0]->type != REDIS_REPLY_STRING && g->element[0]->type != REDIS_REPLY_STATUS) ||
      !IsInteger(g->element[1]) || !IsInteger(g->element[2])) {
    return absl::InternalError("LOCK.ACQUIRE: " + Describe(g));
  }
  const std::string lock_id(g->element[0]->str, g->element[0]->len);
  auto released = conn.Command({"LOCK.RELEASE", key, lock_id});
  if (!released.ok()) return released.status();
  if (!IsInteger(released->get()) || (*released)->integer != 1) {
    return absl::InternalError("LOCK.RELEASE of a just-granted lease did not answer 1: " +
                               Describe(released->get()));
  }
  ++c.ops;
  return absl::OkStatus();
}

absl::Status ServerThrottleStep(ServerConn& conn, std::mt19937_64& rng, Counts& c) {
  // Same bucket as ThrottleStep: capacity 100, 10 tokens/s, cost 1 (the default COST).
  const std::string key = "bench:throttle:" + std::to_string(rng() % kThrottleKeys);
  auto d = conn.Command({"THROTTLE", key, "100", "10"});
  if (!d.ok()) return d.status();
  const redisReply* r = d->get();
  // [allowed, remaining, retry_after_ms, reset_after_ms]
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 || !IsInteger(r->element[0])) {
    return absl::InternalError("THROTTLE: " + Describe(r));
  }
  ++c.ops;
  ++(r->element[0]->integer == 1 ? c.a : c.b);
  return absl::OkStatus();
}

// Runs `step` on `threads` threads (each with its own backend, all connected before the clock
// starts) for `seconds`; false (after printing why) on error.
template <typename Conn>
bool RunWorkload(const std::string& label, const FactoryOf<Conn>& make, int threads,
                 double seconds, const StepOf<Conn>& step, const char* metric, bool throttle) {
  std::vector<std::unique_ptr<Conn>> backends;
  for (int i = 0; i < threads; ++i) {
    auto be = make();
    if (!be.ok()) {
      std::fprintf(stderr, "%s: connect: %s\n", label.c_str(), be.status().ToString().c_str());
      return false;
    }
    backends.push_back(std::move(*be));
  }
  std::vector<Counts> counts(threads);
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      std::mt19937_64 rng(0x5eed + 7919 * i + (throttle ? 1 : 0));
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        absl::Status st = step(*backends[i], rng, counts[i]);
        if (!st.ok()) {
          counts[i].error = st.ToString();
          return;
        }
      }
    });
  }
  const auto t0 = Clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  for (auto& t : pool) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  Counts total;
  for (const Counts& c : counts) {
    if (!c.error.empty()) {
      std::fprintf(stderr, "%s: %s failed: %s\n", label.c_str(), metric, c.error.c_str());
      return false;
    }
    total.ops += c.ops;
    total.a += c.a;
    total.b += c.b;
  }
  if (throttle) {
    std::printf("%s %s=%.0f allowed=%llu denied=%llu threads=%d seconds=%.2f\n", label.c_str(),
                metric, total.ops / elapsed, static_cast<unsigned long long>(total.a),
                static_cast<unsigned long long>(total.b), threads, elapsed);
  } else {
    std::printf("%s %s=%.0f busy=%llu threads=%d seconds=%.2f\n", label.c_str(), metric,
                total.ops / elapsed, static_cast<unsigned long long>(total.a), threads, elapsed);
  }
  std::fflush(stdout);
  return true;
}

template <typename Conn>
bool RunBoth(const std::string& label, const FactoryOf<Conn>& make, int threads, double seconds,
             const StepOf<Conn>& lease, const StepOf<Conn>& throttle) {
  return RunWorkload<Conn>(label, make, threads, seconds, lease, "lease_pairs_per_sec", false) &&
         RunWorkload<Conn>(label, make, threads, seconds, throttle, "throttle_per_sec", true);
}

bool RunBackend(const std::string& label, const Factory& make, int threads, double seconds) {
  return RunBoth<Backend>(label, make, threads, seconds, LeaseStep, ThrottleStep);
}

[[noreturn]] void Usage(const char* why) {
  std::fprintf(
      stderr,
      "backend_bench: %s\nusage: backend_bench [--redis URL] [--postgres] [--etcd] "
      "[--server HOST:PORT] [--threads N] [--seconds S]\n",
      why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string redis_url;
  bool postgres = false;
  bool etcd = false;
  std::string server_host;
  int server_port = 0;
  int threads = 8;
  double seconds = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--redis") {
      redis_url = value();
    } else if (arg == "--postgres") {
      postgres = true;
    } else if (arg == "--etcd") {
      etcd = true;
    } else if (arg == "--server") {
      const std::string hp = value();
      const size_t colon = hp.rfind(':');
      if (colon == std::string::npos || colon == 0) Usage("--server must be HOST:PORT");
      server_host = hp.substr(0, colon);
      server_port = std::atoi(hp.c_str() + colon + 1);
      if (server_port < 1 || server_port > 65535) Usage("--server port must be 1..65535");
    } else if (arg == "--threads") {
      threads = std::atoi(value().c_str());
      if (threads < 1 || threads > 1024) Usage("--threads must be 1..1024");
    } else if (arg == "--seconds") {
      seconds = std::atof(value().c_str());
      if (!(seconds > 0 && seconds <= 3600)) Usage("--seconds must be in (0, 3600]");
    } else {
      Usage(("unknown argument " + arg).c_str());
    }
  }
  if (redis_url.empty() && !postgres && !etcd && server_host.empty()) {
    Usage("give --redis URL, --postgres, --etcd and/or --server HOST:PORT");
  }

  if (!redis_url.empty()) {
    Factory make = [&] { return tollgate::NewRedisBackend(redis_url); };
    if (!RunBackend("tollgate-redis", make, threads, seconds)) return 1;
  }
  if (postgres) {
    tollgate::testing::PostgresServer pg;
    if (!pg.Start()) {
      std::fprintf(stderr, "postgres: %s\n", pg.error().c_str());
      return 1;
    }
    const std::string conninfo = pg.conninfo();
    if (absl::Status st = tollgate::MigratePostgres(conninfo); !st.ok()) {
      std::fprintf(stderr, "postgres: migrate: %s\n", st.ToString().c_str());
      return 1;
    }
    Factory make = [&] { return tollgate::NewPostgresBackend(conninfo); };
    if (!RunBackend("tollgate-postgres", make, threads, seconds)) return 1;
  }
  if (etcd) {
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
    // Leases only: the etcd backend offers no rate limiting.
    tollgate::testing::EtcdServer server;
    if (!server.Start()) {
      std::fprintf(stderr, "etcd: could not start etcd\n");
      return 1;
    }
    const std::string url = server.url();
    Factory make = [&] { return tollgate::NewEtcdBackend(url); };
    if (!RunWorkload<Backend>("tollgate-etcd", make, threads, seconds, LeaseStep,
                              "lease_pairs_per_sec", false)) {
      return 1;
    }
#else
    Usage("this build has no etcd backend");
#endif
  }
  if (!server_host.empty()) {
    FactoryOf<ServerConn> make = [&] { return ConnectServer(server_host, server_port); };
    if (!RunBoth<ServerConn>("tollgate-serve", make, threads, seconds, ServerLeaseStep,
                             ServerThrottleStep)) {
      return 1;
    }
  }
  return 0;
}
