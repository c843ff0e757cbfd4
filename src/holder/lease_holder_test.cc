#include "tollgate/lease_holder.h"

#include <atomic>
#include <cmath>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tollgate/backend.h"
#include "tollgate/testing/fake_clock.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

// A client clock whose steady time runs at (1 + drift) times the rate of `server` (the FakeClock
// the memory backend reads), from the moment of construction.
class DriftClock final : public Clock {
 public:
  DriftClock(FakeClock* server, double drift)
      : server_(server), origin_(server->SteadyNow()), drift_(drift) {}
  SteadyTime SteadyNow() override { return ClientTime(server_->SteadyNow()); }
  WallTime WallNow() override { return server_->WallNow(); }

  SteadyTime ClientTime(SteadyTime server) const {
    long double d = static_cast<long double>((server - origin_).count());
    return origin_ + Duration(static_cast<int64_t>(std::floor(d * (1.0L + drift_))));
  }
  // The first server instant at which the client clock reads >= c.
  SteadyTime ServerTimeOf(SteadyTime c) const {
    long double d = static_cast<long double>((c - origin_).count());
    SteadyTime s = origin_ + Duration(static_cast<int64_t>(std::floor(d / (1.0L + drift_))));
    while (ClientTime(s) < c) s += nanoseconds(1);
    while (ClientTime(s - nanoseconds(1)) >= c) s -= nanoseconds(1);
    return s;
  }

 private:
  FakeClock* const server_;
  const SteadyTime origin_;
  const long double drift_;
};

// What happens to one request: latency before the server applies it and after (the reply's trip),
// and whether it is lost on the way there (never applied) or its reply is lost (applied). A lost
// request or reply costs the client both latencies, then Unavailable.
struct Fault {
  enum Drop { kNone, kRequest, kReply };
  Duration before{0};
  Duration after{0};
  Drop drop = kNone;
};

// Wraps the memory backend: advances the shared FakeClock around lease calls by the injected
// latency, drops requests or replies, and records the server's expiry of the lease it last granted
// or extended (the time the backend would grant the key to someone else).
class FaultyBackend final : public Backend {
 public:
  FaultyBackend(Backend* inner, FakeClock* clock) : inner_(inner), clock_(clock) {}

  std::function<Fault()> next_fault = [] { return Fault{}; };
  SteadyTime server_expiry{};
  int extend_calls = 0;

  std::string_view kind() const override { return "faulty"; }
  absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view key, Duration ttl,
                                                    std::optional<std::string> owner) override {
    Fault f = next_fault();
    clock_->Advance(f.before);
    if (f.drop == Fault::kRequest) return Lost(f);
    auto r = inner_->Acquire(key, ttl, std::move(owner));
    if (r.ok() && r->has_value()) server_expiry = clock_->SteadyNow() + (*r)->ttl;
    clock_->Advance(f.after);
    if (f.drop == Fault::kReply) return absl::UnavailableError("reply lost");
    return r;
  }
  absl::Status Release(std::string_view key, std::string_view lock_id) override {
    return inner_->Release(key, lock_id);
  }
  absl::StatusOr<Duration> Extend(std::string_view key, std::string_view lock_id,
                                  Duration ttl) override {
    ++extend_calls;
    Fault f = next_fault();
    clock_->Advance(f.before);
    if (f.drop == Fault::kRequest) return Lost(f);
    auto r = inner_->Extend(key, lock_id, ttl);
    if (r.ok()) server_expiry = clock_->SteadyNow() + *r;
    clock_->Advance(f.after);
    if (f.drop == Fault::kReply) return absl::UnavailableError("reply lost");
    return r;
  }
  absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view key) override {
    return inner_->Info(key);
  }
  absl::Status FencedSet(std::string_view resource, uint64_t fence,
                         std::string_view value) override {
    return inner_->FencedSet(resource, fence, value);
  }
  absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view resource) override {
    return inner_->FencedGet(resource);
  }
  absl::StatusOr<Decision> Throttle(std::string_view key, const BucketParams& params,
                                    Decimal cost) override {
    return inner_->Throttle(key, params, cost);
  }
  absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> layers,
                                             Decimal cost) override {
    return inner_->CheckLayers(layers, cost);
  }

 private:
  absl::Status Lost(const Fault& f) {
    clock_->Advance(f.after);
    return absl::UnavailableError("request lost");
  }
  Backend* const inner_;
  FakeClock* const clock_;
};

lease_internal::TestHooks Manual() { return {.manual_watchdog = true}; }

class LeaseHolderTest : public ::testing::Test {
 protected:
  // The holder's lease on `key` through `faulty_` with the manual watchdog; fails the test if not
  // granted.
  std::optional<Lease> Acquire(const LeaseOptions& o, std::string key = "k") {
    auto r = lease_internal::AcquireLease(faulty_, std::move(key), o, Manual());
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return std::nullopt;
    EXPECT_TRUE(r->has_value());
    return std::move(*r);
  }
  // Runs the manual watchdog, advancing the clock to each deadline, until it is done or `until`.
  void Pump(Lease& lease, SteadyTime until = SteadyTime::max()) {
    for (int i = 0; i < 100000; ++i) {
      std::optional<SteadyTime> next = lease.RunWatchdogOnce();
      if (!next.has_value() || *next > until) return;
      if (*next > clock_.SteadyNow()) clock_.Advance(*next - clock_.SteadyNow());
    }
    FAIL() << "watchdog did not settle";
  }
  bool ServerHolds(const Lease& lease) {
    auto info = memory_->Info(lease.key());
    return info.ok() && info->has_value() && (*info)->fence == lease.fence();
  }

  FakeClock clock_;
  std::unique_ptr<Backend> memory_ = NewMemoryBackend(&clock_);
  FaultyBackend faulty_{memory_.get(), &clock_};
};

TEST_F(LeaseHolderTest, SafeUntilIsComputedFromSendTime) {
  faulty_.next_fault = [] {
    return Fault{.before = milliseconds(300), .after = milliseconds(200)};
  };
  SteadyTime t_send = clock_.SteadyNow();
  std::optional<Lease> lease = Acquire({.ttl = seconds(10), .clock = &clock_});
  ASSERT_TRUE(lease.has_value());
  // 10 s * (1 - 1e-3) - 100 ms, from the send time: the 300 ms before the server applied the
  // acquire (and the 200 ms reply trip) do not lengthen it.
  EXPECT_EQ(lease->safe_until(), t_send + milliseconds(9890));
  EXPECT_EQ(faulty_.server_expiry, t_send + milliseconds(10300));
  EXPECT_EQ(lease->fence(), 1u);
  EXPECT_EQ(lease->key(), "k");
  EXPECT_EQ(lease->lock_id().size(), 32u);
  EXPECT_TRUE(lease->check().ok());
  EXPECT_FALSE(lease->lost().has_value());
  EXPECT_FALSE(lease->stop_token().stop_requested());
}

TEST_F(LeaseHolderTest, RenewalMovesSafeUntilForwardAndRejectionLosesAtOnce) {
  std::optional<Lease> lease = Acquire({.ttl = seconds(9), .clock = &clock_});
  ASSERT_TRUE(lease.has_value());
  SteadyTime first = lease->safe_until();
  // The watchdog renews at ttl / 3.
  std::optional<SteadyTime> next = lease->RunWatchdogOnce();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(*next - clock_.SteadyNow(), seconds(3));
  clock_.Advance(seconds(3));
  faulty_.next_fault = [] { return Fault{.before = milliseconds(50), .after = milliseconds(50)}; };
  SteadyTime t_send = clock_.SteadyNow();
  lease->RunWatchdogOnce();
  EXPECT_EQ(faulty_.extend_calls, 1);
  EXPECT_EQ(lease->safe_until(), t_send + milliseconds(8991 - 100));
  EXPECT_GT(lease->safe_until(), first);
  EXPECT_LT(lease->safe_until(), faulty_.server_expiry);

  // An explicit renewal also moves it.
  clock_.Advance(seconds(1));
  t_send = clock_.SteadyNow();
  ASSERT_TRUE(lease->renew().ok());
  EXPECT_EQ(lease->safe_until(), t_send + milliseconds(8891));

  // The server no longer holds it (here: released behind the holder's back).
  std::atomic<bool> stopped = false;
  std::stop_callback cb(lease->stop_token(), [&] { stopped = true; });
  ASSERT_TRUE(memory_->Release(lease->key(), lease->lock_id()).ok());
  absl::Status s = lease->renew();
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_EQ(lease->lost(), LossReason::kRenewRejected);
  EXPECT_TRUE(stopped);
  EXPECT_THAT(std::string(lease->check().message()), HasSubstr("renewal rejected"));
  EXPECT_FALSE(lease->RunWatchdogOnce().has_value());
}

TEST_F(LeaseHolderTest, UnreachableBackendLosesAtSafeUntil) {
  std::optional<Lease> lease = Acquire({.ttl = seconds(3), .clock = &clock_});
  ASSERT_TRUE(lease.has_value());
  SteadyTime safe_until = lease->safe_until();
  faulty_.next_fault = [] {
    return Fault{.before = milliseconds(10), .after = milliseconds(10), .drop = Fault::kRequest};
  };
  std::atomic<bool> stopped = false;
  std::stop_callback cb(lease->stop_token(), [&] { stopped = true; });
  for (int i = 0; i < 10000 && !lease->lost().has_value(); ++i) {
    EXPECT_EQ(lease->safe_until(), safe_until);  // failures never move it
    EXPECT_TRUE(ServerHolds(*lease));            // still held on the server while not lost
    std::optional<SteadyTime> next = lease->RunWatchdogOnce();
    if (next.has_value() && *next > clock_.SteadyNow()) clock_.Advance(*next - clock_.SteadyNow());
  }
  EXPECT_GT(faulty_.extend_calls, 3);  // kept trying
  EXPECT_EQ(lease->lost(), LossReason::kUnreachable);
  EXPECT_EQ(lease->lost_at(), safe_until);
  EXPECT_EQ(lease->safe_until(), safe_until);
  EXPECT_LE(*lease->lost_at(), faulty_.server_expiry);
  EXPECT_TRUE(stopped);
  EXPECT_THAT(std::string(lease->check().message()), HasSubstr("unreachable"));
}

TEST_F(LeaseHolderTest, MaxHoldStopsRenewalAndLosesBeforeServerExpiry) {
  SteadyTime start = clock_.SteadyNow();
  std::optional<Lease> lease =
      Acquire({.ttl = seconds(3), .max_hold = seconds(5), .clock = &clock_});
  ASSERT_TRUE(lease.has_value());
  Pump(*lease);
  EXPECT_EQ(lease->lost(), LossReason::kMaxHoldExceeded);
  EXPECT_GE(*lease->lost_at(), start + seconds(5));
  EXPECT_LE(*lease->lost_at(), faulty_.server_expiry);
  EXPECT_TRUE(lease->stop_token().stop_requested());
  EXPECT_TRUE(ServerHolds(*lease));  // the signal came first
  EXPECT_TRUE(absl::IsFailedPrecondition(lease->renew()));
}

TEST_F(LeaseHolderTest, ProgressTimeoutStopsRenewal) {
  std::optional<Lease> lease =
      Acquire({.ttl = seconds(3), .progress_timeout = seconds(2), .clock = &clock_});
  ASSERT_TRUE(lease.has_value());
  // Touched every 500 ms for 10 s: renewed all along.
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(milliseconds(500));
    lease->touch();
    lease->RunWatchdogOnce();
    ASSERT_FALSE(lease->lost().has_value()) << i;
  }
  EXPECT_GE(faulty_.extend_calls, 9);
  Pump(*lease);  // no more touches
  EXPECT_EQ(lease->lost(), LossReason::kNoProgress);
  EXPECT_LE(*lease->lost_at(), faulty_.server_expiry);
  EXPECT_TRUE(ServerHolds(*lease));
}

TEST_F(LeaseHolderTest, ReleaseIsIdempotentAndFreesTheKey) {
  std::optional<Lease> lease = Acquire({.ttl = seconds(10), .clock = &clock_});
  ASSERT_TRUE(lease.has_value());
  std::stop_token token = lease->stop_token();
  EXPECT_TRUE(lease->release().ok());
  EXPECT_TRUE(lease->release().ok());
  EXPECT_EQ(lease->lost(), LossReason::kReleased);
  EXPECT_TRUE(token.stop_requested());
  EXPECT_THAT(std::string(lease->check().message()), HasSubstr("released"));
  EXPECT_TRUE(absl::IsFailedPrecondition(lease->renew()));
  auto again = memory_->Acquire("k", seconds(1), std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->has_value());
}

TEST_F(LeaseHolderTest, DestructorReleases) {
  {
    std::optional<Lease> lease = Acquire({.ttl = seconds(10), .clock = &clock_});
    ASSERT_TRUE(lease.has_value());
    Lease moved = std::move(*lease);  // the moved-from one does nothing
    lease.reset();
    EXPECT_TRUE(ServerHolds(moved));
  }
  auto again = memory_->Acquire("k", seconds(1), std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->has_value());
}

TEST_F(LeaseHolderTest, DestructorWithWatchdogThreadsReleases) {
  std::unique_ptr<Backend> real = NewMemoryBackend();
  {
    auto lease = AcquireLease(*real, "k", {.ttl = seconds(10)});
    ASSERT_TRUE(lease.ok() && lease->has_value());
  }
  auto again = real->Acquire("k", seconds(1), std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->has_value());
}

// Real threads, real time: the watchdog keeps a 300 ms lease for 1 s, then loses it when the
// backend stops answering, no later than safe_until.
TEST_F(LeaseHolderTest, WatchdogThreadsRenewAndSignal) {
  std::unique_ptr<Backend> real = NewMemoryBackend();
  class Switchable final : public Backend {
   public:
    explicit Switchable(Backend* b) : b_(b) {}
    std::atomic<bool> down = false;
    std::string_view kind() const override { return "switchable"; }
    absl::StatusOr<std::optional<LeaseGrant>> Acquire(std::string_view k, Duration t,
                                                      std::optional<std::string> o) override {
      return b_->Acquire(k, t, std::move(o));
    }
    absl::Status Release(std::string_view k, std::string_view id) override {
      return b_->Release(k, id);
    }
    absl::StatusOr<Duration> Extend(std::string_view k, std::string_view id, Duration t) override {
      if (down) return absl::UnavailableError("down");
      return b_->Extend(k, id, t);
    }
    absl::StatusOr<std::optional<LeaseInfo>> Info(std::string_view k) override {
      return b_->Info(k);
    }
    absl::Status FencedSet(std::string_view r, uint64_t f, std::string_view v) override {
      return b_->FencedSet(r, f, v);
    }
    absl::StatusOr<std::optional<FencedValue>> FencedGet(std::string_view r) override {
      return b_->FencedGet(r);
    }
    absl::StatusOr<Decision> Throttle(std::string_view k, const BucketParams& p,
                                      Decimal c) override {
      return b_->Throttle(k, p, c);
    }
    absl::StatusOr<PolicyDecision> CheckLayers(std::span<const LayerCheck> l, Decimal c) override {
      return b_->CheckLayers(l, c);
    }

   private:
    Backend* b_;
  } backend(real.get());
  auto lease = AcquireLease(backend, "k", {.ttl = milliseconds(300), .guard = milliseconds(50)});
  ASSERT_TRUE(lease.ok() && lease->has_value());
  Lease& l = **lease;
  std::this_thread::sleep_for(seconds(1));
  EXPECT_FALSE(l.lost().has_value());
  EXPECT_TRUE(l.check().ok());
  backend.down = true;
  SteadyTime safe_until = l.safe_until();
  std::atomic<int64_t> fired_at{0};
  std::stop_callback cb(l.stop_token(), [&] {
    fired_at = std::chrono::steady_clock::now().time_since_epoch().count();
  });
  for (int i = 0; i < 200 && fired_at == 0; ++i) std::this_thread::sleep_for(milliseconds(10));
  ASSERT_NE(fired_at, 0);
  EXPECT_EQ(l.lost(), LossReason::kUnreachable);
  EXPECT_EQ(l.safe_until(), safe_until);
  // The timer thread fired it (not a lazy check) shortly after safe_until.
  EXPECT_GE(SteadyTime(Duration(fired_at.load())), safe_until);
  EXPECT_LT(SteadyTime(Duration(fired_at.load())), safe_until + milliseconds(200));
}

TEST_F(LeaseHolderTest, AcquireWaitsWithBackoff) {
  ASSERT_TRUE(memory_->Acquire("k", seconds(3), std::nullopt).ok());
  std::vector<Duration> pauses;
  lease_internal::TestHooks hooks = Manual();
  hooks.jitter_seed = 7;
  hooks.sleep = [&](Duration d) {
    pauses.push_back(d);
    clock_.Advance(d);
  };
  SteadyTime start = clock_.SteadyNow();
  auto lease = lease_internal::AcquireLease(
      faulty_, "k", {.ttl = seconds(1), .wait = seconds(5), .clock = &clock_}, hooks);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(lease->has_value());
  EXPECT_GE(clock_.SteadyNow(), start + seconds(3));
  ASSERT_GE(pauses.size(), 5u);
  Duration d = milliseconds(50);
  for (Duration p : pauses) {
    EXPECT_GE(p, d / 2);
    EXPECT_LE(p, d);
    d = std::min<Duration>(d * 2, seconds(1));
  }

  // Not acquired within the wait: nullopt, and the wait is not overrun.
  pauses.clear();
  start = clock_.SteadyNow();
  auto other = lease_internal::AcquireLease(
      faulty_, "k", {.ttl = seconds(1), .wait = milliseconds(700), .clock = &clock_}, hooks);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
  EXPECT_EQ(clock_.SteadyNow(), start + milliseconds(700));
}

TEST_F(LeaseHolderTest, ValidatesOptions) {
  auto bad = [&](LeaseOptions o, std::string_view field) {
    absl::Status s = ValidateLeaseOptions(o);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << field;
    EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(field))) << s;
  };
  bad({.ttl = Duration(0)}, "ttl");
  bad({.ttl = seconds(1), .wait = -seconds(1)}, "wait");
  bad({.ttl = seconds(1), .max_drift = 0.5}, "max_drift");
  bad({.ttl = seconds(1), .max_drift = -0.1}, "max_drift");
  bad({.ttl = milliseconds(100)}, "guard");  // default guard 100 ms >= the whole ttl
  bad({.ttl = seconds(1), .guard = -milliseconds(1)}, "guard");
  bad({.ttl = seconds(1), .renew_every = milliseconds(900)}, "renew_every");
  bad({.ttl = seconds(1), .max_hold = -seconds(1)}, "max_hold");
  bad({.ttl = seconds(1), .progress_timeout = -seconds(1)}, "progress_timeout");
  bad({.ttl = seconds(1), .clock = nullptr}, "clock");
  EXPECT_TRUE(ValidateLeaseOptions({.ttl = seconds(1)}).ok());
  auto r = AcquireLease(faulty_, "k", {.ttl = seconds(1), .max_drift = 0.5});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
}

TEST_F(LeaseHolderTest, WithLockReturnsTheValue) {
  absl::StatusOr<int> r =
      WithLock(*memory_, "k", {.ttl = seconds(10), .clock = &clock_}, [&](const Lease& lease) {
        EXPECT_TRUE(lease.check().ok());
        EXPECT_TRUE(ServerHolds(lease));
        return 42;
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 42);
  // Released afterwards.
  auto info = memory_->Info("k");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());

  absl::Status v =
      WithLock(*memory_, "k", {.ttl = seconds(10), .clock = &clock_}, [](const Lease&) {});
  EXPECT_TRUE(v.ok()) << v;
  absl::Status e = WithLock(*memory_, "k", {.ttl = seconds(10), .clock = &clock_},
                            [](const Lease&) { return absl::DataLossError("boom"); });
  EXPECT_TRUE(absl::IsDataLoss(e)) << e;
  absl::StatusOr<std::string> so =
      WithLock(*memory_, "k", {.ttl = seconds(10), .clock = &clock_},
               [](const Lease&) -> absl::StatusOr<std::string> { return std::string("x"); });
  ASSERT_TRUE(so.ok());
  EXPECT_EQ(*so, "x");
}

TEST_F(LeaseHolderTest, WithLockReportsLossEvenIfFnSucceeded) {
  absl::StatusOr<int> r =
      WithLock(*memory_, "k", {.ttl = seconds(10), .clock = &clock_}, [&](const Lease&) {
        clock_.Advance(seconds(20));  // fn ran past safe_until
        return 42;
      });
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("expired"));

  absl::Status e =
      WithLock(*memory_, "k", {.ttl = seconds(10), .clock = &clock_}, [&](const Lease&) {
        clock_.Advance(seconds(20));
        return absl::DataLossError("boom");
      });
  EXPECT_TRUE(absl::IsFailedPrecondition(e)) << e;
  EXPECT_THAT(std::string(e.message()), HasSubstr("boom"));
}

TEST_F(LeaseHolderTest, WithLockNotAcquired) {
  ASSERT_TRUE(memory_->Acquire("k", seconds(10), std::nullopt).ok());
  bool ran = false;
  absl::StatusOr<int> r =
      WithLock(*memory_, "k", {.ttl = seconds(10), .clock = &clock_}, [&](const Lease&) {
        ran = true;
        return 1;
      });
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not acquired within wait"));
  EXPECT_FALSE(ran);
  absl::Status bad =
      WithLock(*memory_, "", {.ttl = seconds(10), .clock = &clock_}, [](const Lease&) {});
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
}

TEST(LeaseKindsTest, PermitsAndMultiKeyLeasesOverABackend) {
  std::unique_ptr<Backend> memory = NewMemoryBackend();
  auto p0 = AcquirePermit(*memory, "pool", 2, {.ttl = seconds(10)});
  auto p1 = AcquirePermit(*memory, "pool", 2, {.ttl = seconds(10)});
  ASSERT_TRUE(p0.ok() && p0->has_value()) << p0.status();
  ASSERT_TRUE(p1.ok() && p1->has_value()) << p1.status();
  EXPECT_EQ((*p0)->kind(), LeaseKind::kPermit);
  EXPECT_EQ((*p0)->slot(), 0);
  EXPECT_EQ((*p1)->slot(), 1);
  EXPECT_LT((*p0)->fence(), (*p1)->fence());
  auto full = AcquirePermit(*memory, "pool", 2, {.ttl = seconds(10)});
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full->has_value());
  EXPECT_TRUE((*p0)->renew().ok());
  EXPECT_TRUE((*p0)->release().ok());
  EXPECT_EQ((*p0)->lost(), LossReason::kReleased);
  EXPECT_THAT(std::string((*p0)->check().message()), HasSubstr("permit (slot 0)"));
  auto again = AcquirePermit(*memory, "pool", 2, {.ttl = seconds(10)});
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->slot(), 0);

  auto all = AcquireAll(*memory, {"a", "b"}, {.ttl = seconds(10)});
  ASSERT_TRUE(all.ok() && all->has_value()) << all.status();
  Lease& l = **all;
  EXPECT_EQ(l.kind(), LeaseKind::kMulti);
  EXPECT_EQ(l.keys(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(l.key(), "a");
  EXPECT_FALSE(l.slot().has_value());
  auto overlap = AcquireAll(*memory, {"b", "c"}, {.ttl = seconds(10)});
  ASSERT_TRUE(overlap.ok());
  EXPECT_FALSE(overlap->has_value());
  EXPECT_TRUE(l.renew().ok());
  // Losing one key loses all.
  ASSERT_TRUE(memory->Release("b", l.lock_id()).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(l.renew()));
  EXPECT_EQ(l.lost(), LossReason::kRenewRejected);
  EXPECT_TRUE(l.stop_token().stop_requested());
  EXPECT_THAT(std::string(l.check().message()), HasSubstr("lease on keys \"a\", \"b\""));
  EXPECT_TRUE(absl::IsFailedPrecondition(l.release()));  // only "a" was still held
  auto info = memory->Info("a");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
}

// The safety property, over thousands of seeded random runs on the fake clock: random request
// latency, random request and reply loss, a network partition at a random time, client clock drift
// within max_drift, random guard, renewal period, max_hold and progress timeout. In every run the
// lease ends up lost, and the loss signal (lost(), stop_token, check()) takes effect no later than
// the server's own expiry of the lease; while it is not lost, the server holds it.
TEST(LeaseHolderPropertyTest, LossSignalNeverLaterThanServerExpiry) {
  constexpr int kRuns = 3000;
  const uint64_t base_seed = 20261130;
  std::map<LossReason, int> reasons;
  struct Worst {
    Duration margin = Duration::max();
    uint64_t seed = 0;
    Duration ttl{0}, guard{0};
    double drift = 0;
  } worst;
  for (int run = 0; run < kRuns; ++run) {
    const uint64_t seed = base_seed + run;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed << " (run " << run << ")");
    std::mt19937_64 rng(seed);
    auto uniform = [&](double lo, double hi) {
      return std::uniform_real_distribution<double>(lo, hi)(rng);
    };
    auto chance = [&](double p) { return uniform(0, 1) < p; };
    auto dur = [&](Duration lo, Duration hi) {
      return Duration(std::uniform_int_distribution<int64_t>(lo.count(), hi.count())(rng));
    };

    FakeClock server;
    std::unique_ptr<Backend> memory = NewMemoryBackend(&server);
    FaultyBackend faulty(memory.get(), &server);

    LeaseOptions o;
    o.ttl = dur(milliseconds(200), seconds(5));
    o.max_drift = chance(0.2) ? 0.0 : uniform(0, 0.01);
    const double drift = chance(0.3)   ? -o.max_drift
                         : chance(0.2) ? o.max_drift
                                       : uniform(-o.max_drift, o.max_drift);
    DriftClock client(&server, drift);
    o.clock = &client;
    const Duration window = Duration(static_cast<int64_t>(o.ttl.count() * (1 - o.max_drift)));
    o.guard = chance(0.3) ? Duration(0) : dur(Duration(0), window / 4);
    const Duration safe = window - o.guard;
    o.renew_every = chance(0.5) ? Duration(0) : dur(safe / 20, safe - safe / 20);
    if (o.renew_every == Duration(0) && o.ttl / 3 >= safe) o.renew_every = safe / 2;
    if (chance(0.4)) o.max_hold = dur(Duration(1), o.ttl * 10);
    if (chance(0.4)) o.progress_timeout = dur(o.ttl / 10, o.ttl * 2);
    ASSERT_TRUE(ValidateLeaseOptions(o).ok()) << ValidateLeaseOptions(o);

    const Duration max_latency = o.ttl / dur(Duration(2), Duration(40)).count();
    const double drop_p = chance(0.3) ? 0.0 : uniform(0, 0.6);
    const SteadyTime partition_at = server.SteadyNow() + dur(Duration(0), o.ttl * 12);
    faulty.next_fault = [&] {
      Fault f{.before = dur(Duration(0), max_latency), .after = dur(Duration(0), max_latency)};
      if (server.SteadyNow() >= partition_at) {
        f.drop = Fault::kRequest;
      } else if (chance(drop_p)) {
        f.drop = chance(0.5) ? Fault::kRequest : Fault::kReply;
      }
      return f;
    };
    const SteadyTime stop_touching = server.SteadyNow() + dur(Duration(0), o.ttl * 8);

    // Acquire with latency, never dropped (a lost acquire leaves no lease to watch).
    auto acquire_fault = faulty.next_fault;
    faulty.next_fault = [&] {
      Fault f = acquire_fault();
      f.drop = Fault::kNone;
      return f;
    };
    auto acquired = lease_internal::AcquireLease(faulty, "k", o, Manual());
    ASSERT_TRUE(acquired.ok() && acquired->has_value()) << acquired.status();
    faulty.next_fault = acquire_fault;
    Lease& lease = **acquired;

    // Checks at the current server time.
    auto check = [&] {
      const SteadyTime now = server.SteadyNow();
      const bool server_holds = now < faulty.server_expiry;
      auto info = memory->Info("k");
      ASSERT_TRUE(info.ok());
      ASSERT_EQ(info->has_value() && (*info)->fence == lease.fence(), server_holds);
      std::optional<LossReason> lost = lease.lost();
      if (!server_holds) {
        ASSERT_TRUE(lost.has_value()) << "server expired the lease, holder not";
      }
      if (lost.has_value()) {
        ASSERT_TRUE(lease.stop_token().stop_requested());
        ASSERT_FALSE(lease.check().ok());
        ASSERT_LE(client.ServerTimeOf(*lease.lost_at()), faulty.server_expiry)
            << "loss signalled after the server's expiry";
      } else {
        ASSERT_TRUE(lease.check().ok());
        ASSERT_LE(client.ServerTimeOf(lease.safe_until()), faulty.server_expiry);
      }
    };

    int steps = 0;
    while (true) {
      std::optional<SteadyTime> next = lease.RunWatchdogOnce();
      ASSERT_NO_FATAL_FAILURE(check());
      if (!next.has_value()) break;
      ASSERT_LT(++steps, 100000) << "run did not end";
      SteadyTime target = client.ServerTimeOf(*next);
      // Stop exactly at the server's expiry on the way: the signal must be there already.
      if (faulty.server_expiry > server.SteadyNow() && faulty.server_expiry <= target) {
        server.Advance(faulty.server_expiry - server.SteadyNow());
        ASSERT_NO_FATAL_FAILURE(check());
      }
      // And sometimes at a random point before the next deadline.
      if (target > server.SteadyNow() && chance(0.3)) {
        server.Advance(dur(Duration(0), target - server.SteadyNow()));
        ASSERT_NO_FATAL_FAILURE(check());
      }
      if (target > server.SteadyNow()) server.Advance(target - server.SteadyNow());
      if (server.SteadyNow() < stop_touching && chance(0.8)) lease.touch();
    }
    std::optional<LossReason> reason = lease.lost();
    ASSERT_TRUE(reason.has_value());
    ASSERT_NE(*reason, LossReason::kRenewRejected);  // the signal always comes first
    ASSERT_NE(*reason, LossReason::kReleased);
    ++reasons[*reason];
    // How long before the server's expiry the signal took effect (server time).
    const Duration margin = faulty.server_expiry - client.ServerTimeOf(*lease.lost_at());
    if (margin < worst.margin) worst = {margin, seed, o.ttl, o.guard, drift};
  }
  for (auto [reason, n] : reasons) {
    std::cout << LossReasonName(reason) << ": " << n << " runs\n";
  }
  std::cout << "worst margin between the loss signal and the server's expiry: "
            << std::chrono::duration_cast<std::chrono::microseconds>(worst.margin).count()
            << " us (seed " << worst.seed << ", ttl "
            << std::chrono::duration_cast<std::chrono::milliseconds>(worst.ttl).count()
            << " ms, guard "
            << std::chrono::duration_cast<std::chrono::milliseconds>(worst.guard).count()
            << " ms, client drift " << worst.drift << ")\n";
  EXPECT_GE(worst.margin, Duration(0));
  EXPECT_GT(reasons[LossReason::kUnreachable], 0);
  EXPECT_GT(reasons[LossReason::kMaxHoldExceeded], 0);
  EXPECT_GT(reasons[LossReason::kNoProgress], 0);
}

}  // namespace
}  // namespace tollgate
