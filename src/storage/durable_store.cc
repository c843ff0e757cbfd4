#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "rocksdb/db.h"
#include "rocksdb/memtablerep.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "storage/record_codec.h"
#include "storage/recovery.h"
#include "tollgate/store.h"

namespace tollgate {
namespace {

rocksdb::Slice S(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::UnavailableError(std::string(what) + ": " + s.ToString());
}

}  // namespace

class DurableStore::Impl {
 public:
  Impl(Options o, rocksdb::DB* db, uint64_t persisted_fence)
      : opt_(std::move(o)), db_(db), persisted_fence_(persisted_fence) {
    linger_ = std::thread([this] { LingerLoop(); });
  }

  ~Impl() { (void)Close(); }

  uint64_t LeasePut(std::string_view key, const StoredLease& lease) {
    std::string k = storage::LeaseKey(key), v = storage::EncodeLease(lease);
    std::lock_guard<std::mutex> l(mu_);
    batch_.Put(S(k), S(v));
    if (lease.fence > batch_fence_) batch_fence_ = lease.fence;
    return Appended();
  }

  uint64_t LeaseDelete(std::string_view key) {
    std::string k = storage::LeaseKey(key);
    std::lock_guard<std::mutex> l(mu_);
    batch_.Delete(S(k));
    return Appended();
  }

  uint64_t PermitPut(std::string_view key, std::string_view permit_id, const StoredPermit& p) {
    std::string k = storage::PermitKey(key, permit_id), v = storage::EncodePermit(p);
    std::lock_guard<std::mutex> l(mu_);
    batch_.Put(S(k), S(v));
    if (p.fence > batch_fence_) batch_fence_ = p.fence;
    return Appended();
  }

  uint64_t PermitDelete(std::string_view key, std::string_view permit_id) {
    std::string k = storage::PermitKey(key, permit_id);
    std::lock_guard<std::mutex> l(mu_);
    batch_.Delete(S(k));
    return Appended();
  }

  uint64_t RegisterPut(std::string_view resource, uint64_t fence, std::string_view value) {
    std::string k = storage::RegisterKey(resource), v = storage::EncodeRegister(fence, value);
    std::lock_guard<std::mutex> l(mu_);
    batch_.Put(S(k), S(v));
    return Appended();
  }

  uint64_t LastAppended() const { return appended_.load(std::memory_order_acquire); }
  uint64_t LastDurable() const { return durable_.load(std::memory_order_acquire); }

  absl::Status WaitDurable(uint64_t seq) {
    if (durable_.load() < seq) CommitPending(nullptr);
    std::unique_lock<std::mutex> l(durable_mu_);
    durable_cv_.wait(l, [&] { return durable_.load() >= seq || !failure_.ok() || closed_; });
    if (durable_.load() >= seq) return absl::OkStatus();
    if (!failure_.ok()) return failure_;
    return absl::UnavailableError("store is closed");
  }

  // Group commit, leader style: the calling thread writes and syncs everything batched so far. If
  // another thread is committing at that moment, the call returns at once and that thread commits
  // this batch right after its own (so concurrent callers share one sync and nobody waits in a
  // queue of syncs). Callers learn about durability from LastDurable()/on_durable.
  void CommitPending(const std::function<void()>& settle) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    std::unique_lock<std::mutex> l(mu_);
    if (committing_) {
      again_ = true;
      return;
    }
    while (batch_.Count() > 0 && !failed_) {
      committing_ = true;
      again_ = false;
      if (settle) {
        l.unlock();
        settle();
        l.lock();
      }
      spare_.Clear();
      std::swap(spare_, batch_);
      const uint64_t last = appended_.load(std::memory_order_relaxed);
      const uint64_t fence = batch_fence_;
      l.unlock();
      // Only the thread with committing_ set gets here, so spare_ and persisted_fence_ are its own.
      const uint64_t n = spare_.Count();
      if (fence > persisted_fence_) {
        spare_.Put(S(storage::kFenceKey), S(storage::EncodeU64(fence)));
      }
      const auto write_started = std::chrono::steady_clock::now();
      absl::Status st = FromRocks(db_->Write(wo, &spare_), "write to store");
      const auto write_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::steady_clock::now() - write_started)
                                .count();
      if (!st.ok()) {
        l.lock();
        failed_ = true;
        committing_ = false;
        l.unlock();
        Fail(st);
        return;
      }
      persisted_fence_ = std::max(persisted_fence_, fence);
      CountCommit(static_cast<uint64_t>(write_ns), n);
      {
        std::lock_guard<std::mutex> dl(durable_mu_);
        durable_.store(last, std::memory_order_seq_cst);
      }
      durable_cv_.notify_all();
      if (opt_.on_durable) opt_.on_durable(last);
      l.lock();
      committing_ = false;
      if (!again_) break;
      if (settle) {
        // Someone asked while this sync ran. Rather than sync again at once (which would make
        // producers alternate syncs, each covering half the traffic), leave it to the next producer
        // that ends a pass, when it can cover everyone; the linger thread steps in after
        // kAskedLinger if none does.
        linger_cv_.notify_one();
        break;
      }
    }
  }

  absl::Status Close() {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (closing_) return absl::OkStatus();
      closing_ = true;
    }
    linger_cv_.notify_one();
    linger_.join();
    CommitPending(nullptr);
    std::lock_guard<std::mutex> cl(checkpoint_mu_);
    absl::Status st = FromRocks(db_->SyncWAL(), "sync WAL on close");
    if (st.ok()) st = FromRocks(db_->Close(), "close store");
    delete db_;
    db_ = nullptr;
    {
      std::lock_guard<std::mutex> l(durable_mu_);
      closed_ = true;
    }
    durable_cv_.notify_all();
    return st;
  }

  Stats stats() const {
    Stats s;
    for (size_t i = 0; i < kStatBuckets; ++i) {
      s.fsync_counts[i] = fsync_counts_[i].load(std::memory_order_relaxed);
      s.size_counts[i] = size_counts_[i].load(std::memory_order_relaxed);
      s.commits += s.fsync_counts[i];
    }
    s.records = records_.load(std::memory_order_relaxed);
    s.fsync_sum = Duration(static_cast<int64_t>(fsync_sum_ns_.load(std::memory_order_relaxed)));
    return s;
  }

  absl::Status WriteBuckets(const std::vector<BucketSnapshot>& changed,
                            const std::vector<std::pair<std::string, std::string>>& dropped) {
    if (changed.empty() && dropped.empty()) return absl::OkStatus();
    rocksdb::WriteBatch b;
    const WallTime now = opt_.clock->WallNow();
    for (const auto& [table, key] : dropped) b.Delete(S(storage::BucketKey(table, key)));
    for (const BucketSnapshot& c : changed) {
      b.Put(S(storage::BucketKey(c.table, c.key)), S(storage::EncodeBucket(c, now)));
    }
    rocksdb::WriteOptions wo;
    wo.sync = false;
    std::lock_guard<std::mutex> l(checkpoint_mu_);
    if (db_ == nullptr) return absl::UnavailableError("store is closed");
    return FromRocks(db_->Write(wo, &b), "write bucket checkpoint");
  }

 private:
  static constexpr auto kLinger = std::chrono::milliseconds(5);
  static constexpr auto kAskedLinger = std::chrono::microseconds(300);

  // REQUIRES: mu_ held. Counts one appended record. Nothing is committed until someone needs it
  // (CommitPending from an I/O thread at the end of its loop pass, or WaitDurable), so one sync
  // covers a whole pass as Redis's one fsync per event-loop pass does; records nobody asks for
  // (timer-driven expiry) are committed by the linger thread within kLinger.
  uint64_t Appended() {
    uint64_t seq = appended_.load(std::memory_order_relaxed) + 1;
    appended_.store(seq, std::memory_order_release);
    return seq;
  }

  void LingerLoop() {
    std::unique_lock<std::mutex> l(mu_);
    while (!closing_) {
      if (linger_cv_.wait_for(l, kLinger) == std::cv_status::no_timeout && again_) {
        linger_cv_.wait_for(l, kAskedLinger);  // give a pass-ending producer the chance first
      }
      if (closing_ || batch_.Count() == 0 || committing_) continue;
      l.unlock();
      CommitPending(nullptr);
      l.lock();
    }
  }

  void Fail(const absl::Status& st) {
    {
      std::lock_guard<std::mutex> l(durable_mu_);
      failure_ = st;
    }
    durable_cv_.notify_all();
    if (opt_.on_failure) {
      opt_.on_failure(st);
      return;
    }
    std::fprintf(stderr,
                 "tollgate: FATAL: %s; exiting so that no unsynced change is acknowledged\n",
                 std::string(st.message()).c_str());
    std::_Exit(75);
  }

  Options opt_;
  rocksdb::DB* db_;

  std::mutex mu_;  // guards batch_, batch_fence_, closing_, committing_, again_, failed_
  std::condition_variable linger_cv_;
  rocksdb::WriteBatch batch_;  // appended, not yet being committed
  uint64_t batch_fence_ = 0;
  bool closing_ = false;
  bool committing_ = false;  // a thread is inside CommitPending's write
  bool again_ = false;       // someone asked for a commit while it was
  bool failed_ = false;
  std::atomic<uint64_t> appended_{0};
  rocksdb::WriteBatch spare_;  // owned by the committing thread

  std::mutex checkpoint_mu_;  // keeps checkpoint writes off a closing database

  std::mutex durable_mu_;  // guards failure_, closed_; pairs with durable_cv_
  std::condition_variable durable_cv_;
  std::atomic<uint64_t> durable_{0};
  absl::Status failure_;
  bool closed_ = false;

  uint64_t persisted_fence_;  // owned by the committing thread
  // One group commit of `n` records whose write and sync took `ns`: counted here only.
  void CountCommit(uint64_t ns, uint64_t n) {
    const size_t fb = std::min<size_t>(std::bit_width(ns / 1000), kStatBuckets - 1);
    const size_t sb = std::min<size_t>(std::bit_width(n), kStatBuckets - 1);
    fsync_counts_[fb].fetch_add(1, std::memory_order_relaxed);
    size_counts_[sb].fetch_add(1, std::memory_order_relaxed);
    fsync_sum_ns_.fetch_add(ns, std::memory_order_relaxed);
    records_.fetch_add(n, std::memory_order_relaxed);
  }

  std::atomic<uint64_t> fsync_counts_[kStatBuckets] = {};
  std::atomic<uint64_t> size_counts_[kStatBuckets] = {};
  std::atomic<uint64_t> fsync_sum_ns_{0};
  std::atomic<uint64_t> records_{0};
  std::thread linger_;
};

absl::StatusOr<std::unique_ptr<DurableStore>> DurableStore::Open(Options options,
                                                                 RecoveredState* recovered) {
  rocksdb::Options ro;
  ro.create_if_missing = true;
  ro.IncreaseParallelism(2);
  ro.keep_log_file_num = 4;
  ro.max_manifest_file_size = 64 << 20;
  // The store is written far more than read (state lives in memory; reads happen only at startup),
  // so the memtable is an unsorted vector, sorted once at flush, instead of a skiplist.
  ro.memtable_factory.reset(new rocksdb::VectorRepFactory());
  ro.allow_concurrent_memtable_write = false;
  rocksdb::DB* db = nullptr;
  absl::Status st = FromRocks(rocksdb::DB::Open(ro, options.dir, &db), "open store " + options.dir);
  if (!st.ok()) return st;

  RecoveredState state;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view k(it->key().data(), it->key().size());
    std::string_view v(it->value().data(), it->value().size());
    absl::Status rec = storage::RecoverRecord(k, v, options.clock->WallNow(), &state);
    if (!rec.ok()) {
      it.reset();
      delete db;
      return absl::DataLossError("store " + options.dir + " holds a " + std::string(rec.message()));
    }
  }
  st = FromRocks(it->status(), "read store");
  it.reset();
  if (!st.ok()) {
    delete db;
    return st;
  }
  const uint64_t fence = state.max_fence;
  if (recovered != nullptr) *recovered = std::move(state);
  return std::unique_ptr<DurableStore>(
      new DurableStore(std::make_unique<Impl>(std::move(options), db, fence)));
}

DurableStore::DurableStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DurableStore::~DurableStore() = default;

uint64_t DurableStore::AppendLeasePut(std::string_view key, const StoredLease& lease) {
  return impl_->LeasePut(key, lease);
}
uint64_t DurableStore::AppendLeaseDelete(std::string_view key) { return impl_->LeaseDelete(key); }
uint64_t DurableStore::AppendPermitPut(std::string_view key, std::string_view permit_id,
                                       const StoredPermit& permit) {
  return impl_->PermitPut(key, permit_id, permit);
}
uint64_t DurableStore::AppendPermitDelete(std::string_view key, std::string_view permit_id) {
  return impl_->PermitDelete(key, permit_id);
}
uint64_t DurableStore::AppendRegisterPut(std::string_view resource, uint64_t fence,
                                         std::string_view value) {
  return impl_->RegisterPut(resource, fence, value);
}
uint64_t DurableStore::LastAppended() const { return impl_->LastAppended(); }
void DurableStore::CommitPending(const std::function<void()>& settle) {
  impl_->CommitPending(settle);
}
uint64_t DurableStore::LastDurable() const { return impl_->LastDurable(); }
absl::Status DurableStore::WaitDurable(uint64_t seq) { return impl_->WaitDurable(seq); }
absl::Status DurableStore::Close() { return impl_->Close(); }
absl::Status DurableStore::WriteBucketCheckpoint(
    const std::vector<BucketSnapshot>& changed,
    const std::vector<std::pair<std::string, std::string>>& dropped) {
  return impl_->WriteBuckets(changed, dropped);
}
absl::Status DurableStore::DeleteBucket(std::string_view table, std::string_view key) {
  return impl_->WriteBuckets({}, {{std::string(table), std::string(key)}});
}
DurableStore::Stats DurableStore::stats() const { return impl_->stats(); }

}  // namespace tollgate
