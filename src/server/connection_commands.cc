// Connection-level commands: enough of Redis for redis-cli, redis-benchmark and client libraries.
#include <chrono>
#include <string>

#include "core/lock_id.h"
#include "metrics/metrics.h"
#include "server/args.h"
#include "server/command_table.h"

namespace tollgate::server {
namespace {

constexpr std::string_view kRedisCompatVersion = "7.0.0";
constexpr std::string_view kTollgateVersion = "0.1.0";

void Ping(CommandContext& ctx, std::span<const std::string> args) {
  if (args.size() > 2) {
    return ctx.reply.Error("ERR wrong number of arguments for 'ping' command");
  }
  if (args.size() == 2) return ctx.reply.Bulk(args[1]);
  ctx.reply.SimpleString("PONG");
}

// TIME -> [unix seconds, microseconds] as bulk strings, as Redis, from the server's wall clock
// (the clock that stamps acquired_at_ms and expires_at_ms).
void Time(CommandContext& ctx, std::span<const std::string>) {
  const int64_t us = std::chrono::floor<std::chrono::microseconds>(
                         ctx.services.clock->WallNow().time_since_epoch())
                         .count();
  ctx.reply.ArrayHeader(2);
  ctx.reply.Bulk(std::to_string(us / 1'000'000));
  ctx.reply.Bulk(std::to_string(us % 1'000'000));
}

void Echo(CommandContext& ctx, std::span<const std::string> args) { ctx.reply.Bulk(args[1]); }

void Quit(CommandContext& ctx, std::span<const std::string>) {
  ctx.reply.SimpleString("OK");
  ctx.session.close_after_reply = true;
}

void Select(CommandContext& ctx, std::span<const std::string> args) {
  if (args[1] != "0") return ctx.reply.Error("ERR DB index is out of range");
  ctx.reply.SimpleString("OK");
}

constexpr std::string_view kWrongPass =
    "WRONGPASS invalid username-password pair or user is disabled.";

// Checks user/password against --requirepass. Only the "default" user exists.
bool CheckPassword(const Services& s, std::string_view user, std::string_view pass) {
  const bool pass_ok = core::ConstantTimeEqualsSecret(pass, s.options.requirepass);
  return (user == "default") & pass_ok;  // both evaluated: no early exit on the user name
}

// Failed AUTH/HELLO AUTH attempts one connection may make; the last one closes it, so guessing
// costs a new TCP connection per kMaxAuthFailures tries (documented in README, Limits).
constexpr int kMaxAuthFailures = 3;

// Replies WRONGPASS and counts the failure; closes the connection after kMaxAuthFailures.
void RejectAuth(CommandContext& ctx) {
  ctx.services.stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
  if (++ctx.session.auth_failures >= kMaxAuthFailures) {
    ctx.session.close_after_reply = true;
    return ctx.reply.Error(std::string(kWrongPass.substr(0, kWrongPass.size() - 1)) +
                           "; closing the connection after " + std::to_string(kMaxAuthFailures) +
                           " failed attempts.");
  }
  ctx.reply.Error(kWrongPass);
}

// AUTH [user] password
void Auth(CommandContext& ctx, std::span<const std::string> args) {
  if (args.size() > 3) return ctx.reply.Error("ERR syntax error");
  if (ctx.services.options.requirepass.empty()) {
    return ctx.reply.Error(
        "ERR AUTH <password> called without any password configured for the default user. Are "
        "you sure your configuration is correct?");
  }
  std::string_view user = args.size() == 3 ? std::string_view(args[1]) : "default";
  if (!CheckPassword(ctx.services, user, args.back())) return RejectAuth(ctx);
  ctx.session.authenticated = true;
  ctx.reply.SimpleString("OK");
}

// HELLO [protover [AUTH user password] [SETNAME name]]
void Hello(CommandContext& ctx, std::span<const std::string> args) {
  int proto = ctx.session.protocol;
  size_t i = 1;
  if (args.size() >= 2) {
    auto v = ParseInt64(args[1]);
    if (!v) return ctx.reply.Error("ERR Protocol version is not an integer or out of range");
    if (*v != 2 && *v != 3) return ctx.reply.Error("NOPROTO unsupported protocol version");
    proto = static_cast<int>(*v);
    i = 2;
  }
  bool auth_ok = false;
  std::string setname;
  bool have_setname = false;
  for (; i < args.size(); ++i) {
    if (EqualsIgnoreCase(args[i], "AUTH") && i + 2 < args.size()) {
      if (ctx.services.options.requirepass.empty()) return ctx.reply.Error(kWrongPass);
      if (!CheckPassword(ctx.services, args[i + 1], args[i + 2])) return RejectAuth(ctx);
      auth_ok = true;
      i += 2;
    } else if (EqualsIgnoreCase(args[i], "SETNAME") && i + 1 < args.size()) {
      setname = args[++i];
      have_setname = true;
    } else {
      return ctx.reply.Error("ERR Syntax error in HELLO option '" + args[i].substr(0, 64) + "'");
    }
  }
  if (!ctx.services.options.requirepass.empty() && !ctx.session.authenticated && !auth_ok) {
    return ctx.reply.Error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
        "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "
        "RESP protocol version at the same time");
  }
  if (auth_ok) ctx.session.authenticated = true;
  if (have_setname) ctx.session.name = setname;
  ctx.session.protocol = proto;
  ctx.reply.set_protocol(proto);
  ctx.reply.MapHeader(8);
  ctx.reply.Bulk("server");
  ctx.reply.Bulk("redis");
  ctx.reply.Bulk("version");
  ctx.reply.Bulk(kRedisCompatVersion);
  ctx.reply.Bulk("proto");
  ctx.reply.Integer(proto);
  ctx.reply.Bulk("id");
  ctx.reply.Integer(static_cast<int64_t>(ctx.session.id));
  ctx.reply.Bulk("mode");
  ctx.reply.Bulk("standalone");
  ctx.reply.Bulk("role");
  ctx.reply.Bulk("master");
  ctx.reply.Bulk("modules");
  ctx.reply.ArrayHeader(0);
  ctx.reply.Bulk("tollgate_version");
  ctx.reply.Bulk(kTollgateVersion);
}

// Client names follow Redis: printable ASCII without spaces.
bool ValidClientName(std::string_view n) {
  for (char c : n) {
    if (c < '!' || c > '~') return false;
  }
  return true;
}

// CLIENT SETNAME|GETNAME|ID|SETINFO|INFO ...
void Client(CommandContext& ctx, std::span<const std::string> args) {
  const std::string& sub = args[1];
  if (EqualsIgnoreCase(sub, "SETNAME") && args.size() == 3) {
    if (!ValidClientName(args[2])) {
      return ctx.reply.Error(
          "ERR Client names cannot contain spaces, newlines or special characters.");
    }
    ctx.session.name = args[2];
    return ctx.reply.SimpleString("OK");
  }
  if (EqualsIgnoreCase(sub, "GETNAME") && args.size() == 2) {
    if (ctx.session.name.empty()) return ctx.reply.Null();
    return ctx.reply.Bulk(ctx.session.name);
  }
  if (EqualsIgnoreCase(sub, "ID") && args.size() == 2) {
    return ctx.reply.Integer(static_cast<int64_t>(ctx.session.id));
  }
  if (EqualsIgnoreCase(sub, "SETINFO") && args.size() == 4) {
    return ctx.reply.SimpleString("OK");  // library name/version: accepted, not used
  }
  if (EqualsIgnoreCase(sub, "INFO") && args.size() == 2) {
    return ctx.reply.Verbatim("id=" + std::to_string(ctx.session.id) + " name=" + ctx.session.name +
                              " resp=" + std::to_string(ctx.session.protocol) + "\n");
  }
  ctx.reply.Error("ERR unknown subcommand or wrong number of arguments for '" + sub.substr(0, 64) +
                  "'. Try CLIENT SETNAME, GETNAME, ID, SETINFO or INFO.");
}

void ReplyCommandInfo(CommandContext& ctx, const CommandSpec& c) {
  ctx.reply.ArrayHeader(6);
  ctx.reply.Bulk(c.name);
  ctx.reply.Integer(c.arity);
  int nflags = (c.flags & kWrite ? 1 : 0) + (c.flags & kBlocking ? 1 : 0) +
               (c.flags & kNoAuth ? 1 : 0) + (c.flags & kWrite ? 0 : 1);
  ctx.reply.SetHeader(nflags);
  if (c.flags & kWrite) ctx.reply.SimpleString("write");
  if (!(c.flags & kWrite)) ctx.reply.SimpleString("readonly");
  if (c.flags & kBlocking) ctx.reply.SimpleString("blocking");
  if (c.flags & kNoAuth) ctx.reply.SimpleString("no_auth");
  ctx.reply.Integer(c.first_key);
  ctx.reply.Integer(c.last_key);
  ctx.reply.Integer(c.key_step);
}

// COMMAND [COUNT | LIST | INFO name... | DOCS [name...]]
void Command(CommandContext& ctx, std::span<const std::string> args) {
  const CommandTable& table = AllCommands();
  if (args.size() == 1) {
    ctx.reply.ArrayHeader(table.all().size());
    for (const CommandSpec& c : table.all()) ReplyCommandInfo(ctx, c);
    return;
  }
  const std::string& sub = args[1];
  if (EqualsIgnoreCase(sub, "COUNT") && args.size() == 2) {
    return ctx.reply.Integer(static_cast<int64_t>(table.all().size()));
  }
  if (EqualsIgnoreCase(sub, "LIST") && args.size() == 2) {
    ctx.reply.ArrayHeader(table.all().size());
    for (const CommandSpec& c : table.all()) ctx.reply.Bulk(c.name);
    return;
  }
  if (EqualsIgnoreCase(sub, "INFO")) {
    ctx.reply.ArrayHeader(args.size() - 2);
    for (size_t i = 2; i < args.size(); ++i) {
      const CommandSpec* c = table.Find(args[i]);
      if (c == nullptr) {
        ctx.reply.NullArray();
      } else {
        ReplyCommandInfo(ctx, *c);
      }
    }
    return;
  }
  if (EqualsIgnoreCase(sub, "DOCS")) return ctx.reply.MapHeader(0);  // no docs served
  ctx.reply.Error("ERR unknown subcommand '" + sub.substr(0, 64) +
                  "'. Try COMMAND COUNT, LIST, INFO or DOCS.");
}

// CONFIG GET parameter: the few settings clients and redis-benchmark ask about.
void Config(CommandContext& ctx, std::span<const std::string> args) {
  if (!EqualsIgnoreCase(args[1], "GET") || args.size() != 3) {
    return ctx.reply.Error("ERR only CONFIG GET parameter is supported");
  }
  const std::pair<std::string_view, std::string> known[] = {
      {"appendonly", "yes"},
      {"appendfsync", "always"},
      {"save", ""},
      {"port", std::to_string(ctx.services.tcp_port)},
      {"bind", ctx.services.options.bind},
      {"databases", "1"},
  };
  const std::string want = AsciiLower(args[2]);
  size_t n = 0;
  for (const auto& [k, v] : known) n += (want == "*" || want == k);
  ctx.reply.MapHeader(n);
  for (const auto& [k, v] : known) {
    if (want == "*" || want == k) {
      ctx.reply.Bulk(k);
      ctx.reply.Bulk(v);
    }
  }
}

void Info(CommandContext& ctx, std::span<const std::string> args) {
  const Services& s = ctx.services;
  const std::string section = args.size() >= 2 ? AsciiLower(args[1]) : "default";
  auto want = [&](std::string_view name) {
    return section == "default" || section == "all" || section == "everything" || section == name;
  };
  const int64_t uptime =
      std::chrono::duration_cast<std::chrono::seconds>(s.clock->SteadyNow() - s.started).count();
  std::string out;
  auto line = [&](std::string_view k, const std::string& v) {
    out.append(k);
    out.push_back(':');
    out.append(v);
    out.append("\r\n");
  };
  if (want("server")) {
    out.append("# Server\r\n");
    line("redis_version", std::string(kRedisCompatVersion));
    line("tollgate_version", std::string(kTollgateVersion));
    line("redis_mode", "standalone");
    line("tcp_port", std::to_string(s.tcp_port));
    line("uptime_in_seconds", std::to_string(uptime));
    line("io_threads", std::to_string(s.io_threads));
    out.append("\r\n");
  }
  if (want("clients")) {
    out.append("# Clients\r\n");
    line("connected_clients", std::to_string(s.stats.connected_clients.load()));
    line("blocked_clients", std::to_string(s.stats.blocked_clients.load()));
    line("maxclients", std::to_string(s.options.max_clients));
    out.append("\r\n");
  }
  if (want("stats")) {
    out.append("# Stats\r\n");
    line("total_connections_received", std::to_string(s.stats.connections_received.load()));
    line("rejected_connections", std::to_string(s.stats.connections_rejected.load()));
    line("total_commands_processed",
         std::to_string(s.metrics != nullptr ? s.metrics->TotalCommands() : 0));
    line("protocol_errors", std::to_string(s.stats.protocol_errors.load()));
    line("auth_failures", std::to_string(s.stats.auth_failures.load()));
    line("grants_withdrawn", std::to_string(s.stats.grants_withdrawn.load()));
    out.append("\r\n");
  }
  if (want("persistence")) {
    out.append("# Persistence\r\n");
    for (const auto& [k, v] : ctx.state.PersistenceInfo()) line(k, v);
    out.append("\r\n");
  }
  if (want("leases")) {
    out.append("# Leases\r\n");
    for (const auto& [k, v] : ctx.state.LeasesInfo()) line(k, v);
    line("lock_delay_ms",
         std::to_string(
             std::chrono::duration_cast<std::chrono::milliseconds>(s.options.lock_delay).count()));
    out.append("\r\n");
  }
  if (want("ratelimit")) {
    // Counters are this server's decisions, whatever state answered; the fields are the same
    // either way. Live bucket counts are known only where the buckets are (State), else "n/a".
    // overflow counts only embedded-store decisions (shared backends have no bucket limit).
    const bool known = ctx.state.KnowsBucketCounts();
    auto buckets = [&](size_t n) { return known ? std::to_string(n) : std::string("n/a"); };
    out.append("# Ratelimit\r\n");
    line("throttle_buckets", buckets(s.throttler.bucket_count()));
    line("throttle_allowed", std::to_string(s.stats.throttle_allowed.load()));
    line("throttle_denied", std::to_string(s.stats.throttle_denied.load()));
    line("throttle_overflow", std::to_string(s.throttler.overflow_count()));
    line("throttle_evicted", std::to_string(s.throttler.evicted_count()));
    if (s.watcher != nullptr) {
      line("config_reloads_ok", std::to_string(s.watcher->reloads_ok()));
      line("config_reloads_failed", std::to_string(s.watcher->reloads_failed()));
    }
    for (const LayerCounters& c : s.policies.counters()) {
      line("policy_" + c.policy + "_layer_" + c.layer,
           "allowed=" + std::to_string(c.allowed) + ",denied=" + std::to_string(c.denied) +
               ",shadow_denied=" + std::to_string(c.shadow_denied) +
               ",overflow=" + std::to_string(c.overflow) + ",evicted=" + std::to_string(c.evicted) +
               ",buckets=" + buckets(c.live_buckets) + ",shadow=" + (c.shadow ? "1" : "0"));
    }
    for (const PolicyLatency& l : s.policies.latencies()) {
      auto us = [](Duration d) {
        return std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count() /
                              1000.0);
      };
      std::string hist;
      for (size_t b = 0; b < l.counts.size(); ++b) {
        if (l.counts[b] == 0) continue;
        if (!hist.empty()) hist += ";";
        hist += "le_" + std::to_string(uint64_t{1} << b) + "ns=" + std::to_string(l.counts[b]);
      }
      line("policy_" + l.policy + "_latency",
           "checks=" + std::to_string(l.count) + ",p50_us<=" + us(l.p50) + ",p99_us<=" + us(l.p99) +
               ",max_us<=" + us(l.max) + ",histogram=" + hist);
    }
    out.append("\r\n");
  }
  ctx.reply.Verbatim(out);
}

}  // namespace

void RegisterConnectionCommands(CommandTable& t) {
  t.Add({"ping", -1, 0, 0, 0, 0, &Ping});
  t.Add({"echo", 2, 0, 0, 0, 0, &Echo});
  t.Add({"time", 1, 0, 0, 0, 0, &Time});
  t.Add({"quit", -1, kNoAuth, 0, 0, 0, &Quit});
  t.Add({"auth", -2, kNoAuth, 0, 0, 0, &Auth});
  t.Add({"hello", -1, kNoAuth, 0, 0, 0, &Hello});
  t.Add({"select", 2, 0, 0, 0, 0, &Select});
  t.Add({"client", -2, 0, 0, 0, 0, &Client});
  t.Add({"command", -1, 0, 0, 0, 0, &Command});
  t.Add({"config", -2, 0, 0, 0, 0, &Config});
  t.Add({"info", -1, kJournaled, 0, 0, 0, &Info});
}

}  // namespace tollgate::server
