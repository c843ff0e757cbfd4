// The etcd AsyncBackend (see async_etcd.h; include/tollgate/etcd_backend.h for the key layout, the
// TTL rounding and the error mapping) and NewAsyncEtcdBackend.
#include "backends/etcd/async_etcd.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "backends/etcd/etcd_codec.h"
#include "core/absl_compat.h"
#include "core/lock_id.h"
#include "tollgate/etcd_backend.h"

namespace tollgate::etcd {
namespace {

using nlohmann::json;

// A watch for waiters is one long request, renewed at this period (or at its first DELETE).
constexpr Duration kKeyWatchPeriod = std::chrono::seconds(30);
// After a watch for waiters failed (etcd unreachable), the next one starts this much later; the
// waiters still poll meanwhile.
constexpr Duration kKeyWatchRetry = std::chrono::seconds(1);

absl::StatusOr<FencedValue> DecodeReg(const std::string& s) {
  json j = json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("fence") || !j["fence"].is_number_unsigned()) {
    return Unexpected("register value");
  }
  std::optional<std::string> value = j.contains("value") ? UnB64(j["value"]) : std::nullopt;
  if (!value) return Unexpected("register value");
  return FencedValue{std::move(*value), j["fence"].get<uint64_t>()};
}

// A gateway reply to `path`: the parsed JSON, or the error. Unavailable on transport errors,
// timeouts, 5xx and etcd's unavailable/deadline/resource-exhausted codes; Internal for other etcd
// errors.
absl::StatusOr<json> DecodeReply(const std::string& base, std::string_view path, CURLcode rc,
                                 long status, const std::string& reply) {
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat("etcd ", base, AV(path), ": ", curl_easy_strerror(rc)));
  }
  json j = json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (status != 200 || !j.is_object()) {
    std::string msg = reply.substr(0, 300);
    int64_t code = 0;
    if (j.is_object()) {
      code = Int(j, "code");
      auto it = j.find("error");
      if (it != j.end() && it->is_string()) msg = it->get<std::string>();
    }
    // gRPC codes 4 (deadline exceeded) and 14 (unavailable).
    if (status >= 500 && (code == 0 || code == 4 || code == 14)) {
      return absl::UnavailableError(absl::StrCat("etcd ", base, AV(path), ": ", msg));
    }
    // 4 deadline exceeded, 14 unavailable, 8 resource exhausted ("mvcc: database space
    // exceeded", too many requests): outages and overload, not bad input.
    if (code == 4 || code == 14 || code == 8) {
      return absl::UnavailableError(absl::StrCat("etcd ", base, AV(path), ": ", msg));
    }
    return absl::InternalError(absl::StrCat("etcd ", base, AV(path), ": HTTP ", status, ": ", msg));
  }
  return j;
}

// One watch stream (POST /v3/watch): the gateway writes one JSON object per line, {"result":
// WatchResponse} or {"error": Status}. The first result says "created"; later ones carry events.
// The watch is created with the NOPUT filter, so any event is a DELETE of the watched key.
struct WatchStream {
  std::string pending;    // bytes of an incomplete line
  bool created = false;   // etcd confirmed the watch
  bool deleted = false;   // a DELETE event arrived
  bool canceled = false;  // etcd cancelled the watch (e.g. start revision compacted away)
  int64_t revision = 0;   // the highest header revision seen
  std::string error;      // an {"error": ...} line, or a line that is not JSON
  bool done() const { return deleted || canceled || !error.empty(); }
  void OnLine(std::string_view line) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      error = std::string(line.substr(0, 300));
      return;
    }
    if (auto e = j.find("error"); e != j.end()) {
      error = e->is_object() && e->contains("message") && (*e)["message"].is_string()
                  ? (*e)["message"].get<std::string>()
                  : e->dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 300);
      return;
    }
    auto r = j.find("result");
    if (r == j.end() || !r->is_object()) return;
    revision = std::max(revision, HeaderRevision(*r));
    if (auto c = r->find("created"); c != r->end() && c->is_boolean() && c->get<bool>()) {
      created = true;
    }
    if (auto c = r->find("canceled"); c != r->end() && c->is_boolean() && c->get<bool>()) {
      canceled = true;
    }
    if (auto ev = r->find("events"); ev != r->end() && ev->is_array()) {
      for (const json& e : *ev) {
        if (!e.is_object()) continue;
        auto t = e.find("type");
        if (t != e.end() && t->is_string() && t->get_ref<const std::string&>() == "DELETE") {
          deleted = true;
          auto kv = e.find("kv");
          if (kv != e.end()) revision = std::max(revision, Int(*kv, "mod_revision"));
        }
      }
    }
  }
  // Takes a chunk of the stream; false once the watch is over (the transfer then stops).
  bool OnData(std::string_view data) {
    pending.append(data);
    size_t nl;
    while (!done() && (nl = pending.find('\n')) != std::string::npos) {
      OnLine(std::string_view(pending).substr(0, nl));
      pending.erase(0, nl + 1);
    }
    return !done();
  }
};

}  // namespace

// How a watch ended without error: `fired` when a DELETE came or etcd cancelled it; `revision`:
// the highest revision it saw (a later watch starts after it), 0 when cancelled.
struct AsyncEtcdBackend::WatchResult {
  bool fired = false;
  int64_t revision = 0;
};

AsyncEtcdBackend::AsyncEtcdBackend(std::string base, Duration timeout, EventLoop& loop)
    : loop_(loop),
      timeout_(timeout),
      http_(loop, base, timeout, kMaxConnections),
      watch_http_(loop, base, timeout, 0),
      waits_(loop, WaitOps()) {}

WaitQueue::Ops AsyncEtcdBackend::WaitOps() {
  WaitQueue::Ops ops;
  ops.acquire = [this](const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) {
    AcquireIfFree(req, std::move(done));
  };
  ops.sem_acquire = [this](const SemAcquireRequest& req,
                           Completion<std::optional<PermitGrant>> done) {
    SemAcquireNow(req, std::move(done));
  };
  ops.multi_acquire = [this](const MultiAcquireRequest& req,
                             Completion<std::optional<LeaseGrant>> done) {
    MultiAcquireIfFree(req, std::move(done));
  };
  // The give-backs run also after Shutdown: an attempt in flight then may still bring a grant.
  ops.release = [this](const std::string& key, const std::string& id) {
    Sequence<absl::Status>(
        LockSeq(key), [](absl::Status) {},
        [this, key, id](StatusCompletion done) { DoRelease(key, id, 0, std::move(done)); });
  };
  ops.sem_release = [this](const std::string& key, const std::string& id) {
    Sequence<absl::Status>(
        SemSeq(key), [](absl::Status) {},
        [this, key, id](StatusCompletion done) { DoSemRelease(key, id, 0, std::move(done)); });
  };
  ops.multi_release = [this](const std::vector<std::string>& keys, const std::string& id) {
    std::vector<std::string> seqs;
    for (const std::string& key : keys) seqs.push_back(LockSeq(key));
    SequenceAll<absl::StatusOr<size_t>>(
        std::move(seqs), [](absl::StatusOr<size_t>) {},
        [this, keys, id](Completion<size_t> done) {
          DoMultiRelease(keys, id, 0, std::move(done));
        });
  };
  return ops;
}

AsyncEtcdBackend::~AsyncEtcdBackend() {
  // Waiters complete (nullopt) while this object is whole; requests in flight are dropped.
  shut_down_ = true;
  waits_.Shutdown();
  *alive_ = false;
  for (auto& [key, w] : key_watches_) {
    if (w.retry_timer != 0) loop_.CancelTimer(w.retry_timer);
  }
}

void AsyncEtcdBackend::Finished(const std::vector<std::string>& seqs) {
  std::vector<std::shared_ptr<Queued>> ready;
  for (const std::string& seq : seqs) {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) continue;
    it->second.pop_front();
    if (it->second.empty()) {
      seqs_.erase(it);
      continue;
    }
    const std::shared_ptr<Queued>& next = it->second.front();
    if (--next->fronts_missing == 0) ready.push_back(next);
  }
  // Each stays at the front of its FIFOs as the running operation's placeholder.
  for (const std::shared_ptr<Queued>& q : ready) {
    Next run = std::move(q->run);
    run();
  }
}

void AsyncEtcdBackend::Call(std::string_view path, const json& body,
                            absl::AnyInvocable<void(absl::StatusOr<json>)> k) {
  std::string payload;
  try {
    payload = body.dump();
  } catch (const json::exception& e) {
    return k(absl::InternalError(absl::StrCat("etcd: cannot encode a request: ", e.what())));
  }
  http_.Post(path, std::move(payload), timeout_,
             [this, path = std::string(path), k = std::move(k)](HttpClient::Response r) mutable {
               absl::StatusOr<json> j;
               try {
                 j = DecodeReply(http_.base(), path, r.code, r.status, r.body);
               } catch (const json::exception& e) {
                 j = Unexpected(path);
               }
               k(std::move(j));
             });
}

void AsyncEtcdBackend::Grant(
    int64_t seconds, absl::AnyInvocable<void(absl::StatusOr<std::pair<int64_t, int64_t>>)> k) {
  Call("/v3/lease/grant", json{{"TTL", std::to_string(seconds)}},
       [k = std::move(k)](absl::StatusOr<json> r) mutable {
         if (!r.ok()) return k(r.status());
         const int64_t id = Int(*r, "ID"), ttl = Int(*r, "TTL");
         if (id == 0 || ttl <= 0) return k(Unexpected("lease grant"));
         k(std::make_pair(id, ttl));
       });
}

void AsyncEtcdBackend::Revoke(int64_t lease, Next k) {
  Call("/v3/lease/revoke", json{{"ID", std::to_string(lease)}},
       [k = std::move(k)](absl::StatusOr<json>) mutable { k(); });
}

// A lease nobody will attach a key to again (each acquire and extend grants a new one), so once no
// key is attached it stays so: checking, then revoking, cannot strand a key.
void AsyncEtcdBackend::RevokeIfUnused(int64_t lease, Next k) {
  Call("/v3/lease/timetolive", json{{"ID", std::to_string(lease)}, {"keys", true}},
       [this, lease, k = std::move(k)](absl::StatusOr<json> r) mutable {
         if (!r.ok() || Int(*r, "TTL") < 0) return k();  // unknown, or gone already
         auto keys = r->find("keys");
         if (keys != r->end() && keys->is_array() && !keys->empty()) return k();
         Revoke(lease, std::move(k));
       });
}

void AsyncEtcdBackend::ReleaseLeases(std::vector<std::pair<int64_t, bool>> leases, Next k) {
  std::sort(leases.begin(), leases.end());
  // Once per lease (shared if any of its keys said so).
  std::vector<std::pair<int64_t, bool>> unique;
  for (const auto& [lease, shared] : leases) {
    if (lease == 0) continue;
    if (!unique.empty() && unique.back().first == lease) {
      unique.back().second = unique.back().second || shared;
    } else {
      unique.emplace_back(lease, shared);
    }
  }
  if (unique.empty()) return k();
  auto left = std::make_shared<size_t>(unique.size());
  auto shared_k = std::make_shared<Next>(std::move(k));
  for (const auto& [lease, shared] : unique) {
    Next one = [left, shared_k] {
      if (--*left == 0) (*shared_k)();
    };
    if (shared) {
      RevokeIfUnused(lease, std::move(one));
    } else {
      Revoke(lease, std::move(one));
    }
  }
}

void AsyncEtcdBackend::GetAll(
    std::vector<std::string> keys,
    absl::AnyInvocable<void(absl::StatusOr<std::vector<std::optional<Kv>>>)> k) {
  json ops = json::array();
  for (const std::string& key : keys) ops.push_back({{"request_range", {{"key", B64(key)}}}});
  Call("/v3/kv/txn", json{{"success", std::move(ops)}},
       [n = keys.size(), k = std::move(k)](absl::StatusOr<json> r) mutable {
         if (!r.ok()) return k(r.status());
         auto responses = r->find("responses");
         if (!Succeeded(*r) || responses == r->end() || !responses->is_array() ||
             responses->size() != n) {
           return k(Unexpected("txn"));
         }
         std::vector<std::optional<Kv>> out;
         for (const json& resp : *responses) {
           auto range = resp.find("response_range");
           if (range == resp.end() || !range->is_object()) return k(Unexpected("txn"));
           auto kvs = range->find("kvs");
           if (kvs == range->end() || !kvs->is_array() || kvs->empty()) {
             out.emplace_back();
             continue;
           }
           std::optional<Kv> kv = ParseKv((*kvs)[0]);
           if (!kv) return k(Unexpected("txn"));
           out.push_back(std::move(kv));
         }
         k(std::move(out));
       });
}

void AsyncEtcdBackend::GetPermits(
    const std::string& key, absl::AnyInvocable<void(absl::StatusOr<std::vector<Kv>>, int64_t)> k) {
  Call("/v3/kv/range", json{{"key", B64(SemPrefix(key))}, {"range_end", B64(SemRangeEnd(key))}},
       [k = std::move(k)](absl::StatusOr<json> r) mutable {
         if (!r.ok()) return k(r.status(), 0);
         const int64_t revision = HeaderRevision(*r);
         if (revision <= 0) return k(Unexpected("range"), 0);
         std::vector<Kv> out;
         auto kvs = r->find("kvs");
         if (kvs != r->end() && kvs->is_array()) {
           for (const json& e : *kvs) {
             std::optional<Kv> kv = ParseKv(e);
             if (!kv) return k(Unexpected("range"), 0);
             out.push_back(std::move(*kv));
           }
         }
         k(std::move(out), revision);
       });
}

void AsyncEtcdBackend::Get(const std::string& key, bool want_revision,
                           absl::AnyInvocable<void(absl::StatusOr<std::optional<Kv>>, int64_t)> k) {
  Call("/v3/kv/range", json{{"key", B64(key)}},
       [want_revision, k = std::move(k)](absl::StatusOr<json> r) mutable {
         if (!r.ok()) return k(r.status(), 0);
         const int64_t revision = HeaderRevision(*r);
         if (want_revision && revision <= 0) return k(Unexpected("range"), 0);
         auto kvs = r->find("kvs");
         if (kvs == r->end() || !kvs->is_array() || kvs->empty()) {
           return k(std::optional<Kv>(), revision);
         }
         std::optional<Kv> kv = ParseKv((*kvs)[0]);
         if (!kv) return k(Unexpected("range"), 0);
         k(std::move(kv), revision);
       });
}

// ---- Operations ---------------------------------------------------------------------------------

uint64_t AsyncEtcdBackend::Acquire(const AcquireRequest& req,
                                   Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateAcquireRequest(req); !st.ok()) {
    done(std::move(st));
    return 0;
  }
  if (Refused(done)) return 0;
  if (req.wait <= Duration(0)) return waits_.Acquire(req, std::move(done));
  // A waiter: when it completes the key may need its watch no more.
  const uint64_t ticket = waits_.Acquire(req, ThenSyncWatches(std::move(done)));
  SyncWatchesSoon();
  return ticket;
}

void AsyncEtcdBackend::CancelWait(uint64_t ticket) {
  waits_.Cancel(ticket);
  SyncWatchesSoon();
}

size_t AsyncEtcdBackend::LocalWaiters(std::string_view key) const { return waits_.Count(key); }

void AsyncEtcdBackend::Shutdown() {
  shut_down_ = true;
  waits_.Shutdown();
  SyncWatches();  // no waiters: stops every watch
}

void AsyncEtcdBackend::AcquireNow(const AcquireRequest& req,
                                  Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateKey(req.key); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(req.ttl); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<std::optional<LeaseGrant>>>(
      absl::StrCat("l", req.key), std::move(done),
      [this, req](Completion<std::optional<LeaseGrant>> done) mutable {
        DoAcquire(std::move(req), std::move(done));
      });
}

// A waiter's attempts mostly find the key still held: a read answers them, without the lease
// grant, txn and revoke (two Raft writes) of a full acquire.
void AsyncEtcdBackend::AcquireIfFree(const AcquireRequest& req,
                                     Completion<std::optional<LeaseGrant>> done) {
  if (absl::Status st = ValidateKey(req.key); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(req.ttl); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<std::optional<LeaseGrant>>>(
      absl::StrCat("l", req.key), std::move(done),
      [this, req](Completion<std::optional<LeaseGrant>> done) mutable {
        Call("/v3/kv/range", json{{"key", B64(LockKey(req.key))}, {"keys_only", true}},
             [this, req = std::move(req), done = std::move(done)](absl::StatusOr<json> r) mutable {
               if (!r.ok()) return done(r.status());
               auto kvs = r->find("kvs");
               if (kvs != r->end() && kvs->is_array() && !kvs->empty()) {
                 return done(std::optional<LeaseGrant>());  // still held
               }
               DoAcquire(std::move(req), std::move(done));
             });
      });
}

// Grants an etcd lease, then one txn: if create_revision(lock) == 0, put the lock with that lease.
// Otherwise (or when the txn failed: it may have been applied) the lease is revoked, which deletes
// the lock if the txn did put it, so nothing stays held without a client knowing.
void AsyncEtcdBackend::DoAcquire(AcquireRequest req, Completion<std::optional<LeaseGrant>> done) {
  Grant(TtlSeconds(req.ttl), [this, req = std::move(req), done = std::move(done)](
                                 absl::StatusOr<std::pair<int64_t, int64_t>> lease) mutable {
    if (!lease.ok()) return done(lease.status());
    const std::string lock = LockKey(req.key);
    LeaseGrant grant{core::NewLockId(), 0, std::chrono::seconds(lease->second),
                     RealClock()->WallNow()};
    LockValue value{grant.lock_id, std::move(req.owner), /*shared=*/false, grant.acquired_at,
                    /*indexed=*/true};
    // The lock and its index key, with one etcd lease: they are written together here and deleted
    // together when it expires (or is revoked).
    const json txn = {{"compare", json::array({{{"key", B64(lock)},
                                                {"result", "EQUAL"},
                                                {"target", "CREATE"},
                                                {"create_revision", "0"}}})},
                      {"success", json::array({{{"request_put",
                                                 {{"key", B64(lock)},
                                                  {"value", B64(EncodeLock(value))},
                                                  {"lease", std::to_string(lease->first)}}}},
                                               IndexPut(grant.lock_id, req.key, lease->first)})}};
    Call("/v3/kv/txn", txn,
         [this, lease_id = lease->first, grant = std::move(grant),
          done = std::move(done)](absl::StatusOr<json> r) mutable {
           if (!r.ok() || !Succeeded(*r)) {
             absl::Status st = r.status();
             Revoke(lease_id, [st = std::move(st), done = std::move(done)]() mutable {
               if (!st.ok()) return done(st);
               done(std::optional<LeaseGrant>());
             });
             return;
           }
           const int64_t rev = HeaderRevision(*r);
           if (rev <= 0) return done(Unexpected("txn"));
           grant.fence = static_cast<uint64_t>(rev);  // == the lock's create_revision
           done(std::optional<LeaseGrant>(std::move(grant)));
         });
  });
}

void AsyncEtcdBackend::Release(std::string_view key, std::string_view lock_id,
                               StatusCompletion done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::Status>(absl::StrCat("l", AV(key)), std::move(done),
                         [this, key = std::string(key),
                          lock_id = std::string(lock_id)](StatusCompletion done) mutable {
                           DoRelease(std::move(key), std::move(lock_id), 0, std::move(done));
                         });
}

// Deletes the lock (then revokes its lease) in a txn guarded by the mod_revision read together
// with the lock_id.
void AsyncEtcdBackend::DoRelease(std::string key, std::string lock_id, int attempt,
                                 StatusCompletion done) {
  if (attempt >= kMaxTxnRetries) return done(Contention("release"));
  const std::string lock = LockKey(key);
  Get(lock, false,
      [this, lock, key = std::move(key), lock_id = std::move(lock_id), attempt,
       done = std::move(done)](absl::StatusOr<std::optional<Kv>> kv, int64_t) mutable {
        if (!kv.ok()) return done(kv.status());
        if (!Holds(kv->has_value() ? &(*kv)->value : nullptr, lock_id)) return done(NotHeld(key));
        const LockValue value = *DecodeLock((*kv)->value);  // Holds decoded it
        json ops = json::array({{{"request_delete_range", {{"key", B64(lock)}}}}});
        if (value.indexed) ops.push_back(IndexDelete(value.id));
        const json txn = {{"compare", json::array({ModIs(lock, (*kv)->mod_revision)})},
                          {"success", std::move(ops)}};
        const bool shared = value.shared;
        Call(
            "/v3/kv/txn", txn,
            [this, lease = (*kv)->lease, shared, key = std::move(key), lock_id = std::move(lock_id),
             attempt, done = std::move(done)](absl::StatusOr<json> r) mutable {
              if (!r.ok()) return done(r.status());
              if (Succeeded(*r)) {
                return ReleaseLeases({{lease, shared}}, [done = std::move(done)]() mutable {
                  done(absl::OkStatus());
                });
              }
              DoRelease(std::move(key), std::move(lock_id), attempt + 1, std::move(done));
            });
      });
}

void AsyncEtcdBackend::Extend(std::string_view key, std::string_view lock_id, Duration ttl,
                              Completion<Duration> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (absl::Status st = ValidateTtl(ttl); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<Duration>>(absl::StrCat("l", AV(key)), std::move(done),
                                     [this, key = std::string(key), lock_id = std::string(lock_id),
                                      ttl](Completion<Duration> done) mutable {
                                       DoExtend(std::move(key), std::move(lock_id), ttl, 0,
                                                std::move(done));
                                     });
}

// Grants a new lease and re-puts the same value with it in a txn guarded by the read mod_revision
// (a re-put changes mod_revision, not create_revision, so the fence stays), then revokes the old
// lease. The guard fails if the lock expired (deleted) meanwhile, so it is never revived; the new
// lease is then revoked.
void AsyncEtcdBackend::DoExtend(std::string key, std::string lock_id, Duration ttl, int attempt,
                                Completion<Duration> done) {
  if (attempt >= kMaxTxnRetries) return done(Contention("extend"));
  const std::string lock = LockKey(key);
  Get(lock, false,
      [this, lock, key = std::move(key), lock_id = std::move(lock_id), ttl, attempt,
       done = std::move(done)](absl::StatusOr<std::optional<Kv>> kv, int64_t) mutable {
        if (!kv.ok()) return done(kv.status());
        if (!Holds(kv->has_value() ? &(*kv)->value : nullptr, lock_id)) return done(NotHeld(key));
        Grant(TtlSeconds(ttl), [this, lock, cur = std::move(**kv), key = std::move(key),
                                lock_id = std::move(lock_id), ttl, attempt, done = std::move(done)](
                                   absl::StatusOr<std::pair<int64_t, int64_t>> lease) mutable {
          if (!lease.ok()) return done(lease.status());
          // The new lease is this key's alone (even for a key of a multi-key grant).
          LockValue value = *DecodeLock(cur.value);  // Holds decoded it
          const bool was_shared = value.shared;
          value.shared = false;
          // The index key moves to the new lease with the lock (revoking the old lease would
          // delete it otherwise).
          json ops = json::array({{{"request_put",
                                    {{"key", B64(lock)},
                                     {"value", B64(EncodeLock(value))},
                                     {"lease", std::to_string(lease->first)}}}}});
          if (value.indexed) ops.push_back(IndexPut(value.id, key, lease->first));
          const json txn = {{"compare", json::array({ModIs(lock, cur.mod_revision)})},
                            {"success", std::move(ops)}};
          Call("/v3/kv/txn", txn,
               [this, old_lease = cur.lease, was_shared, lease = *lease, key = std::move(key),
                lock_id = std::move(lock_id), ttl, attempt,
                done = std::move(done)](absl::StatusOr<json> r) mutable {
                 if (r.ok() && Succeeded(*r)) {
                   const Duration granted = std::chrono::seconds(lease.second);
                   return ReleaseLeases(
                       {{old_lease, was_shared}},
                       [granted, done = std::move(done)]() mutable { done(granted); });
                 }
                 absl::Status st = r.status();
                 Revoke(lease.first, [this, st = std::move(st), key = std::move(key),
                                      lock_id = std::move(lock_id), ttl, attempt,
                                      done = std::move(done)]() mutable {
                   if (!st.ok()) return done(st);
                   DoExtend(std::move(key), std::move(lock_id), ttl, attempt + 1, std::move(done));
                 });
               });
        });
      });
}

void AsyncEtcdBackend::Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<std::optional<LeaseInfo>>>(
      absl::StrCat("l", AV(key)), std::move(done),
      [this, key = std::string(key)](Completion<std::optional<LeaseInfo>> done) mutable {
        DoInfo(std::move(key), std::move(done));
      });
}

void AsyncEtcdBackend::DoInfo(std::string key, Completion<std::optional<LeaseInfo>> done) {
  Get(LockKey(key), false,
      [this, done = std::move(done)](absl::StatusOr<std::optional<Kv>> kv, int64_t) mutable {
        if (!kv.ok()) return done(kv.status());
        if (!kv->has_value()) return done(std::optional<LeaseInfo>());
        std::optional<LockValue> v = DecodeLock((*kv)->value);
        if (!v) return done(Unexpected("lock value"));
        LeaseInfo info;
        info.fence = static_cast<uint64_t>((*kv)->create_revision);
        info.owner = std::move(v->owner);
        info.lock_id = std::move(v->id);
        info.acquired_at = v->acquired_at;
        WithTtl((*kv)->lease, std::move(info), std::move(done));
      });
}

void AsyncEtcdBackend::WithTtl(int64_t lease, LeaseInfo info,
                               Completion<std::optional<LeaseInfo>> done) {
  if (lease == 0) return done(std::optional<LeaseInfo>(std::move(info)));
  Call("/v3/lease/timetolive", json{{"ID", std::to_string(lease)}},
       [info = std::move(info), done = std::move(done)](absl::StatusOr<json> t) mutable {
         if (!t.ok()) return done(t.status());
         const int64_t secs = Int(*t, "TTL");
         if (secs < 0) return done(std::optional<LeaseInfo>());  // expired just now
         info.ttl_remaining = std::chrono::seconds(secs);
         done(std::optional<LeaseInfo>(std::move(info)));
       });
}

// Resolving a lock_id: read its index key (outside any key's FIFO: the key is not known yet), then,
// in the FIFO of the key it names (after the operations on that key submitted before this one),
// read the lock and check that it is held by this very lock_id: a lock_id is never reused, so a
// lock holding it is the lease the index was written for, and is live (etcd deletes an expired
// lease's keys). The index and the lock are read at the current revision each; an index key
// outliving its lease for a moment (a revoke still on its way) finds a lock held by another
// lock_id, or none: nullopt.
void AsyncEtcdBackend::LookupById(std::string_view lock_id,
                                  Completion<std::optional<LeaseById>> done) {
  if (!core::IsLockIdFormat(lock_id)) {
    return done(absl::InvalidArgumentError("lock_id must be 32 lowercase hex characters"));
  }
  if (Refused(done)) return;
  Get(IndexKey(lock_id), false,
      [this, alive = alive_, lock_id = std::string(lock_id), done = std::move(done)](
          absl::StatusOr<std::optional<Kv>> index, int64_t) mutable {
        if (!*alive) return;
        if (!index.ok()) return done(index.status());
        if (!index->has_value()) return done(std::optional<LeaseById>());
        std::string key = std::move((*index)->value);
        if (absl::Status st = ValidateKey(key); !st.ok()) return done(Unexpected("index value"));
        if (Refused(done)) return;
        Sequence<absl::StatusOr<std::optional<LeaseById>>>(
            LockSeq(key), std::move(done),
            [this, key,
             lock_id = std::move(lock_id)](Completion<std::optional<LeaseById>> done) mutable {
              DoLookup(std::move(key), std::move(lock_id), std::move(done));
            });
      });
}

void AsyncEtcdBackend::DoLookup(std::string key, std::string lock_id,
                                Completion<std::optional<LeaseById>> done) {
  const std::string lock = LockKey(key);  // before `key` is moved into the continuation
  Get(lock, false,
      [this, key = std::move(key), lock_id = std::move(lock_id), done = std::move(done)](
          absl::StatusOr<std::optional<Kv>> kv, int64_t) mutable {
        if (!kv.ok()) return done(kv.status());
        if (!Holds(kv->has_value() ? &(*kv)->value : nullptr, lock_id)) {
          return done(std::optional<LeaseById>());  // released, expired or re-granted
        }
        LockValue v = *DecodeLock((*kv)->value);  // Holds decoded it
        LeaseInfo info;
        info.fence = static_cast<uint64_t>((*kv)->create_revision);
        info.owner = std::move(v.owner);
        info.lock_id = std::move(v.id);
        info.acquired_at = v.acquired_at;
        WithTtl((*kv)->lease, std::move(info),
                [key = std::move(key),
                 done = std::move(done)](absl::StatusOr<std::optional<LeaseInfo>> info) mutable {
                  if (!info.ok()) return done(info.status());
                  if (!info->has_value()) return done(std::optional<LeaseById>());
                  done(std::optional<LeaseById>(LeaseById{std::move(key), std::move(**info)}));
                });
      });
}

void AsyncEtcdBackend::FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                                 StatusCompletion done) {
  if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return done(std::move(st));
  if (fence == 0) return done(absl::InvalidArgumentError("fence must be a positive integer"));
  if (Refused(done)) return;
  Sequence<absl::Status>(absl::StrCat("r", AV(resource)), std::move(done),
                         [this, resource = std::string(resource), fence,
                          value = std::string(value)](StatusCompletion done) mutable {
                           DoFencedSet(std::move(resource), fence, std::move(value), 0,
                                       std::move(done));
                         });
}

// An optimistic loop: read, check the fence, txn guarded by the read mod_revision.
void AsyncEtcdBackend::DoFencedSet(std::string resource, uint64_t fence, std::string value,
                                   int attempt, StatusCompletion done) {
  if (attempt >= kMaxTxnRetries) return done(Contention("fenced write"));
  const std::string reg = RegKey(resource);
  Get(reg, true,
      [this, reg, resource = std::move(resource), fence, value = std::move(value), attempt,
       done = std::move(done)](absl::StatusOr<std::optional<Kv>> kv, int64_t revision) mutable {
        if (!kv.ok()) return done(kv.status());
        // A fence is the create revision of a lock key, so every fence issued so far is at most
        // the store's revision now: a higher one was never issued, and accepting it would make
        // every real holder's later write stale.
        if (fence > static_cast<uint64_t>(revision)) {
          return done(absl::InvalidArgumentError(absl::StrCat(
              "fence ", fence, " was never issued; every fence issued so far is at most ", revision,
              ", etcd's current revision (use the fence of a lease you hold)")));
        }
        int64_t mod = 0;
        if (kv->has_value()) {
          absl::StatusOr<FencedValue> cur = DecodeReg((*kv)->value);
          if (!cur.ok()) return done(cur.status());
          if (fence < cur->fence) {
            return done(
                absl::AbortedError(absl::StrCat("fence ", fence, " is older than ", cur->fence)));
          }
          mod = (*kv)->mod_revision;
        }
        const std::string encoded = json{{"fence", fence}, {"value", B64(value)}}.dump();
        const json txn = {
            {"compare", json::array({ModIs(reg, mod)})},
            {"success",
             json::array({{{"request_put", {{"key", B64(reg)}, {"value", B64(encoded)}}}}})}};
        Call("/v3/kv/txn", txn,
             [this, resource = std::move(resource), fence, value = std::move(value), attempt,
              done = std::move(done)](absl::StatusOr<json> r) mutable {
               if (!r.ok()) return done(r.status());
               if (Succeeded(*r)) return done(absl::OkStatus());
               DoFencedSet(std::move(resource), fence, std::move(value), attempt + 1,
                           std::move(done));
             });
      });
}

void AsyncEtcdBackend::FencedGet(std::string_view resource,
                                 Completion<std::optional<FencedValue>> done) {
  if (absl::Status st = ValidateKey(resource, "resource"); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<std::optional<FencedValue>>>(
      absl::StrCat("r", AV(resource)), std::move(done),
      [this, resource = std::string(resource)](Completion<std::optional<FencedValue>> done) {
        DoFencedGet(resource, std::move(done));
      });
}

void AsyncEtcdBackend::DoFencedGet(std::string resource,
                                   Completion<std::optional<FencedValue>> done) {
  Get(RegKey(resource), false,
      [done = std::move(done)](absl::StatusOr<std::optional<Kv>> kv, int64_t) mutable {
        if (!kv.ok()) return done(kv.status());
        if (!kv->has_value()) return done(std::optional<FencedValue>());
        absl::StatusOr<FencedValue> v = DecodeReg((*kv)->value);
        if (!v.ok()) return done(v.status());
        done(std::optional<FencedValue>(std::move(*v)));
      });
}

void AsyncEtcdBackend::Throttle(std::string_view, const BucketParams&, Decimal,
                                Completion<Decision> done) {
  done(absl::UnimplementedError("rate limiting is not offered on etcd"));
}

void AsyncEtcdBackend::CheckLayers(std::span<const LayerCheck>, Decimal,
                                   Completion<PolicyDecision> done) {
  done(absl::UnimplementedError("rate limiting is not offered on etcd"));
}

void AsyncEtcdBackend::Probe(StatusCompletion done) {
  Call("/v3/kv/range", json{{"key", B64("tollgate/probe")}},
       [done = std::move(done)](absl::StatusOr<json> r) mutable { done(r.status()); });
}

// ---- Watches ------------------------------------------------------------------------------------

void AsyncEtcdBackend::HeldAt(std::string_view key, Completion<int64_t> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) return done(std::move(st));
  if (Refused(done)) return;
  Sequence<absl::StatusOr<int64_t>>(
      absl::StrCat("l", AV(key)), std::move(done),
      [this, lock = LockKey(key)](Completion<int64_t> done) mutable {
        Call("/v3/kv/range", json{{"key", B64(lock)}, {"keys_only", true}},
             [done = std::move(done)](absl::StatusOr<json> r) mutable {
               if (!r.ok()) return done(r.status());
               auto kvs = r->find("kvs");
               if (kvs == r->end() || !kvs->is_array() || kvs->empty()) return done(int64_t{0});
               const int64_t revision = HeaderRevision(*r);
               if (revision <= 0) return done(Unexpected("range"));
               done(revision);
             });
      });
}

// Starting after `after_revision` (> 0) makes etcd replay a delete that happened between the read
// that saw the lock held and the watch's creation, so no release is missed; 0: from now.
uint64_t AsyncEtcdBackend::WatchForDelete(std::string_view key, int64_t after_revision,
                                          SteadyTime deadline, Completion<bool> done) {
  if (absl::Status st = ValidateKey(key); !st.ok()) {
    done(std::move(st));
    return 0;
  }
  uint64_t id = 0;
  Watch(
      LockKey(key), "", after_revision, deadline,
      [done = std::move(done)](absl::StatusOr<WatchResult> r) mutable {
        if (!r.ok()) return done(r.status());
        done(r->fired);
      },
      &id);
  return id;
}

void AsyncEtcdBackend::Watch(std::string_view watch_key, std::string_view range_end,
                             int64_t after_revision, SteadyTime deadline,
                             absl::AnyInvocable<void(absl::StatusOr<WatchResult>)> k,
                             uint64_t* id) {
  *id = 0;
  const Duration remaining = deadline - loop_.clock()->SteadyNow();
  if (remaining < std::chrono::milliseconds(1)) return k(WatchResult{false, after_revision});
  json create = {{"key", B64(watch_key)}, {"filters", json::array({"NOPUT"})}};
  if (!range_end.empty()) create["range_end"] = B64(range_end);
  if (after_revision > 0) create["start_revision"] = std::to_string(after_revision + 1);
  auto stream = std::make_shared<WatchStream>();
  *id = watch_http_.Post(
      "/v3/watch", json{{"create_request", create}}.dump(), remaining,
      [this, stream, deadline, after_revision, k = std::move(k)](HttpClient::Response r) mutable {
        if (stream->deleted) return k(WatchResult{true, stream->revision});
        if (stream->canceled) return k(WatchResult{true, 0});
        const std::string where = absl::StrCat("etcd ", watch_http_.base(), "/v3/watch: ");
        if (!stream->error.empty()) {
          return k(absl::UnavailableError(absl::StrCat(where, stream->error)));
        }
        if (r.code == CURLE_OPERATION_TIMEDOUT &&
            (stream->created || loop_.clock()->SteadyNow() >= deadline)) {
          // The deadline passed with the lock still there.
          return k(WatchResult{false, std::max(after_revision, stream->revision)});
        }
        if (r.code != CURLE_OK) {
          return k(absl::UnavailableError(absl::StrCat(where, curl_easy_strerror(r.code))));
        }
        if (r.status != 200) {
          return k(absl::UnavailableError(
              absl::StrCat(where, "HTTP ", r.status, ": ", stream->pending.substr(0, 300))));
        }
        // The server ended the stream without an event (it is shutting down, say).
        k(absl::UnavailableError(absl::StrCat(where, "the watch stream ended early")));
      },
      [stream](std::string_view data) { return stream->OnData(data); });
}

void AsyncEtcdBackend::SyncWatchesSoon() {
  if (sync_scheduled_) return;
  sync_scheduled_ = true;
  loop_.AtEndOfPass([this, alive = alive_] {
    if (*alive) SyncWatches();
  });
}

void AsyncEtcdBackend::SyncWatches() {
  sync_scheduled_ = false;
  std::vector<std::string> names;  // lease keys first
  if (!shut_down_) {
    for (const std::string& key : waits_.WaitingKeys()) names.push_back(LockSeq(key));
    for (const std::string& key : waits_.WaitingSemaphores()) names.push_back(SemSeq(key));
  }
  const absl::flat_hash_set<std::string> wanted(names.begin(), names.end());
  for (auto it = key_watches_.begin(); it != key_watches_.end();) {
    if (wanted.contains(it->first)) {
      ++it;
      continue;
    }
    if (it->second.id != 0) watch_http_.Abort(it->second.id);
    if (it->second.retry_timer != 0) loop_.CancelTimer(it->second.retry_timer);
    key_watches_.erase(it++);
  }
  for (const std::string& name : names) {
    if (key_watches_.size() >= kMaxKeyWatches) break;
    if (!key_watches_.contains(name)) StartKeyWatch(name, 0);
  }
}

size_t AsyncEtcdBackend::WatchWaiters(const std::string& name) const {
  const std::string_view key = std::string_view(name).substr(1);
  return name.front() == 's' ? waits_.SemCount(key) : waits_.Count(key);
}

// One watch for the waiters of a lease key or a semaphore (`name`: LockSeq or SemSeq): each DELETE
// (of the lock; of any permit) pokes the WaitQueue, and the next watch starts after the revision
// this one saw, so no delete in between is missed.
void AsyncEtcdBackend::StartKeyWatch(const std::string& name, int64_t after_revision) {
  KeyWatch& w = key_watches_[name];
  w.after_revision = after_revision;
  w.retry_timer = 0;
  w.id = 0;
  const bool semaphore = name.front() == 's';
  const std::string key = name.substr(1);
  uint64_t id = 0;
  Watch(
      semaphore ? SemPrefix(key) : LockKey(key), semaphore ? SemRangeEnd(key) : "", after_revision,
      loop_.clock()->SteadyNow() + kKeyWatchPeriod,
      [this, name, semaphore, key](absl::StatusOr<WatchResult> r) {
        auto it = key_watches_.find(name);
        if (it == key_watches_.end()) return;
        it->second.id = 0;
        if (r.ok() && r->fired) {
          if (semaphore) {
            waits_.PokeSemaphore(key);
          } else {
            waits_.Poke(key);
          }
        }
        it = key_watches_.find(name);  // Poke may have changed the map (it does not today)
        if (it == key_watches_.end()) return;
        if (shut_down_ || WatchWaiters(name) == 0) {
          key_watches_.erase(it);
          return;
        }
        if (r.ok()) return StartKeyWatch(name, r->revision);
        // etcd unreachable: look again a little later; the waiters poll meanwhile.
        it->second.retry_timer =
            loop_.RunAt(loop_.clock()->SteadyNow() + kKeyWatchRetry, [this, alive = alive_, name] {
              if (!*alive) return;
              auto t = key_watches_.find(name);
              if (t == key_watches_.end()) return;
              t->second.retry_timer = 0;
              if (shut_down_ || WatchWaiters(name) == 0) {
                key_watches_.erase(t);
                return;
              }
              StartKeyWatch(name, t->second.after_revision);
            });
      },
      &id);
  if (id != 0) {
    auto it = key_watches_.find(name);
    if (it != key_watches_.end() && it->second.id == 0) it->second.id = id;
  }
}

// ---- URL and factory ----------------------------------------------------------------------------

namespace {

absl::StatusOr<std::string> ParseUrl(const std::string& url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid etcd url '", url.substr(0, 200),
                                                   "': ", AV(why), " (expected etcd://host:port)"));
  };
  constexpr std::string_view kScheme = "etcd://";
  std::string_view s = url;
  if (s.substr(0, kScheme.size()) != kScheme) return bad("must start with etcd://");
  s.remove_prefix(kScheme.size());
  if (!s.empty() && s.back() == '/') s.remove_suffix(1);
  if (s.find_first_of("/@?#") != std::string_view::npos) {
    return bad("only host and port are accepted");
  }
  std::string host;  // as written in an http URL ([..] kept for IPv6)
  int port = 2379;
  std::string_view port_text;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1) return bad("bad [IPv6] host");
    host = std::string(s.substr(0, close + 1));
    std::string_view after = s.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':' after ]");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = s.find(':');
    host = std::string(s.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = s.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (host.empty()) return bad("empty host");
  for (char c : host) {
    if (c <= ' ' || c == 0x7f || c == '\\') return bad("bad character in host");
  }
  if (!port_text.empty()) {
    int p = 0;
    if (port_text.size() > 5 || !absl::SimpleAtoi(AV(port_text), &p) || p < 1 || p > 65535 ||
        port_text.find_first_not_of("0123456789") != std::string_view::npos) {
      return bad("port must be an integer in [1, 65535]");
    }
    port = p;
  }
  return absl::StrCat("http://", host, ":", port);
}

size_t AppendBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// The eager probe of NewAsyncEtcdBackend: one blocking request (bounded by `timeout`).
absl::Status BlockingProbe(const std::string& base, Duration timeout) {
  CURL* c = curl_easy_init();
  if (c == nullptr) return absl::InternalError("etcd: cannot create a curl handle");
  const long ms = std::max(
      static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()),
      1L);
  const std::string path = "/v3/kv/range";
  const std::string url = base + path;
  const std::string payload = json{{"key", B64("tollgate/probe")}}.dump();
  std::string reply;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ms);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  try {
    return DecodeReply(base, path, rc, status, reply).status();
  } catch (const json::exception&) {
    return Unexpected(path);
  }
}

}  // namespace

absl::StatusOr<std::string> CheckArgs(const std::string& url, Duration timeout) {
  absl::StatusOr<std::string> base = ParseUrl(url);
  if (!base.ok()) return base.status();
  if (timeout <= Duration(0) || timeout > std::chrono::hours(1)) {
    return absl::InvalidArgumentError("etcd timeout must be positive and at most 1 hour");
  }
  return base;
}

}  // namespace tollgate::etcd

namespace tollgate {

absl::StatusOr<std::unique_ptr<AsyncBackend>> NewAsyncEtcdBackend(const std::string& url,
                                                                  EventLoop& loop,
                                                                  Duration timeout) {
  absl::StatusOr<std::string> base = etcd::CheckArgs(url, timeout);
  if (!base.ok()) return base.status();
  auto b = std::make_unique<etcd::AsyncEtcdBackend>(*base, timeout, loop);  // inits curl
  if (absl::Status st = etcd::BlockingProbe(*base, timeout); !st.ok()) return st;
  return std::unique_ptr<AsyncBackend>(std::move(b));
}

}  // namespace tollgate
