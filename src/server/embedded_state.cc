// State on the embedded store: the cores answer at once; WAIT queues in the lease manager, whose
// answer (from its timer thread or the thread that freed the key) is posted to this I/O thread.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "server/state.h"

namespace tollgate::server {
namespace {

class EmbeddedState final : public State {
 public:
  EmbeddedState(LeaseManager& leases, FencedRegisters& registers, Throttler& throttler,
                PolicyEngine& policies, DurableStore& store, std::string data_dir, EventLoop& loop)
      : leases_(leases),
        registers_(registers),
        throttler_(throttler),
        policies_(policies),
        store_(store),
        data_dir_(std::move(data_dir)),
        loop_(loop) {}
  ~EmbeddedState() override { *alive_ = false; }

  uint64_t Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) override {
    const uint64_t ticket = next_ticket_++;
    AcquireRequest r = req;
    if (shut_down_) r.wait = Duration(0);  // stopping: no new waits
    absl::StatusOr<LeaseManager::AsyncStart> start = leases_.AcquireAsync(
        r, r.wait > Duration(0) ? OnGrant(ticket, {req.key}) : GrantCallback());
    if (!start.ok()) {
      done(start.status());
      return 0;
    }
    if (!start->queued) {
      done(std::move(start->grant));
      return 0;
    }
    waiting_.emplace(ticket,
                     Waiting{Kind::kLease, {req.key}, start->waiter_id, std::move(done), {}});
    return ticket;
  }

  uint64_t MultiAcquire(const MultiAcquireRequest& req,
                        Completion<std::optional<LeaseGrant>> done) override {
    const uint64_t ticket = next_ticket_++;
    MultiAcquireRequest r = req;
    if (shut_down_) r.wait = Duration(0);
    absl::StatusOr<LeaseManager::AsyncStart> start = leases_.MultiAcquireAsync(
        r, r.wait > Duration(0) ? OnGrant(ticket, req.keys) : GrantCallback());
    if (!start.ok()) {
      done(start.status());
      return 0;
    }
    if (!start->queued) {
      done(std::move(start->grant));
      return 0;
    }
    waiting_.emplace(ticket,
                     Waiting{Kind::kMulti, req.keys, start->waiter_id, std::move(done), {}});
    return ticket;
  }

  uint64_t SemAcquire(const SemAcquireRequest& req,
                      Completion<std::optional<PermitGrant>> done) override {
    const uint64_t ticket = next_ticket_++;
    SemAcquireRequest r = req;
    if (shut_down_) r.wait = Duration(0);
    PermitCallback on_answer;
    if (r.wait > Duration(0)) {
      on_answer = [loop = &loop_, alive = std::weak_ptr<bool>(alive_), this, ticket,
                   key = req.key](std::optional<PermitGrant> g) {
        loop->Post([alive, this, ticket, key, g = std::move(g)]() mutable {
          auto a = alive.lock();
          if (a && *a) PermitAnswered(ticket, key, std::move(g));
        });
      };
    }
    absl::StatusOr<LeaseManager::SemAsyncStart> start = leases_.SemAcquireAsync(r, on_answer);
    if (!start.ok()) {
      done(start.status());
      return 0;
    }
    if (!start->queued) {
      done(std::move(start->grant));
      return 0;
    }
    waiting_.emplace(ticket,
                     Waiting{Kind::kSemaphore, {req.key}, start->waiter_id, {}, std::move(done)});
    return ticket;
  }

  void CancelWait(uint64_t ticket) override {
    auto it = waiting_.find(ticket);
    if (it == waiting_.end()) return;
    // If the manager already answered, the answer is on its way to Answered / PermitAnswered,
    // which find no waiter and give the grant back.
    (void)CancelInCore(it->second);
    waiting_.erase(it);
  }

  void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) override {
    done(leases_.Release(key, lock_id));
  }
  void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
              Completion<Duration> done) override {
    done(leases_.Extend(key, lock_id, ttl));
  }
  void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) override {
    done(leases_.Info(key));
  }
  // The core counts the waiters of every I/O thread.
  void LookupById(std::string_view lock_id, Completion<std::optional<LeaseById>> done) override {
    done(leases_.LookupById(lock_id));
  }
  void SemRelease(std::string_view key, std::string_view permit_id,
                  StatusCompletion done) override {
    done(leases_.SemRelease(key, permit_id));
  }
  void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                 Completion<Duration> done) override {
    done(leases_.SemExtend(key, permit_id, ttl));
  }
  // The core counts the waiters of every I/O thread.
  void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) override {
    done(leases_.SemInfo(key));
  }
  void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                    Completion<size_t> done) override {
    done(leases_.MultiRelease(keys, lock_id));
  }
  void MultiExtend(std::span<const std::string> keys, std::string_view lock_id, Duration ttl,
                   Completion<Duration> done) override {
    done(leases_.MultiExtend(keys, lock_id, ttl));
  }
  void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                 StatusCompletion done) override {
    done(registers_.Set(resource, fence, value));
  }
  void FencedGet(std::string_view resource, Completion<std::optional<FencedValue>> done) override {
    done(registers_.Get(resource));
  }
  void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                Completion<Decision> done) override {
    done(throttler_.Check(key, params, cost));
  }
  void RateCheck(std::string_view policy, std::span<const Field> fields,
                 std::optional<Decimal> cost, Completion<PolicyDecision> done) override {
    done(policies_.Check(policy, fields, cost));
  }

  InfoLines PersistenceInfo() const override {
    const DurableStore::Stats st = store_.stats();
    return {{"store", "rocksdb"},
            {"data_dir", data_dir_},
            {"group_commits", std::to_string(st.commits)},
            {"records_written", std::to_string(st.records)},
            {"last_appended_seq", std::to_string(store_.LastAppended())},
            {"last_durable_seq", std::to_string(store_.LastDurable())}};
  }
  InfoLines LeasesInfo() const override {
    return {{"lease_keys", std::to_string(leases_.key_count())},
            {"last_fence", std::to_string(leases_.last_fence())},
            {"fenced_registers", std::to_string(registers_.size())}};
  }
  bool KnowsBucketCounts() const override { return true; }

  void Shutdown() override {
    shut_down_ = true;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (CancelInCore(it->second)) {
        Waiting w = std::move(it->second);
        waiting_.erase(it++);
        if (w.kind == Kind::kSemaphore) {
          w.permit_done(std::optional<PermitGrant>());
        } else {
          w.lease_done(std::optional<LeaseGrant>());
        }
      } else {
        ++it;  // answered already: the answer is on its way
      }
    }
  }

 private:
  enum class Kind { kLease, kMulti, kSemaphore };
  struct Waiting {
    Kind kind;
    std::vector<std::string> keys;  // one, except for kMulti
    uint64_t waiter_id;
    Completion<std::optional<LeaseGrant>> lease_done;    // kLease, kMulti
    Completion<std::optional<PermitGrant>> permit_done;  // kSemaphore
  };

  // The manager's answer for a lease or multi-key waiter on `keys`, posted to this I/O thread.
  GrantCallback OnGrant(uint64_t ticket, std::vector<std::string> keys) {
    return [loop = &loop_, alive = std::weak_ptr<bool>(alive_), this, ticket,
            keys = std::move(keys)](std::optional<LeaseGrant> g) {
      loop->Post([alive, this, ticket, keys, g = std::move(g)]() mutable {
        auto a = alive.lock();
        if (a && *a) Answered(ticket, keys, std::move(g));
      });
    };
  }

  // Takes the waiter out of the manager's queue: true if it was still queued.
  bool CancelInCore(const Waiting& w) {
    if (w.kind == Kind::kSemaphore) return leases_.CancelSemWaiter(w.keys[0], w.waiter_id);
    return leases_.CancelWaiter(w.keys[0], w.waiter_id);
  }

  void Answered(uint64_t ticket, const std::vector<std::string>& keys,
                std::optional<LeaseGrant> g) {
    auto it = waiting_.find(ticket);
    if (it == waiting_.end()) {
      // Cancelled after the manager answered: nobody takes the lease (of one key or several).
      if (g) (void)leases_.MultiRelease(keys, g->lock_id);
      return;
    }
    auto done = std::move(it->second.lease_done);
    waiting_.erase(it);
    done(std::move(g));
  }

  void PermitAnswered(uint64_t ticket, const std::string& key, std::optional<PermitGrant> g) {
    auto it = waiting_.find(ticket);
    if (it == waiting_.end()) {
      if (g) (void)leases_.SemRelease(key, g->permit_id);  // cancelled after the answer
      return;
    }
    auto done = std::move(it->second.permit_done);
    waiting_.erase(it);
    done(std::move(g));
  }

  LeaseManager& leases_;
  FencedRegisters& registers_;
  Throttler& throttler_;
  PolicyEngine& policies_;
  DurableStore& store_;
  const std::string data_dir_;
  EventLoop& loop_;
  bool shut_down_ = false;
  uint64_t next_ticket_ = 1;
  absl::flat_hash_map<uint64_t, Waiting> waiting_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

std::unique_ptr<State> NewEmbeddedState(LeaseManager& leases, FencedRegisters& registers,
                                        Throttler& throttler, PolicyEngine& policies,
                                        DurableStore& store, std::string data_dir,
                                        EventLoop& loop) {
  return std::make_unique<EmbeddedState>(leases, registers, throttler, policies, store,
                                         std::move(data_dir), loop);
}

}  // namespace tollgate::server
