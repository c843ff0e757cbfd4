#include <filesystem>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "tollgate/fenced_register.h"
#include "tollgate/lease_manager.h"
#include "tollgate/store.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate {
namespace {

using std::chrono::seconds;

class DurableStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tollgate_store_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<DurableStore> Open(RecoveredState* rec) {
    auto s = DurableStore::Open({.dir = dir_.string()}, rec);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::filesystem::path dir_;
};

TEST_F(DurableStoreTest, RecoversLeasesRegistersAndFenceHighWater) {
  RecoveredState rec;
  {
    auto store = Open(&rec);
    EXPECT_EQ(rec.max_fence, 0u);
    EXPECT_TRUE(rec.leases.empty());
    store->AppendLeasePut("a", {"id-a", 5, WallTime(seconds(100)), "owner"});
    store->AppendLeasePut("b", {"id-b", 9, WallTime(seconds(200)), std::nullopt});
    store->AppendLeaseDelete("b");  // fence 9 must still count
    store->AppendRegisterPut("acct", 5, "balance=10");
    uint64_t seq = store->AppendRegisterPut("acct", 6, "balance=20");
    EXPECT_TRUE(store->WaitDurable(seq).ok());
    EXPECT_GE(store->LastDurable(), seq);
  }
  auto store = Open(&rec);
  EXPECT_EQ(rec.max_fence, 9u);
  ASSERT_EQ(rec.leases.size(), 1u);
  EXPECT_EQ(rec.leases[0].first, "a");
  EXPECT_EQ(rec.leases[0].second.lock_id, "id-a");
  EXPECT_EQ(rec.leases[0].second.owner, "owner");
  ASSERT_EQ(rec.registers.size(), 1u);
  EXPECT_EQ(rec.registers[0].fence, 6u);
  EXPECT_EQ(rec.registers[0].value, "balance=20");
}

TEST_F(DurableStoreTest, ConcurrentAppendsShareSyncs) {
  auto store = Open(nullptr);
  constexpr int kThreads = 8, kPerThread = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        uint64_t seq = store->AppendRegisterPut("r" + std::to_string(t), i + 1, "v");
        ASSERT_TRUE(store->WaitDurable(seq).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  DurableStore::Stats st = store->stats();
  EXPECT_EQ(st.records, uint64_t{kThreads * kPerThread});
  // With 8 writers each waiting for its own sync, syncs must be shared.
  EXPECT_LT(st.commits, st.records);
}

TEST_F(DurableStoreTest, SecondOpenOfSameDirectoryIsUnavailable) {
  auto store = Open(nullptr);
  auto second = DurableStore::Open({.dir = dir_.string()}, nullptr);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(DurableStoreTest, CloseSyncsEverythingAppended) {
  {
    auto store = Open(nullptr);
    for (int i = 1; i <= 1000; ++i) store->AppendRegisterPut("r", i, std::to_string(i));
    EXPECT_TRUE(store->Close().ok());
    EXPECT_TRUE(store->Close().ok());  // idempotent
    EXPECT_EQ(store->WaitDurable(store->LastAppended()).code(), absl::StatusCode::kOk);
  }
  RecoveredState rec;
  auto store = Open(&rec);
  ASSERT_EQ(rec.registers.size(), 1u);
  EXPECT_EQ(rec.registers[0].value, "1000");
}

// The lease core on the durable store: a restart keeps held leases, fences move forward only.
TEST_F(DurableStoreTest, LeaseManagerSurvivesRestart) {
  FakeClock clock;
  std::string held_id;
  uint64_t last_fence = 0;
  {
    auto store = Open(nullptr);
    LeaseManager m({.clock = &clock, .journal = store.get(), .timer_thread = false});
    FencedRegisters regs({.journal = store.get()});
    for (int i = 0; i < 10; ++i) {
      auto g = m.TryAcquire({"tmp" + std::to_string(i), seconds(1), {}, {}});
      ASSERT_TRUE(g.ok() && g->has_value());
      ASSERT_TRUE(m.Release("tmp" + std::to_string(i), (*g)->lock_id).ok());
    }
    auto g = m.TryAcquire({"k", seconds(60), {}, "me"});
    ASSERT_TRUE(g.ok() && g->has_value());
    held_id = (*g)->lock_id;
    last_fence = (*g)->fence;
    ASSERT_TRUE(regs.Set("res", last_fence, "written").ok());
  }
  clock.Advance(seconds(10));
  RecoveredState rec;
  auto store = Open(&rec);
  LeaseManager m({.clock = &clock, .journal = store.get(), .timer_thread = false});
  FencedRegisters regs({.journal = store.get()});
  m.RestoreFence(rec.max_fence);
  for (auto& [k, l] : rec.leases) m.RestoreLease(k, l);
  for (auto& r : rec.registers) regs.Restore(r.resource, r.fence, r.value);

  EXPECT_FALSE(m.TryAcquire({"k", seconds(1), {}, {}})->has_value());
  auto info = m.Info("k");
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->ttl_remaining, seconds(50));
  EXPECT_EQ((*info)->owner, "me");
  EXPECT_TRUE(m.Extend("k", held_id, seconds(5)).ok());
  auto g = m.TryAcquire({"other", seconds(1), {}, {}});
  EXPECT_GT((*g)->fence, last_fence);
  EXPECT_EQ((*regs.Get("res"))->value, "written");
  EXPECT_EQ(regs.Set("res", last_fence - 1, "stale").code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(m.Release("k", held_id).ok());
}

// Semaphore permits and multi-key grants survive a restart; expired permits are dropped, and the
// fence counter comes back above every permit fence.
TEST_F(DurableStoreTest, PermitsAndMultiKeyGrantsSurviveRestart) {
  FakeClock clock;
  PermitGrant live, short_lived;
  LeaseGrant multi;
  {
    auto store = Open(nullptr);
    LeaseManager m({.clock = &clock, .journal = store.get(), .timer_thread = false});
    auto p = m.TrySemAcquire({"jobs", 3, seconds(60), {}, "w0"});
    ASSERT_TRUE(p.ok() && p->has_value());
    live = **p;
    p = m.TrySemAcquire({"jobs", 3, seconds(5), {}, std::nullopt});
    ASSERT_TRUE(p.ok() && p->has_value());
    short_lived = **p;
    p = m.TrySemAcquire({"jobs", 3, seconds(60), {}, std::nullopt});
    ASSERT_TRUE(p.ok() && p->has_value());
    ASSERT_TRUE(m.SemRelease("jobs", (*p)->permit_id).ok());  // its record is deleted
    auto g = m.TryMultiAcquire({{"a", "b"}, seconds(60), {}, "multi"});
    ASSERT_TRUE(g.ok() && g->has_value());
    multi = **g;
    // The highest fence of all goes to a permit that is released: the counter must still cover it.
    p = m.TrySemAcquire({"other", 1, seconds(60), {}, std::nullopt});
    ASSERT_TRUE(p.ok() && p->has_value());
    ASSERT_TRUE(m.SemRelease("other", (*p)->permit_id).ok());
  }
  const uint64_t last_fence = multi.fence + 1;
  clock.Advance(seconds(10));
  RecoveredState rec;
  auto store = Open(&rec);
  EXPECT_EQ(rec.max_fence, last_fence);
  EXPECT_EQ(rec.permits.size(), 2u);  // live and short_lived (expired, dropped on apply)
  LeaseManager m({.clock = &clock, .journal = store.get(), .timer_thread = false});
  FencedRegisters regs({.journal = store.get()});
  ApplyRecovered(rec, m, regs);
  EXPECT_EQ(m.last_fence(), last_fence);

  auto info = m.SemInfo("jobs");
  ASSERT_TRUE(info.ok() && info->has_value());
  EXPECT_EQ((*info)->holders, 1);
  EXPECT_EQ((*info)->limit, 3);
  EXPECT_EQ((*info)->fence, live.fence);
  EXPECT_EQ(m.SemRelease("jobs", short_lived.permit_id).code(),
            absl::StatusCode::kFailedPrecondition);
  auto next = m.TrySemAcquire({"jobs", 3, seconds(1), {}, std::nullopt});
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ((*next)->slot, 1);  // slot 0 is still live's
  EXPECT_GT((*next)->fence, last_fence);
  EXPECT_EQ(m.TrySemAcquire({"jobs", 2, seconds(1), {}, std::nullopt}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(m.SemExtend("jobs", live.permit_id, seconds(5)).ok());

  for (const char* k : {"a", "b"}) {
    auto li = m.Info(k);
    ASSERT_TRUE(li.ok() && li->has_value()) << k;
    EXPECT_EQ((*li)->fence, multi.fence);
    EXPECT_EQ((*li)->owner, "multi");
  }
  EXPECT_EQ(*m.MultiExtend(std::vector<std::string>{"a", "b"}, multi.lock_id, seconds(5)),
            seconds(5));
  EXPECT_EQ(*m.MultiRelease(std::vector<std::string>{"a", "b"}, multi.lock_id), 2u);
}

}  // namespace
}  // namespace tollgate

namespace tollgate {
namespace {

TEST_F(DurableStoreTest, BucketCheckpointsRecoverWithElapsedRefill) {
  FakeClock clock;
  {
    auto store = DurableStore::Open({.dir = dir_.string(), .clock = &clock}, nullptr);
    ASSERT_TRUE(store.ok());
    BucketSnapshot a{"t", "alice", 0, 10'000'000'000'000'000'000ull, 1'000'000'000};  // 10 tokens
    BucketSnapshot b{"p:chat/ip/ip:{ip}", "ip:1", 0, 5'000'000'000'000'000'000ull, 1'000'000'000};
    BucketSnapshot c{"t", "carol", 0, 1, 1};
    ASSERT_TRUE((*store)->WriteBucketCheckpoint({a, b, c}, {}).ok());
    ASSERT_TRUE((*store)->WriteBucketCheckpoint({}, {{"t", "carol"}}).ok());
  }
  clock.Advance(seconds(3));  // 3 tokens refill at 1/s while down
  RecoveredState rec;
  auto store = DurableStore::Open({.dir = dir_.string(), .clock = &clock}, &rec);
  ASSERT_TRUE(store.ok());
  ASSERT_EQ(rec.buckets.size(), 2u);
  for (const BucketSnapshot& s : rec.buckets) {
    if (s.key == "alice") {
      EXPECT_EQ(s.debt_lo, 7'000'000'000'000'000'000ull);
    } else {
      EXPECT_EQ(s.key, "ip:1");
      EXPECT_EQ(s.table, "p:chat/ip/ip:{ip}");
      EXPECT_EQ(s.debt_lo, 2'000'000'000'000'000'000ull);
    }
  }
}

}  // namespace
}  // namespace tollgate

namespace tollgate {
namespace {

// A record that does not decode stops recovery with DataLoss naming the store and the key, instead
// of being skipped or crashing; the store is not opened.
TEST_F(DurableStoreTest, CorruptRecordIsDataLossNamingTheKey) {
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir_.string(), &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "Lpayment:42", "\x01truncated").ok());
    delete db;
  }
  auto s = DurableStore::Open({.dir = dir_.string()}, nullptr);
  ASSERT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
  EXPECT_NE(s.status().message().find(dir_.string()), absl::string_view::npos) << s.status();
  EXPECT_NE(s.status().message().find("corrupt record at key \"Lpayment:42\""),
            absl::string_view::npos)
      << s.status();
  // The database was closed: it can be opened again.
  rocksdb::DB* db = nullptr;
  EXPECT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_.string(), &db).ok());
  delete db;
}

// Issue 13: acquisition times and the lock_id index survive a restart; a lease written by an older
// tollgate (a version 1 record, no acquisition time) still recovers, unindexed, with none.
TEST_F(DurableStoreTest, AcquiredAtAndLookupByIdSurviveRestartAndOldRecordsStillLoad) {
  FakeClock clock;
  const std::string old_id = "0123456789abcdef0123456789abcdef";
  {
    // A version 1 record, byte for byte as tollgate wrote it before version 2.
    std::string v1(1, '\x01');
    const uint64_t fence = 3;
    const int64_t expiry_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  (clock.WallNow() + seconds(60)).time_since_epoch())
                                  .count();
    for (int i = 0; i < 8; ++i) v1.push_back(static_cast<char>((fence >> (8 * i)) & 0xff));
    for (int i = 0; i < 8; ++i) {
      v1.push_back(static_cast<char>((static_cast<uint64_t>(expiry_ns) >> (8 * i)) & 0xff));
    }
    v1.push_back(static_cast<char>(old_id.size()));
    v1.append(old_id);
    v1.push_back(0);  // no owner
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir_.string(), &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "Lold", v1).ok());
    delete db;
  }
  const WallTime t0 = clock.WallNow();
  LeaseGrant single, group;
  {
    RecoveredState rec;
    auto store = Open(&rec);
    LeaseManager m({.clock = &clock, .journal = store.get(), .timer_thread = false});
    FencedRegisters regs({.journal = store.get()});
    ApplyRecovered(rec, m, regs);
    auto old = m.Info("old");
    ASSERT_TRUE(old.ok() && old->has_value());
    EXPECT_EQ((*old)->fence, 3u);
    EXPECT_EQ((*old)->acquired_at, std::nullopt);
    EXPECT_FALSE(m.LookupById(old_id)->has_value());
    auto g = m.TryAcquire({"k", seconds(60), {}, "me"});
    ASSERT_TRUE(g.ok() && g->has_value());
    single = **g;
    g = m.TryMultiAcquire({{"a", "b"}, seconds(60), {}, std::nullopt});
    ASSERT_TRUE(g.ok() && g->has_value());
    group = **g;
    EXPECT_EQ(single.acquired_at, t0);
    EXPECT_EQ(group.acquired_at, t0);
  }
  clock.Advance(seconds(10));
  RecoveredState rec;
  auto store = Open(&rec);
  LeaseManager m({.clock = &clock, .journal = store.get(), .timer_thread = false});
  FencedRegisters regs({.journal = store.get()});
  ApplyRecovered(rec, m, regs);
  auto found = m.LookupById(single.lock_id);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->key, "k");
  EXPECT_EQ((*found)->info.fence, single.fence);
  EXPECT_EQ((*found)->info.acquired_at, t0);
  EXPECT_EQ((*found)->info.ttl_remaining, seconds(50));
  EXPECT_FALSE(m.LookupById(group.lock_id)->has_value());
  EXPECT_EQ((*m.Info("a"))->acquired_at, t0);
  EXPECT_EQ((*m.Info("old"))->acquired_at, std::nullopt);
  EXPECT_TRUE(m.Extend("old", old_id, seconds(5)).ok());  // the old lease is still usable
  EXPECT_TRUE(m.Release("k", single.lock_id).ok());
  EXPECT_FALSE(m.LookupById(single.lock_id)->has_value());
}

}  // namespace
}  // namespace tollgate
