// SEM.*: fenced semaphores over RESP.
#include "server/acquire_options.h"
#include "server/args.h"
#include "server/command_table.h"
#include "server/replies.h"

namespace tollgate::server {
namespace {

using std::chrono::milliseconds;

bool CheckKey(CommandContext& ctx, std::string_view key) {
  absl::Status st = ValidateKey(key, "key");
  if (st.ok()) return true;
  ReplyStatus(ctx.reply, st);
  return false;
}

// SEM.ACQUIRE key limit ttl_ms [WAIT ms] [OWNER label] -> [permit_id, slot, fence, ttl_ms] | nil
void SemAcquire(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1])) return;
  std::string err;
  auto limit = ParseIntInRange(args[2], "limit", 1, kMaxSemaphoreLimit, &err);
  if (!limit) return ctx.reply.Error(err);
  auto ttl = ParseIntInRange(args[3], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  auto opts = ParseAcquireOptions(args.subspan(4), "sem.acquire", &err);
  if (!opts) return ctx.reply.Error(err);
  SemAcquireRequest req{args[1], *limit, milliseconds(*ttl), opts->wait, std::move(opts->owner)};
  const std::string key = req.key;
  const uint64_t ticket = ctx.state.SemAcquire(
      req, ReplyLater<absl::StatusOr<std::optional<PermitGrant>>>(
               ctx, [key](protocol::ReplyBuilder& reply, ClientControl& client,
                          const absl::StatusOr<std::optional<PermitGrant>>& g) {
                 if (!g.ok()) return ReplyStatus(reply, g.status());
                 if (!g->has_value()) return reply.NullArray();
                 client.ReplyWithPermit(key, **g);
               }));
  if (ticket != 0) ctx.client.BlockUntilReply(ticket);
}

// SEM.RELEASE key permit_id -> 1 | 0
void SemRelease(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1])) return;
  ctx.state.SemRelease(args[1], args[2],
                       ReplyLater<absl::Status>(ctx, [](protocol::ReplyBuilder& reply,
                                                        ClientControl&, const absl::Status& st) {
                         if (st.code() == absl::StatusCode::kFailedPrecondition) {
                           return reply.Integer(0);
                         }
                         if (!st.ok()) return ReplyStatus(reply, st);
                         reply.Integer(1);
                       }));
}

// SEM.EXTEND key permit_id ttl_ms -> ttl_ms | 0 (never revives)
void SemExtend(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1])) return;
  std::string err;
  auto ttl = ParseIntInRange(args[3], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  ctx.state.SemExtend(
      args[1], args[2], milliseconds(*ttl),
      ReplyLater<absl::StatusOr<Duration>>(ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                                                   const absl::StatusOr<Duration>& r) {
        if (r.status().code() == absl::StatusCode::kFailedPrecondition) return reply.Integer(0);
        if (!r.ok()) return ReplyStatus(reply, r.status());
        reply.Integer(CeilMs(*r));
      }));
}

// SEM.INFO key -> {limit, holders, waiters, fence} | nil. Never reveals permit ids.
void SemInfo(CommandContext& ctx, std::span<const std::string> args) {
  if (!CheckKey(ctx, args[1])) return;
  ctx.state.SemInfo(args[1], ReplyLater<absl::StatusOr<std::optional<SemaphoreInfo>>>(
                                 ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                                         const absl::StatusOr<std::optional<SemaphoreInfo>>& r) {
                                   if (!r.ok()) return ReplyStatus(reply, r.status());
                                   if (!r->has_value()) return reply.NullArray();
                                   const SemaphoreInfo& i = **r;
                                   reply.MapHeader(4);
                                   reply.Bulk("limit");
                                   reply.Integer(i.limit);
                                   reply.Bulk("holders");
                                   reply.Integer(i.holders);
                                   reply.Bulk("waiters");
                                   reply.Integer(static_cast<int64_t>(i.waiters));
                                   reply.Bulk("fence");
                                   reply.Integer(static_cast<int64_t>(i.fence));
                                 }));
}

}  // namespace

void RegisterSemaphoreCommands(CommandTable& t) {
  t.Add({"sem.acquire", -4, kWrite | kBlocking | kJournaled, 1, 1, 1, &SemAcquire});
  t.Add({"sem.release", 3, kWrite | kJournaled, 1, 1, 1, &SemRelease});
  t.Add({"sem.extend", 4, kWrite | kJournaled, 1, 1, 1, &SemExtend});
  t.Add({"sem.info", 2, kJournaled, 1, 1, 1, &SemInfo});
}

}  // namespace tollgate::server
