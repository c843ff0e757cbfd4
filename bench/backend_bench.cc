// Network backend throughput: tollgate's Redis and PostgreSQL backends used as a library, N threads
// each with its own Backend (its own connection), for a fixed time per workload.
//
//   backend_bench [--redis redis://host:port] [--postgres] [--etcd] [--threads N] [--seconds S]
//
// Workloads (each run for S seconds on every chosen backend):
//   lease    Acquire (ttl 10 s) then Release on a random key of 10,000; counts completed pairs
//            (an Acquire that finds the key held by another thread counts as "busy", not a pair)
//   throttle Throttle(random key of 100,000, capacity 100, rate 10/s, cost 1); counts decisions
//
// --postgres starts a throwaway PostgreSQL 15 cluster (tests/support/postgres_server.h; as the
// postgres user when run as root) and migrates it. Output, one line per backend and workload:
//   tollgate-redis lease_pairs_per_sec=12345 busy=3 threads=8 seconds=5
//   tollgate-redis throttle_per_sec=23456 allowed=... denied=... threads=8 seconds=5
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

using Factory = std::function<absl::StatusOr<std::unique_ptr<Backend>>()>;
using Step = std::function<absl::Status(Backend&, std::mt19937_64&, Counts&)>;

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

// Runs `step` on `threads` threads (each with its own backend, all connected before the clock
// starts) for `seconds`; false (after printing why) on error.
bool RunWorkload(const std::string& label, const Factory& make, int threads, double seconds,
                 const Step& step, const char* metric, bool throttle) {
  std::vector<std::unique_ptr<Backend>> backends;
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

bool RunBackend(const std::string& label, const Factory& make, int threads, double seconds) {
  return RunWorkload(label, make, threads, seconds, LeaseStep, "lease_pairs_per_sec", false) &&
         RunWorkload(label, make, threads, seconds, ThrottleStep, "throttle_per_sec", true);
}

[[noreturn]] void Usage(const char* why) {
  std::fprintf(
      stderr,
      "backend_bench: %s\nusage: backend_bench [--redis URL] [--postgres] [--etcd] [--threads N] "
      "[--seconds S]\n",
      why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string redis_url;
  bool postgres = false;
  bool etcd = false;
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
  if (redis_url.empty() && !postgres && !etcd) Usage("give --redis URL, --postgres and/or --etcd");

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
    if (!RunWorkload("tollgate-etcd", make, threads, seconds, LeaseStep, "lease_pairs_per_sec",
                     false)) {
      return 1;
    }
#else
    Usage("this build has no etcd backend");
#endif
  }
  return 0;
}
