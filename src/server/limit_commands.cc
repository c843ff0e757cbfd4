// THROTTLE and RATE.CHECK: token buckets over RESP.
#include "absl/container/flat_hash_set.h"
#include "core/absl_compat.h"
#include "server/args.h"
#include "server/command_table.h"
#include "server/replies.h"

namespace tollgate::server {
namespace {

int64_t RetryMs(const std::optional<Duration>& d) { return d ? CeilMs(*d) : -1; }

void ReplyError(CommandContext& ctx, const absl::Status& st) { ReplyStatus(ctx.reply, st); }

std::optional<Decimal> ParseDecimalArg(CommandContext& ctx, std::string_view text,
                                       std::string_view what, Decimal max) {
  absl::StatusOr<Decimal> d = Decimal::ParsePositive(text, what, max);
  if (!d.ok()) {
    ReplyError(ctx, d.status());
    return std::nullopt;
  }
  return *d;
}

// THROTTLE key capacity rate_per_sec [COST c]
void Throttle(CommandContext& ctx, std::span<const std::string> args) {
  if (args.size() != 4 && args.size() != 6) {
    return ctx.reply.Error("ERR wrong number of arguments for 'throttle' command");
  }
  auto cap = ParseDecimalArg(ctx, args[2], "capacity", kMaxCapacity);
  if (!cap) return;
  auto rate = ParseDecimalArg(ctx, args[3], "rate_per_sec", kMaxRate);
  if (!rate) return;
  Decimal cost = Decimal::Units(1);
  if (args.size() == 6) {
    if (!EqualsIgnoreCase(args[4], "COST")) {
      return ctx.reply.Error("ERR unknown option '" + args[4].substr(0, 64) +
                             "' for 'throttle'; accepted: COST c");
    }
    auto c = ParseDecimalArg(ctx, args[5], "COST", kMaxCost);
    if (!c) return;
    cost = *c;
  }
  // Client-supplied parameters may not take longer than a day to refill, on every backend: the
  // embedded throttler checks it too, a shared backend would not.
  if (absl::Status st = ValidateRefillHorizon({*cap, *rate}); !st.ok()) {
    return ReplyError(ctx, st);
  }
  ServerStats* stats = &ctx.services.stats;
  ctx.state.Throttle(
      args[1], {*cap, *rate}, cost,
      ReplyLater<absl::StatusOr<Decision>>(
          ctx, [stats](protocol::ReplyBuilder& reply, ClientControl&,
                       const absl::StatusOr<Decision>& d) {
            if (!d.ok()) return ReplyStatus(reply, d.status());
            // Counted here, for every kind of state, and nowhere else.
            (d->allowed ? stats->throttle_allowed : stats->throttle_denied)
                .fetch_add(1, std::memory_order_relaxed);
            reply.ArrayHeader(4);
            reply.Integer(d->allowed ? 1 : 0);
            reply.Integer(static_cast<int64_t>(std::min<uint64_t>(d->remaining, INT64_MAX)));
            reply.Integer(d->allowed ? 0 : RetryMs(d->retry_after));
            reply.Integer(CeilMs(d->reset_after));
          }));
}

// RATE.CHECK policy [COST c] [field value ...]
void RateCheck(CommandContext& ctx, std::span<const std::string> args) {
  size_t i = 2;
  std::optional<Decimal> cost;
  if (args.size() > 2 && EqualsIgnoreCase(args[2], "COST")) {
    if (args.size() < 4) return ctx.reply.Error("ERR COST needs a value: a positive decimal");
    cost = ParseDecimalArg(ctx, args[3], "COST", kMaxCost);
    if (!cost) return;
    i = 4;
  }
  if ((args.size() - i) % 2 != 0) {
    return ctx.reply.Error("ERR fields must be given as field value pairs");
  }
  std::vector<Field> fields;
  fields.reserve((args.size() - i) / 2);
  for (; i < args.size(); i += 2) {
    if (!IsFieldName(args[i])) {
      return ctx.reply.Error("ERR field name '" + args[i].substr(0, 64) +
                             "' must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 64)");
    }
    for (const Field& f : fields) {
      if (f.first == args[i]) {
        return ctx.reply.Error("ERR field '" + args[i] + "' given more than once");
      }
    }
    fields.emplace_back(args[i], args[i + 1]);
  }
  ctx.state.RateCheck(
      args[1], fields, cost,
      ReplyLater<absl::StatusOr<PolicyDecision>>(
          ctx, [](protocol::ReplyBuilder& reply, ClientControl&,
                  const absl::StatusOr<PolicyDecision>& d) {
            if (!d.ok()) return ReplyStatus(reply, d.status());
            reply.ArrayHeader(4);
            reply.Integer(d->allowed ? 1 : 0);
            if (d->denied_layer) {
              reply.Bulk(*d->denied_layer);
            } else {
              reply.Null();
            }
            reply.Integer(static_cast<int64_t>(std::min<uint64_t>(d->remaining, INT64_MAX)));
            reply.Integer(d->allowed ? 0 : RetryMs(d->retry_after));
          }));
}

}  // namespace

void RegisterLimitCommands(CommandTable& t) {
  t.Add({"throttle", -4, kWrite, 1, 1, 1, &Throttle});
  t.Add({"rate.check", -2, kWrite, 0, 0, 0, &RateCheck});
}

}  // namespace tollgate::server
