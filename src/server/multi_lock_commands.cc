// LOCK.MACQUIRE / LOCK.MRELEASE / LOCK.MEXTEND: all-or-nothing locks over several keys. Each key
// of a group is an ordinary lease afterwards (LOCK.RELEASE / EXTEND / INFO work on it).
#include <vector>

#include "server/acquire_options.h"
#include "server/args.h"
#include "server/command_table.h"
#include "server/replies.h"

namespace tollgate::server {
namespace {

using std::chrono::milliseconds;

// Reads `numkeys key [key ...]` at args[1..] followed by exactly `after` more arguments
// (after < 0: at least -after). The keys are validated (count, each key, distinct). nullopt with
// the -ERR reply sent otherwise.
std::optional<std::vector<std::string>> ParseKeys(CommandContext& ctx,
                                                  std::span<const std::string> args, int after) {
  std::string err;
  auto n = ParseIntInRange(args[1], "numkeys", 1, static_cast<int64_t>(kMaxMultiKeys), &err);
  if (!n) {
    ctx.reply.Error(err);
    return std::nullopt;
  }
  const size_t need = 2 + static_cast<size_t>(*n) + static_cast<size_t>(after < 0 ? -after : after);
  if (args.size() < need || (after >= 0 && args.size() != need)) {
    ctx.reply.Error("ERR wrong number of arguments for '" + AsciiLower(args[0]) + "': numkeys is " +
                    std::to_string(*n) + ", so " + std::to_string(need - 1) +
                    (after < 0 ? " or more" : "") + " arguments are expected, got " +
                    std::to_string(args.size() - 1));
    return std::nullopt;
  }
  std::vector<std::string> keys(args.begin() + 2, args.begin() + 2 + *n);
  if (absl::Status st = ValidateKeyList(keys); !st.ok()) {
    ReplyStatus(ctx.reply, st);
    return std::nullopt;
  }
  return keys;
}

// LOCK.MACQUIRE numkeys key [key ...] ttl_ms [WAIT ms] [OWNER label] -> [lock_id, fence, ttl_ms]
// | nil
void LockMAcquire(CommandContext& ctx, std::span<const std::string> args) {
  auto keys = ParseKeys(ctx, args, -1);
  if (!keys) return;
  const size_t at = 2 + keys->size();
  std::string err;
  auto ttl = ParseIntInRange(args[at], "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  auto opts = ParseAcquireOptions(args.subspan(at + 1), "lock.macquire", &err);
  if (!opts) return ctx.reply.Error(err);
  MultiAcquireRequest req{*keys, milliseconds(*ttl), opts->wait, std::move(opts->owner)};
  const uint64_t ticket = ctx.state.MultiAcquire(
      req, ReplyLater<absl::StatusOr<std::optional<LeaseGrant>>>(
               ctx, [keys = std::move(*keys)](protocol::ReplyBuilder& reply, ClientControl& client,
                                              const absl::StatusOr<std::optional<LeaseGrant>>& g) {
                 if (!g.ok()) return ReplyStatus(reply, g.status());
                 if (!g->has_value()) return reply.NullArray();
                 client.ReplyWithMultiGrant(keys, **g);
               }));
  if (ticket != 0) ctx.client.BlockUntilReply(ticket);
}

// LOCK.MRELEASE numkeys key [key ...] lock_id -> number of keys released
void LockMRelease(CommandContext& ctx, std::span<const std::string> args) {
  auto keys = ParseKeys(ctx, args, 1);
  if (!keys) return;
  ctx.state.MultiRelease(*keys, args.back(),
                         ReplyLater<absl::StatusOr<size_t>>(
                             ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                                     const absl::StatusOr<size_t>& n) {
                               if (!n.ok()) return ReplyStatus(reply, n.status());
                               reply.Integer(static_cast<int64_t>(*n));
                             }));
}

// LOCK.MEXTEND numkeys key [key ...] lock_id ttl_ms -> ttl_ms | 0 (all or none)
void LockMExtend(CommandContext& ctx, std::span<const std::string> args) {
  auto keys = ParseKeys(ctx, args, 2);
  if (!keys) return;
  std::string err;
  auto ttl = ParseIntInRange(args.back(), "ttl_ms", 1, kMaxMs, &err);
  if (!ttl) return ctx.reply.Error(err);
  ctx.state.MultiExtend(
      *keys, args[args.size() - 2], milliseconds(*ttl),
      ReplyLater<absl::StatusOr<Duration>>(ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                                                   const absl::StatusOr<Duration>& r) {
        if (r.status().code() == absl::StatusCode::kFailedPrecondition) return reply.Integer(0);
        if (!r.ok()) return ReplyStatus(reply, r.status());
        reply.Integer(CeilMs(*r));
      }));
}

}  // namespace

void RegisterMultiLockCommands(CommandTable& t) {
  // Keys are movable (after numkeys), as EVAL's: first/last/step 0 in COMMAND.
  t.Add({"lock.macquire", -4, kWrite | kBlocking | kJournaled, 0, 0, 0, &LockMAcquire});
  t.Add({"lock.mrelease", -4, kWrite | kJournaled, 0, 0, 0, &LockMRelease});
  t.Add({"lock.mextend", -5, kWrite | kJournaled, 0, 0, 0, &LockMExtend});
}

}  // namespace tollgate::server
