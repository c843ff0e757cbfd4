// LOCK.* and FENCE.*: the lease core and fenced registers over RESP.
#include <limits>

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

// LOCK.ACQUIRE key ttl_ms [WAIT ms] [OWNER label]
void LockAcquire(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1], "key")) return;
  std::string err;
  auto ttl = ParseIntInRange(args[2], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  auto opts = ParseAcquireOptions(args.subspan(3), "lock.acquire", &err);
  if (!opts) return ctx.reply.Error(err);
  AcquireRequest req{args[1], milliseconds(*ttl), opts->wait, std::move(opts->owner)};
  const std::string key = req.key;
  const uint64_t ticket =
      ctx.state.Acquire(req, ReplyLater<absl::StatusOr<std::optional<LeaseGrant>>>(
                                 ctx, [key](protocol::ReplyBuilder& reply, ClientControl& client,
                                            const absl::StatusOr<std::optional<LeaseGrant>>& g) {
                                   if (!g.ok()) return server::ReplyStatus(reply, g.status());
                                   if (!g->has_value()) return reply.NullArray();
                                   client.ReplyWithGrant(key, **g);
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
  ctx.state.Info(args[1], ReplyLater<absl::StatusOr<std::optional<LeaseInfo>>>(
                              ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                                      const absl::StatusOr<std::optional<LeaseInfo>>& info) {
                                if (!info.ok()) return server::ReplyStatus(reply, info.status());
                                if (!info->has_value()) return reply.NullArray();
                                const LeaseInfo& i = **info;
                                reply.MapHeader(4);
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
                              }));
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
  t.Add({"fence.set", 4, kWrite | kJournaled, 1, 1, 1, &FenceSet});
  t.Add({"fence.get", 2, kJournaled, 1, 1, 1, &FenceGet});
}

}  // namespace tollgate::server
