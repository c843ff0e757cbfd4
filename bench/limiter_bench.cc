// In-process limiter throughput and latency: single-thread decisions over 1M keys, uniform and
// Zipf (s = 1.0), on the THROTTLE path (one bucket table) and on a 3-layer policy.
// Latency percentiles come from timing individual decisions with the steady clock (its ~20 ns read
// cost is included in every sample, so they are upper bounds).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tollgate/limiter.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate {
namespace {

constexpr size_t kKeys = 1'000'000;
constexpr size_t kStream = 1 << 22;  // pre-drawn key indices, cycled

const std::vector<std::string>& Keys() {
  static const auto* keys = [] {
    auto* k = new std::vector<std::string>();
    k->reserve(kKeys);
    for (size_t i = 0; i < kKeys; ++i) k->push_back("user:" + std::to_string(10'000'000 + i));
    return k;
  }();
  return *keys;
}

std::vector<uint32_t> Stream(bool zipf) {
  std::mt19937_64 rng(1234);
  std::vector<uint32_t> s(kStream);
  if (!zipf) {
    for (auto& x : s) x = static_cast<uint32_t>(rng() % kKeys);
    return s;
  }
  // Zipf(1.0) over kKeys by inverse CDF on a precomputed table.
  std::vector<double> cdf(kKeys);
  double sum = 0;
  for (size_t i = 0; i < kKeys; ++i) cdf[i] = (sum += 1.0 / static_cast<double>(i + 1));
  std::uniform_real_distribution<double> u(0, sum);
  for (auto& x : s) {
    x = static_cast<uint32_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
  }
  return s;
}

const BucketParams kParams{Decimal::Units(30), Decimal::Units(10)};

void ReportLatency(benchmark::State& state, std::vector<int64_t>& ns) {
  std::sort(ns.begin(), ns.end());
  state.counters["p50_ns"] = static_cast<double>(ns[ns.size() / 2]);
  state.counters["p99_ns"] = static_cast<double>(ns[ns.size() * 99 / 100]);
  state.counters["p999_ns"] = static_cast<double>(ns[ns.size() * 999 / 1000]);
}

void BM_Throttle(benchmark::State& state) {
  const bool zipf = state.range(0) == 1;
  const auto& keys = Keys();
  const auto stream = Stream(zipf);
  Throttler t({.max_buckets = 2 * kKeys});
  // Warm: every key has a live bucket, as in steady state.
  for (size_t i = 0; i < kKeys; ++i) (void)t.Check(keys[i], kParams, Decimal::Units(1));
  size_t i = 0;
  for (auto _ : state) {
    auto d = t.Check(keys[stream[i++ & (kStream - 1)]], kParams, Decimal::Units(1));
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
  std::vector<int64_t> lat;
  lat.reserve(1'000'000);
  for (size_t j = 0; j < 1'000'000; ++j) {
    const auto a = std::chrono::steady_clock::now();
    auto d = t.Check(keys[stream[j & (kStream - 1)]], kParams, Decimal::Units(1));
    const auto b = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(d);
    lat.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
  }
  ReportLatency(state, lat);
  state.counters["live_buckets"] = static_cast<double>(t.bucket_count());
}
BENCHMARK(BM_Throttle)->Arg(0)->Arg(1)->ArgName("zipf")->MinTime(2.0);

void BM_Policy3Layers(benchmark::State& state) {
  const bool zipf = state.range(0) == 1;
  const auto& keys = Keys();
  const auto stream = Stream(zipf);
  PolicyEngine e({});
  PolicySpec p;
  p.name = "chat";
  p.layers = {{"global", "global", {Decimal::Units(1'000'000'000), Decimal::Units(1'000'000'000)}},
              {"ip", "ip:{ip}", {Decimal::Units(100), Decimal::Units(100)}},
              {"user", "user:{user}", kParams}};
  for (auto& l : p.layers) l.max_buckets = 2 * kKeys;
  (void)e.Install({p});
  size_t i = 0;
  for (auto _ : state) {
    const std::string& k = keys[stream[i++ & (kStream - 1)]];
    Field f[] = {{"ip", std::string_view(k).substr(5, 6)}, {"user", k}};
    auto d = e.Check("chat", f);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Policy3Layers)->Arg(0)->Arg(1)->ArgName("zipf")->MinTime(2.0);

// What `tollgate simulate` asks of the engine: 10k users, four layers (global, ip, user x type,
// a shadow candidate), a virtual clock that advances 10 us per request.
void BM_PolicySimLike(benchmark::State& state) {
  constexpr size_t kUsers = 10'000;
  FakeClock fake;
  PolicyEngine e({&fake});
  PolicySpec p;
  p.name = "chat";
  p.layers = {{"global", "global", {Decimal::Units(1'000'000), Decimal::Units(1'000'000)}},
              {"ip", "ip:{ip}", {Decimal::Units(100), Decimal::Units(100)}},
              {"user_type", "user:{user}:{type}", {Decimal::Units(30), Decimal::Units(10)}},
              {"candidate", "user:{user}", {Decimal::Units(20), Decimal::Units(5)}, true}};
  p.cost.by = "type";
  p.cost.values = {{"text", Decimal::Units(1)}, {"paste", Decimal::Units(5)}};
  (void)e.Install({p});
  std::vector<std::string> users, ips;
  for (size_t u = 0; u < kUsers; ++u) {
    // absl::StrCat, not "u" + std::to_string(u): GCC 12 at -O3 warns (-Wrestrict, a false
    // positive in libstdc++'s operator+(const char*, string&&), GCC bug 105651).
    users.push_back(absl::StrCat("u", u));
    ips.push_back(absl::StrCat("ip", u / 3));
  }
  const char* types[] = {"text", "text", "text", "paste", "cursor"};
  uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const size_t u = x % kUsers;
    Field f[] = {{"ip", ips[u]}, {"user", users[u]}, {"type", types[(x >> 32) % 5]}};
    fake.Advance(std::chrono::microseconds(10));
    auto d = e.Check("chat", f);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PolicySimLike)->MinTime(2.0);

}  // namespace
}  // namespace tollgate

int main(int argc, char** argv) {
  // As the tollgate binary does (src/main.cc): Debian's abseil records every lock acquisition for
  // deadlock detection, about a third of a layered check's cost.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
