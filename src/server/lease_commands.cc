// LOCK.*, LOCKID.* and FENCE.*: the lease core and fenced registers over RESP.
#include <limits>
#include <optional>
#include <string>

#include "core/lock_id.h"
#include "server/acquire_options.h"
#include "server/args.h"
#include "server/command_table.h"
#include "server/replies.h"

namespace tollgate::server {
namespace {

using std::chrono::milliseconds;

void ReplyStatus(CommandContext& ctx, const absl::Status& st) {
  server::ReplyStatus(ctx.reply, st);
}

// Key validation with the -ERR reply; true if the key is acceptable.
bool CheckKey(CommandContext& ctx, std::string_view key, std::string_view what) {
  absl::Status st = ValidateKey(key, what);
  if (st.ok()) return true;
  ReplyStatus(ctx, st);
  return false;
}

// A lock_id argument (LOCKID.*) is 32 lowercase hex chars, checked before any I/O; true if so,
// else the -ERR reply is sent.
bool CheckLockId(CommandContext& ctx, std::string_view lock_id) {
  if (core::IsLockIdFormat(lock_id)) return true;
  ctx.reply.Error("ERR lock_id must be 32 lowercase hex characters");
  return false;
}

// LookupById's failure: Unimplemented (a backend without the lock_id index, e.g. a Redis Cluster)
// says that this server cannot look leases up by lock_id, with the backend's reason.
void ReplyLookupError(protocol::ReplyBuilder& reply, const absl::Status& st) {
  if (st.code() == absl::StatusCode::kUnimplemented) {
    return reply.Error("ERR this server's backend cannot look leases up by lock_id: " +
                       std::string(st.message()));
  }
  server::ReplyStatus(reply, st);
}

// A lease's fields, as a map (a flat field/value array in RESP2): `key` first when given
// (LOCKID.INFO), then fence, ttl_ms, owner (nil without a label), waiters, acquired_at_ms (omitted
// when unknown), expires_at_ms (`now` + ttl remaining), lock_id_hash (LockIdHash(lock_id); omitted
// when lock_id is empty). The lock_id itself is never shown.
void ReplyLeaseInfo(protocol::ReplyBuilder& reply, const std::string* key, const LeaseInfo& i,
                    std::string_view lock_id, WallTime now) {
  reply.MapHeader((key != nullptr ? 1 : 0) + 5 + (i.acquired_at ? 1 : 0) +
                  (lock_id.empty() ? 0 : 1));
  if (key != nullptr) {
    reply.Bulk("key");
    reply.Bulk(*key);
  }
  reply.Bulk("fence");
  reply.Integer(static_cast<int64_t>(i.fence));
  reply.Bulk("ttl_ms");
  reply.Integer(CeilMs(i.ttl_remaining));
  reply.Bulk("owner");
  if (i.owner) {
    reply.Bulk(*i.owner);
  } else {
    reply.Null();
  }
  reply.Bulk("waiters");
  reply.Integer(static_cast<int64_t>(i.waiters));
  if (i.acquired_at) {
    reply.Bulk("acquired_at_ms");
    reply.Integer(UnixMs(*i.acquired_at));
  }
  reply.Bulk("expires_at_ms");
  reply.Integer(UnixMs(now + i.ttl_remaining));
  if (!lock_id.empty()) {
    reply.Bulk("lock_id_hash");
    reply.Bulk(core::LockIdHash(lock_id));
  }
}

// LOCK.ACQUIRE key ttl_ms [WAIT ms] [OWNER label] [WITHTIMES]
void LockAcquire(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  std::string err;
  auto ttl = ParseIntInRange(args[2], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  auto opts = ParseAcquireOptions(args.subspan(3), "lock.acquire", &err,
                                  AcquireOptionSet::kWaitOwnerWithTimes);
  if (!opts) return ctx.reply.Error(err);
  AcquireRequest req{args[1], milliseconds(*ttl), opts->wait, std::move(opts->owner)};
  const std::string key = req.key;
  // WITHTIMES: the server's clock before the request stands in for a grant without acquired_at.
  std::optional<WallTime> before;
  if (opts->with_times) before = ctx.services.clock->WallNow();
  const uint64_t ticket = ctx.state.Acquire(
      req, ReplyLater<absl::StatusOr<std::optional<LeaseGrant>>>(
               ctx, [key, before](protocol::ReplyBuilder& reply, ClientControl& client,
                                  const absl::StatusOr<std::optional<LeaseGrant>>& g) {
                 if (!g.ok()) return server::ReplyStatus(reply, g.status());
                 if (!g->has_value()) return reply.NullArray();
                 std::optional<GrantTimes> times;
                 if (before) times = TimesOfGrant(**g, *before);
                 client.ReplyWithGrant(key, **g, times);
               }));
  if (ticket != 0) ctx.client.BlockUntilReply(ticket);
}

// LOCK.RELEASE key lock_id
void LockRelease(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  ctx.state.Release(args[1], args[2],
                    ReplyLater<absl::Status>(ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                                                     const absl::Status& st) {
                      if (st.code() == absl::StatusCode::kFailedPrecondition) {
                        return reply.Integer(0);
                      }
                      if (!st.ok()) return server::ReplyStatus(reply, st);
                      reply.Integer(1);
                    }));
}

// LOCK.EXTEND key lock_id ttl_ms
void LockExtend(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  std::string err;
  auto ttl = ParseIntInRange(args[3], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  ctx.state.Extend(
      args[1], args[2], milliseconds(*ttl),
      ReplyLater<absl::StatusOr<Duration>>(ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                                                   const absl::StatusOr<Duration>& r) {
        if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
          return reply.Integer(0);
        }
        if (!r.ok()) return server::ReplyStatus(reply, r.status());
        reply.Integer(CeilMs(*r));
      }));
}

// LOCK.INFO key
void LockInfo(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  ctx.state.Info(
      args[1],
      ReplyLater<absl::StatusOr<std::optional<LeaseInfo>>>(
          ctx, [clock = ctx.services.clock](protocol::ReplyBuilder& reply, ClientControl&,
                                            const absl::StatusOr<std::optional<LeaseInfo>>& info) {
            if (!info.ok()) return server::ReplyStatus(reply, info.status());
            if (!info->has_value()) return reply.NullArray();
            ReplyLeaseInfo(reply, nullptr, **info, (*info)->lock_id, clock->WallNow());
          }));
}

// LOCKID.INFO lock_id
void LockIdInfo(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckLockId(ctx, args[1])) return;
  ctx.state.LookupById(
      args[1], ReplyLater<absl::StatusOr<std::optional<LeaseById>>>(
                   ctx, [clock = ctx.services.clock, id = args[1]](
                            protocol::ReplyBuilder& reply, ClientControl&,
                            const absl::StatusOr<std::optional<LeaseById>>& found) {
                     if (!found.ok()) return ReplyLookupError(reply, found.status());
                     if (!found->has_value()) return reply.NullArray();
                     ReplyLeaseInfo(reply, &(*found)->key, (*found)->info, id, clock->WallNow());
                   }));
}

// LOCKID.RELEASE lock_id: LookupById, then Release(key, lock_id), which checks the lock_id again
// atomically (a lock_id is never reused, so this can never release another holder's lease).
void LockIdRelease(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckLockId(ctx, args[1])) return;
  ctx.state.LookupById(args[1], [d = ctx.client.Defer(), &state = ctx.state, id = args[1]](
                                    absl::StatusOr<std::optional<LeaseById>> found) mutable {
    if (!found.ok() || !found->has_value()) {
      return d.Finish([&](protocol::ReplyBuilder& reply, ClientControl&) {
        if (!found.ok()) return ReplyLookupError(reply, found.status());
        reply.Integer(0);
      });
    }
    state.Release((*found)->key, id, [d = std::move(d)](absl::Status st) mutable {
      d.Finish([&](protocol::ReplyBuilder& reply, ClientControl&) {
        if (st.code() == absl::StatusCode::kFailedPrecondition) return reply.Integer(0);
        if (!st.ok()) return server::ReplyStatus(reply, st);
        reply.Integer(1);
      });
    });
  });
}

// LOCKID.EXTEND lock_id ttl_ms: as LOCKID.RELEASE, with Extend; replies the new expiry (the
// server's clock before the Extend + ttl, Unix ms).
void LockIdExtend(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckLockId(ctx, args[1])) return;
  std::string err;
  auto ttl_ms = ParseIntInRange(args[2], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl_ms) return ctx.reply.Error(err);
  ctx.state.LookupById(
      args[1], [d = ctx.client.Defer(), &state = ctx.state, clock = ctx.services.clock,
                id = args[1], ttl = Duration(milliseconds(*ttl_ms))](
                   absl::StatusOr<std::optional<LeaseById>> found) mutable {
        if (!found.ok() || !found->has_value()) {
          return d.Finish([&](protocol::ReplyBuilder& reply, ClientControl&) {
            if (!found.ok()) return ReplyLookupError(reply, found.status());
            reply.Integer(0);
          });
        }
        const WallTime before = clock->WallNow();
        state.Extend((*found)->key, id, ttl,
                     [d = std::move(d), before](absl::StatusOr<Duration> r) mutable {
                       d.Finish([&](protocol::ReplyBuilder& reply, ClientControl&) {
                         if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
                           return reply.Integer(0);
                         }
                         if (!r.ok()) return server::ReplyStatus(reply, r.status());
                         reply.Integer(UnixMs(before + *r));
                       });
                     });
      });
}

// FENCE.SET resource fence value
void FenceSet(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "resource")) return;
  std::string err;
  auto fence = ParseIntInRange(args[2], "fence", 1, std::numeric_limits<int64_t>::max(), &err);
  if (!fence) return ctx.reply.Error(err);
  ctx.state.FencedSet(args[1], static_cast<uint64_t>(*fence), args[3],
                      ReplyLater<absl::Status>(ctx, [](protocol::ReplyBuilder& reply,
                                                       ClientControl&, const absl::Status& st) {
                        if (!st.ok()) return server::ReplyStatus(reply, st);
                        reply.SimpleString("OK");
                      }));
}

// FENCE.GET resource
void FenceGet(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "resource")) return;
  ctx.state.FencedGet(args[1], ReplyLater<absl::StatusOr<std::optional<FencedValue>>>(
                                   ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                                           const absl::StatusOr<std::optional<FencedValue>>& v) {
                                     if (!v.ok()) return server::ReplyStatus(reply, v.status());
                                     if (!v->has_value()) return reply.NullArray();
                                     reply.ArrayHeader(2);
                                     reply.Bulk((*v)->value);
                                     reply.Integer(static_cast<int64_t>((*v)->fence));
                                   }));
}

}  // namespace

void RegisterLeaseCommands(CommandTable& t) {
  t.Add({"lock.acquire", -3, kWrite | kBlocking | kJournaled, 1, 1, 1, &LockAcquire});
  t.Add({"lock.release", 3, kWrite | kJournaled, 1, 1, 1, &LockRelease});
  t.Add({"lock.extend", 4, kWrite | kJournaled, 1, 1, 1, &LockExtend});
  t.Add({"lock.info", 2, kJournaled, 1, 1, 1, &LockInfo});
  t.Add({"lockid.info", 2, kJournaled, 0, 0, 0, &LockIdInfo});
  t.Add({"lockid.release", 2, kWrite | kJournaled, 0, 0, 0, &LockIdRelease});
  t.Add({"lockid.extend", 3, kWrite | kJournaled, 0, 0, 0, &LockIdExtend});
  t.Add({"fence.set", 4, kWrite | kJournaled, 1, 1, 1, &FenceSet});
  t.Add({"fence.get", 2, kJournaled, 1, 1, 1, &FenceGet});
}

}  // namespace tollgate::server
