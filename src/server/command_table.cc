#include "server/command_table.h"

#include <algorithm>
#include <chrono>

#include "core/absl_compat.h"
#include "metrics/metrics.h"
#include "server/args.h"

namespace tollgate::server {

void CommandTable::Add(const CommandSpec& spec) {
  index_.emplace(std::string(spec.name), specs_.size());
  specs_.push_back(spec);
}

const CommandSpec* CommandTable::Find(std::string_view name) const {
  if (name.size() > 32) return nullptr;
  auto it = index_.find(AV(AsciiLower(name)));
  return it == index_.end() ? nullptr : &specs_[it->second];
}

namespace {

// Redis quotes at most this many bytes of each argument in an "unknown command" error.
std::string Excerpt(std::string_view s) {
  std::string out(s.substr(0, 128));
  for (char& c : out) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return out;
}

}  // namespace

void CommandTable::Dispatch(CommandContext& ctx, std::span<const std::string> args) const {
  const CommandSpec* spec = Find(args[0]);
  // Counted here only (INFO total_commands_processed sums these); label children cached by index.
  metrics::Metrics* m = ctx.services.metrics;
  const metrics::Metrics::CommandHandles* h =
      m == nullptr ? nullptr
                   : &m->command(spec == nullptr ? specs_.size()
                                                 : static_cast<size_t>(spec - specs_.data()));
  const auto started = h == nullptr ? std::chrono::steady_clock::time_point()
                                    : std::chrono::steady_clock::now();
  if (h != nullptr) h->calls->Increment();
  struct Observe {
    const metrics::Metrics::CommandHandles* h;
    std::chrono::steady_clock::time_point started;
    ~Observe() {
      if (h != nullptr) {
        h->duration->Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      }
    }
  } observe{h, started};
  const bool need_auth = !ctx.services.options.requirepass.empty() && !ctx.session.authenticated;
  if (spec == nullptr) {
    if (need_auth) {
      ctx.reply.Error("NOAUTH Authentication required.");
      return;
    }
    std::string msg = "ERR unknown command '" + Excerpt(args[0]) + "', with args beginning with:";
    for (size_t i = 1; i < args.size() && i < 4; ++i) msg += " '" + Excerpt(args[i]) + "'";
    ctx.reply.Error(msg);
    return;
  }
  if (need_auth && !(spec->flags & kNoAuth)) {
    ctx.reply.Error("NOAUTH Authentication required.");
    return;
  }
  const int argc = static_cast<int>(args.size());
  if ((spec->arity > 0 && argc != spec->arity) || (spec->arity < 0 && argc < -spec->arity)) {
    ctx.reply.Error("ERR wrong number of arguments for '" + std::string(spec->name) + "' command");
    return;
  }
  spec->handler(ctx, args);
  if ((spec->flags & kJournaled) && ctx.services.store != nullptr) {
    ctx.session.needs_seq = std::max(ctx.session.needs_seq, ctx.services.store->LastAppended());
  }
}

const CommandTable& AllCommands() {
  static const CommandTable* table = [] {
    auto* t = new CommandTable();
    RegisterConnectionCommands(*t);
    RegisterLeaseCommands(*t);
    RegisterMultiLockCommands(*t);
    RegisterSemaphoreCommands(*t);
    RegisterLimitCommands(*t);
    return t;
  }();
  return *table;
}

}  // namespace tollgate::server
