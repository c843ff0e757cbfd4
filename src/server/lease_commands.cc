// LOCK.* and FENCE.*: the lease core and fenced registers over RESP.
#include <limits>

#include "server/args.h"
#include "server/backend_waiters.h"
#include "server/command_table.h"
#include "server/replies.h"

namespace tollgate::server {
namespace {

using std::chrono::milliseconds;

constexpr int64_t kMaxMs = 86'400'000;
constexpr size_t kMaxOwnerBytes = 512;

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

// LOCK.ACQUIRE key ttl_ms [WAIT ms] [OWNER label]
void LockAcquire(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  std::string err;
  auto ttl = ParseIntInRange(args[2], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  AcquireRequest req{args[1], milliseconds(*ttl), Duration(0), std::nullopt};
  bool have_wait = false;
  for (size_t i = 3; i < args.size(); i += 2) {
    const std::string& opt = args[i];
    const bool is_wait = EqualsIgnoreCase(opt, "WAIT"), is_owner = EqualsIgnoreCase(opt, "OWNER");
    if (!is_wait && !is_owner) {
      return ctx.reply.Error("ERR unknown option '" + opt.substr(0, 64) +
                             "' for 'lock.acquire'; accepted: WAIT ms, OWNER label");
    }
    if (i + 1 >= args.size()) {
      return ctx.reply.Error(is_wait ? "ERR WAIT needs a value: an integer in [0, 86400000]"
                                     : "ERR OWNER needs a value: a label of 1 to 512 bytes");
    }
    if ((is_wait && have_wait) || (is_owner && req.owner)) {
      return ctx.reply.Error("ERR option " + std::string(is_wait ? "WAIT" : "OWNER") +
                             " given more than once");
    }
    if (is_wait) {
      auto wait = ParseIntInRange(args[i + 1], "WAIT", 0, kMaxMs, &err);
      if (!wait) return ctx.reply.Error(err);
      req.wait = milliseconds(*wait);
      have_wait = true;
    } else {
      const std::string& label = args[i + 1];
      if (label.empty() || label.size() > kMaxOwnerBytes) {
        return ctx.reply.Error("ERR OWNER label must be 1 to 512 bytes long, got " +
                               std::to_string(label.size()) + " bytes");
      }
      req.owner = label;
    }
  }
  if (ctx.backend != nullptr) {
    BackendWaiters* waiters = BackendWaiters::For(&ctx.services);
    // This server's waiters for the key go first: a newcomer queues behind them (or, without WAIT,
    // is not granted) rather than taking the key from under them, as on the embedded store.
    if (waiters == nullptr || !waiters->HasWaiters(req.key)) {
      auto g = ctx.backend->Acquire(req.key, req.ttl, req.owner);
      if (!g.ok()) return ReplyStatus(ctx, g.status());
      if (g->has_value()) return ctx.client.ReplyWithGrant(req.key, **g);
    }
    if (req.wait == Duration(0)) return ctx.reply.NullArray();
    if (waiters == nullptr) {
      return ctx.reply.Error("ERR WAIT is not available on this server's " +
                             std::string(ctx.backend->kind()) + " backend");
    }
    absl::StatusOr<bool> queued = waiters->Enqueue(req, ctx.client);
    if (!queued.ok()) return ReplyStatus(ctx, queued.status());
    if (!*queued) return ctx.reply.NullArray();  // shutting down
    return;  // answered later, through the connection's waiter callback
  }
  GrantCallback cb;
  if (req.wait > Duration(0)) cb = ctx.client.WaiterCallback(req.key);
  absl::StatusOr<LeaseManager::AsyncStart> start = ctx.services.leases.AcquireAsync(req, cb);
  if (!start.ok()) return ReplyStatus(ctx, start.status());
  if (start->queued) return ctx.client.Block(req.key, start->waiter_id);
  if (start->grant) {
    ctx.client.ReplyWithGrant(req.key, *start->grant);
  } else {
    ctx.reply.NullArray();
  }
}

// LOCK.RELEASE key lock_id
void LockRelease(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  absl::Status st = ctx.backend != nullptr ? ctx.backend->Release(args[1], args[2])
                                           : ctx.services.leases.Release(args[1], args[2]);
  if (st.code() == absl::StatusCode::kFailedPrecondition) return ctx.reply.Integer(0);
  if (!st.ok()) return ReplyStatus(ctx, st);
  ctx.reply.Integer(1);
}

// LOCK.EXTEND key lock_id ttl_ms
void LockExtend(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  std::string err;
  auto ttl = ParseIntInRange(args[3], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  absl::StatusOr<Duration> r =
      ctx.backend != nullptr ? ctx.backend->Extend(args[1], args[2], milliseconds(*ttl))
                             : ctx.services.leases.Extend(args[1], args[2], milliseconds(*ttl));
  if (r.status().code() == absl::StatusCode::kFailedPrecondition) return ctx.reply.Integer(0);
  if (!r.ok()) return ReplyStatus(ctx, r.status());
  ctx.reply.Integer(CeilMs(*r));
}

// LOCK.INFO key
void LockInfo(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  absl::StatusOr<std::optional<LeaseInfo>> info =
      ctx.backend != nullptr ? ctx.backend->Info(args[1]) : ctx.services.leases.Info(args[1]);
  if (!info.ok()) return ReplyStatus(ctx, info.status());
  if (!info->has_value()) return ctx.reply.NullArray();
  LeaseInfo& i = **info;
  if (ctx.backend != nullptr) {
    // On a shared backend: the clients of this server waiting for the key.
    if (BackendWaiters* w = BackendWaiters::For(&ctx.services)) {
      i.waiters = w->CountWaiters(args[1]);
    }
  }
  ctx.reply.MapHeader(4);
  ctx.reply.Bulk("fence");
  ctx.reply.Integer(static_cast<int64_t>(i.fence));
  ctx.reply.Bulk("ttl_ms");
  ctx.reply.Integer(CeilMs(i.ttl_remaining));
  ctx.reply.Bulk("owner");
  if (i.owner) {
    ctx.reply.Bulk(*i.owner);
  } else {
    ctx.reply.Null();
  }
  ctx.reply.Bulk("waiters");
  ctx.reply.Integer(static_cast<int64_t>(i.waiters));
}

// FENCE.SET resource fence value
void FenceSet(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "resource")) return;
  std::string err;
  auto fence = ParseIntInRange(args[2], "fence", 1, std::numeric_limits<int64_t>::max(), &err);
  if (!fence) return ctx.reply.Error(err);
  const uint64_t f = static_cast<uint64_t>(*fence);
  absl::Status st = ctx.backend != nullptr ? ctx.backend->FencedSet(args[1], f, args[3])
                                           : ctx.services.registers.Set(args[1], f, args[3]);
  if (!st.ok()) return ReplyStatus(ctx, st);
  ctx.reply.SimpleString("OK");
}

// FENCE.GET resource
void FenceGet(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "resource")) return;
  absl::StatusOr<std::optional<FencedValue>> v = ctx.backend != nullptr
                                                     ? ctx.backend->FencedGet(args[1])
                                                     : ctx.services.registers.Get(args[1]);
  if (!v.ok()) return ReplyStatus(ctx, v.status());
  if (!v->has_value()) return ctx.reply.NullArray();
  ctx.reply.ArrayHeader(2);
  ctx.reply.Bulk((*v)->value);
  ctx.reply.Integer(static_cast<int64_t>((*v)->fence));
}

}  // namespace

void RegisterLeaseCommands(CommandTable& t) {
  t.Add({"lock.acquire", -3, kWrite | kBlocking | kJournaled, 1, 1, 1, &LockAcquire});
  t.Add({"lock.release", 3, kWrite | kJournaled, 1, 1, 1, &LockRelease});
  t.Add({"lock.extend", 4, kWrite | kJournaled, 1, 1, 1, &LockExtend});
  t.Add({"lock.info", 2, kJournaled, 1, 1, 1, &LockInfo});
  t.Add({"fence.set", 4, kWrite | kJournaled, 1, 1, 1, &FenceSet});
  t.Add({"fence.get", 2, kJournaled, 1, 1, 1, &FenceGet});
}

}  // namespace tollgate::server
