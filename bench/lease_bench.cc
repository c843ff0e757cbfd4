// In-process cost of the lease core: acquire+release pairs, with and without the durable journal
// (appends only; syncing is the committer's job and is measured by server_bench.sh).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "tollgate/lease_manager.h"
#include "tollgate/store.h"

namespace tollgate {
namespace {

std::vector<std::string> Keys(size_t n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) keys.push_back("key:" + std::to_string(i));
  return keys;
}

void AcquireRelease(benchmark::State& state, Journal* journal) {
  LeaseManager m({.journal = journal, .timer_thread = false, .wait_durable = false});
  const auto keys = Keys(static_cast<size_t>(state.range(0)));
  std::mt19937 rng(42);
  for (auto _ : state) {
    const std::string& k = keys[rng() % keys.size()];
    auto g = m.TryAcquire({k, std::chrono::seconds(30), {}, {}});
    if (g.ok() && g->has_value()) benchmark::DoNotOptimize(m.Release(k, (*g)->lock_id));
  }
  state.SetItemsProcessed(state.iterations() * 2);
}

void BM_AcquireRelease_Memory(benchmark::State& state) { AcquireRelease(state, nullptr); }
BENCHMARK(BM_AcquireRelease_Memory)->Arg(1)->Arg(100000);

void BM_AcquireRelease_DurableJournal(benchmark::State& state) {
  auto dir = std::filesystem::temp_directory_path() /
             ("tollgate_lease_bench_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    auto store = DurableStore::Open({.dir = dir.string()}, nullptr);
    if (!store.ok()) {
      state.SkipWithError("cannot open store");
      return;
    }
    AcquireRelease(state, store->get());
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_AcquireRelease_DurableJournal)->Arg(100000);

void BM_HeldKeyTryAcquire(benchmark::State& state) {
  LeaseManager m({.timer_thread = false});
  auto g = m.TryAcquire({"held", std::chrono::seconds(3600), {}, {}});
  for (auto _ : state) {
    benchmark::DoNotOptimize(m.TryAcquire({"held", std::chrono::seconds(1), {}, {}}));
  }
}
BENCHMARK(BM_HeldKeyTryAcquire);

}  // namespace
}  // namespace tollgate

BENCHMARK_MAIN();
