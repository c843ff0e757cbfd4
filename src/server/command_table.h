// The declarative command table: every command's name, arity, flags and handler in one place, so
// arity and authentication are checked once, before any handler runs (as valkey's server.c does).
#ifndef TOLLGATE_SERVER_COMMAND_TABLE_H_
#define TOLLGATE_SERVER_COMMAND_TABLE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "protocol/reply_builder.h"
#include "server/replies.h"
#include "server/services.h"
#include "server/state.h"

namespace tollgate::server {

// Per-connection state that commands read and change.
struct Session {
  uint64_t id = 0;
  bool authenticated = false;
  std::string name;  // CLIENT SETNAME
  int protocol = 2;  // 2 or 3 (HELLO); the connection keeps its ReplyBuilder in step
  bool close_after_reply = false;
  int auth_failures = 0;  // failed AUTH attempts on this connection
  // Journal sequence that must be durable before this connection's pending replies go out.
  uint64_t needs_seq = 0;
};

class DeferredReply;

// What a handler may ask of the connection it runs on, beyond replying.
class ClientControl {
 public:
  virtual ~ClientControl() = default;
  // The reply to the command being executed will be written by a completion, through the returned
  // object (at most one per command). The connection goes on running the commands it has read (up
  // to kMaxDeferredReplies unanswered), and their replies wait behind this one.
  virtual DeferredReply Defer() = 0;
  // The deferred reply of the command being executed answers a wait (`wait_ticket` from
  // State::Acquire, non-zero): no further command of this connection runs until it is written,
  // and if the client goes away (or the server stops) first, the wait is cancelled and answered
  // "not acquired". REQUIRES: Defer() was called for this command.
  virtual void BlockUntilReply(uint64_t wait_ticket) = 0;
  // Replies with LOCK.ACQUIRE's grant for `key`, which the connection may still withdraw: if the
  // client is gone before the reply could be handed to its socket (EOF read, or the connection
  // closed, while the reply waits for its fsync), the lease is released at once and the reply
  // becomes "not acquired". Every grant reply goes through here. With `times` (LOCK.ACQUIRE ...
  // WITHTIMES) the reply also carries them (ReplyGrant in replies.h).
  virtual void ReplyWithGrant(const std::string& key, const LeaseGrant& grant,
                              const std::optional<GrantTimes>& times) = 0;
  // Likewise for SEM.ACQUIRE's permit ([permit_id, slot, fence, ttl_ms]; withdrawn = released) and
  // LOCK.MACQUIRE's grant of `keys` (withdrawn = every key released).
  virtual void ReplyWithPermit(const std::string& key, const PermitGrant& grant) = 0;
  virtual void ReplyWithMultiGrant(const std::vector<std::string>& keys,
                                   const LeaseGrant& grant) = 0;
};

// Where a deferred reply goes: the I/O thread that owns the connection.
class DeferredReplyTarget {
 public:
  using Writer = absl::FunctionRef<void(protocol::ReplyBuilder&, ClientControl&)>;
  // Writes the reply `ticket` of connection `conn_id` with `write` (see DeferredReply::Finish).
  virtual void FinishDeferred(uint64_t conn_id, uint64_t ticket, Writer write) = 0;

 protected:
  ~DeferredReplyTarget() = default;
};

// The reply to one command, written later by a completion (ClientControl::Defer). Move-only; call
// Finish exactly once, on the connection's I/O thread.
class DeferredReply {
 public:
  DeferredReply() = default;
  DeferredReply(DeferredReplyTarget* target, uint64_t conn_id, uint64_t ticket)
      : target_(target), conn_id_(conn_id), ticket_(ticket) {}
  DeferredReply(DeferredReply&& o) noexcept
      : target_(std::exchange(o.target_, nullptr)), conn_id_(o.conn_id_), ticket_(o.ticket_) {}
  DeferredReply& operator=(DeferredReply&& o) noexcept {
    target_ = std::exchange(o.target_, nullptr);
    conn_id_ = o.conn_id_;
    ticket_ = o.ticket_;
    return *this;
  }
  DeferredReply(const DeferredReply&) = delete;
  DeferredReply& operator=(const DeferredReply&) = delete;

  // Writes the reply with `write`, in the connection's reply order (replies of commands received
  // after it wait for it). If the connection is gone, the reply is discarded and a grant written
  // through ClientControl::ReplyWithGrant is released at once.
  void Finish(DeferredReplyTarget::Writer write) {
    if (target_ != nullptr)
      std::exchange(target_, nullptr)->FinishDeferred(conn_id_, ticket_, write);
  }

 private:
  DeferredReplyTarget* target_ = nullptr;
  uint64_t conn_id_ = 0;
  uint64_t ticket_ = 0;
};

struct CommandContext {
  Services& services;
  Session& session;
  protocol::ReplyBuilder& reply;
  ClientControl& client;
  // This I/O thread's state: the embedded store or a shared backend (state.h).
  State& state;
};

// A completion that writes the reply of the command being executed: `write(reply, client, result)`
// runs when the state answers (at once on the embedded store, later on a shared backend), in the
// connection's reply order. R is absl::Status or absl::StatusOr<T>.
template <class R, class Write>
absl::AnyInvocable<void(R)> ReplyLater(CommandContext& ctx, Write write) {
  return [d = ctx.client.Defer(), write = std::move(write)](R result) mutable {
    d.Finish([&](protocol::ReplyBuilder& reply, ClientControl& client) {
      write(reply, client, result);
    });
  };
}

// Most replies one connection may have deferred and unanswered at once; beyond it the connection's
// further input waits (like a full output buffer) until replies come back.
inline constexpr size_t kMaxDeferredReplies = 1024;

// args[0] is the command name as the client sent it.
using Handler = void (*)(CommandContext& ctx, std::span<const std::string> args);

enum CommandFlags : uint32_t {
  kNoAuth = 1 << 0,    // allowed before authentication (AUTH, HELLO, QUIT)
  kWrite = 1 << 1,     // changes durable state
  kBlocking = 1 << 2,  // may block the connection (LOCK.ACQUIRE ... WAIT)
  // Reads or writes journaled state (leases, fences): its reply waits until everything journaled
  // so far is durable. Other replies (THROTTLE, PING) go out at once unless ordered behind one.
  kJournaled = 1 << 3,
};

struct CommandSpec {
  std::string_view name;  // canonical, lowercase
  int arity;              // > 0: exactly; < 0: at least -arity (name included)
  uint32_t flags;
  int first_key, last_key, key_step;  // as in Redis COMMAND output
  Handler handler;
};

class CommandTable {
 public:
  // Adds a command. REQUIRES: the name is new and lowercase.
  void Add(const CommandSpec& spec);
  // The command with this name (any case), or nullptr.
  const CommandSpec* Find(std::string_view name) const;
  const std::vector<CommandSpec>& all() const { return specs_; }

  // Validates arity and authentication, then runs the handler. Replies with the Redis-style error
  // for an unknown command, a wrong number of arguments, or a missing authentication.
  // REQUIRES: !args.empty().
  void Dispatch(CommandContext& ctx, std::span<const std::string> args) const;

 private:
  std::vector<CommandSpec> specs_;
  absl::flat_hash_map<std::string, size_t> index_;
};

// Families register their commands (connection_commands.cc, lease_commands.cc).
void RegisterConnectionCommands(CommandTable& table);
void RegisterLeaseCommands(CommandTable& table);
void RegisterMultiLockCommands(CommandTable& table);
void RegisterSemaphoreCommands(CommandTable& table);
void RegisterLimitCommands(CommandTable& table);

// The table with every tollgate command.
const CommandTable& AllCommands();

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_COMMAND_TABLE_H_
