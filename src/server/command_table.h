// The declarative command table: every command's name, arity, flags and handler in one place, so
// arity and authentication are checked once, before any handler runs (as valkey's server.c does).
#ifndef TOLLGATE_SERVER_COMMAND_TABLE_H_
#define TOLLGATE_SERVER_COMMAND_TABLE_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "protocol/reply_builder.h"
#include "server/services.h"
#include "tollgate/backend.h"

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

// What a handler may ask of the connection it runs on, beyond replying.
class ClientControl {
 public:
  virtual ~ClientControl() = default;
  // A callback that delivers a queued waiter's outcome to this connection (on its own thread) as
  // the reply to the command being executed.
  virtual GrantCallback WaiterCallback(std::string key) = 0;
  // Like WaiterCallback, but delivers an error reply (ReplyStatus) instead: for a waiter that
  // cannot be answered with a grant or null (its backend failed while it waited). For the same
  // Block as the WaiterCallback made before it; at most one of the two may be called.
  virtual std::function<void(absl::Status)> WaiterErrorCallback() = 0;
  // The command's reply will come later through the WaiterCallback; stop processing this
  // connection's further requests until then.
  virtual void Block(std::string key, uint64_t waiter_id) = 0;
  // Replies with LOCK.ACQUIRE's grant for `key`, which the connection may still withdraw: if the
  // client is gone before the reply could be handed to its socket (EOF read, or the connection
  // closed, while the reply waits for its fsync), the lease is released at once and the reply
  // becomes "not acquired". Every grant reply goes through here.
  virtual void ReplyWithGrant(const std::string& key, const LeaseGrant& grant) = 0;
};

struct CommandContext {
  Services& services;
  Session& session;
  protocol::ReplyBuilder& reply;
  ClientControl& client;
  // With --backend: this I/O thread's connection to the shared backend, which then holds all lease,
  // fence and bucket state. Null on the embedded store.
  Backend* backend = nullptr;
};

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
void RegisterLimitCommands(CommandTable& table);

// The table with every tollgate command.
const CommandTable& AllCommands();

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_COMMAND_TABLE_H_
