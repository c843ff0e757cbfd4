// The Redis backend's connections: a pipelined, non-blocking client for one standalone server or a
// Redis Cluster, driven by an EventLoop. Internal to the Redis backend (async_redis.h builds the
// AsyncBackend on it, redis_backend.cc the synchronous Backend on that).
//
// Why a raw non-blocking socket with hiredis' redisReader (parsing) rather than redisAsyncContext:
// the client must own exactly what pipelining needs — one output buffer written once per loop pass
// (EventLoop::AtEndOfPass), one FIFO of pending requests with a deadline each, a non-blocking
// connect, and a failure path that completes every pending request once and closes — and
// redisAsyncContext brings its own callback queue, frees itself from inside its callbacks on
// errors, connects with blocking name resolution and has no per-request deadline, so every one of
// those would be a workaround around it. Encoding RESP is a few lines; parsing is redisReader's.
//
// Per connection (one per node): requests are encoded into the output buffer as they are submitted
// and written in one batch at the end of the loop's pass (or as soon as the socket is writable
// again, after a partial write); replies are matched to requests in order. At most
// kMaxInFlight requests per connection: beyond it a request completes at once with Unavailable
// "backend pipeline full (4096 requests in flight): Redis host:port". Each request must be answered
// within the timeout (a timer watches the oldest); otherwise, or on an I/O error, end of stream or
// protocol error, the connection fails: every pending request completes with Unavailable naming the
// node and the cause, the socket is closed, and the next request reconnects (a non-blocking
// connect; a node whose connect failed, or that never answered, is retried only after a back-off
// of 50 ms doubling to 1 s, and requests meanwhile complete at once with Unavailable). A request
// that may have reached Redis is never sent again, with two exceptions where Redis refused to run
// it: NOSCRIPT (sent again once with EVAL, which also caches the script on that node) and cluster
// redirects (MOVED, ASK).
#ifndef TOLLGATE_BACKENDS_REDIS_CLIENT_H_
#define TOLLGATE_BACKENDS_REDIS_CLIENT_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/redis/scripts.h"
#include "tollgate/async_backend.h"
#include "tollgate/clock.h"

namespace tollgate::redis {

struct RedisUrl {
  std::string text;  // as given
  std::string host;
  int port = 6379;
  int db = 0;
};

// Parses "redis://host:port[/db]"; InvalidArgument naming the url otherwise.
absl::StatusOr<RedisUrl> ParseUrl(const std::string& url);

// Counters, for tests and diagnostics.
struct ClientStats {
  uint64_t commands = 0;  // commands encoded (EVALSHA, EVAL, ASKING, SELECT)
  uint64_t writes = 0;    // send() calls
  uint64_t connects = 0;  // connections opened on the loop (the one made at setup excluded)
};

class Client {
 public:
  static constexpr size_t kMaxInFlight = 4096;  // requests pending per connection
  static constexpr int kMaxRedirects = 5;       // per operation
  static constexpr size_t kMaxNodes = 1024;     // Redis Cluster's own recommended maximum

  // Called exactly once with the script's reply (never an error reply: those are statuses).
  using Done = absl::AnyInvocable<void(absl::StatusOr<Reply>)>;

  // Connects to the seed synchronously (bounded by `timeout`), refuses a server that may evict
  // keys, learns whether it is a Redis Cluster (and its slot map), SELECTs the url's db, and loads
  // every script there; the connection is kept for the loop. Does not touch `loop` (any thread may
  // call this). Errors as NewRedisBackend.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Client>> Connect(RedisUrl url,
                                                                       Duration timeout,
                                                                       EventLoop& loop);
  // Closes every connection; pending requests are dropped without their completions being called.
  // Call on the loop's thread (or while no thread runs the loop).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Runs `call` on the node that owns its keys' slot (following redirects). `done` runs on the
  // loop, possibly before Run returns (keys in different slots on a cluster: InvalidArgument; the
  // pipeline full or the node in its reconnect back-off: Unavailable). Call on the loop's thread.
  void Run(ScriptCall call, Done done);

  const ClientStats& stats() const { return stats_; }
  // Whether the server is a Redis Cluster (learnt at Connect).
  bool cluster() const { return cluster_; }
  // Weakened guarantees found at Connect (Backend::Warnings): the seed runs without AOF.
  const std::vector<std::string>& warnings() const { return warnings_; }
  Duration timeout() const { return timeout_; }

 private:
  struct Node;
  struct Op;
  struct Pending;

  Client(RedisUrl url, Duration timeout, EventLoop& loop);
  absl::Status Init();
  absl::Status CheckNoEviction(redisContext* c);
  void CheckPersistence(redisContext* c);
  absl::Status ClusterDbError() const;
  void ApplySlots(const redisReply* r, size_t from);
  std::optional<size_t> NodeAt(std::string_view host, int port);
  size_t Route(int slot) const;
  void ForgetSlotsOf(size_t node);
  std::string Where(const Node& n) const;
  SteadyTime Now();

  void Send(size_t node, std::unique_ptr<Op> op);
  void Encode(Node& n, const Op& op);
  absl::Status StartConnect(Node& n);
  bool ConnectNext(Node& n, std::string* error);
  void OnConnected(Node& n);
  void OnReady(Node& n, uint64_t generation, uint32_t events);
  void UpdateWatch(Node& n);
  void ScheduleFlush(Node& n);
  void Flush(Node& n);
  void Read(Node& n);
  void Dispatch(Node& n, Reply reply);
  void OnReply(Node& n, std::unique_ptr<Op> op, Reply reply);
  void ArmDeadline(Node& n);
  void OnDeadline(Node& n, uint64_t generation);
  void Fail(Node& n, std::string_view cause);
  void NoteFailure(Node& n, bool answered, std::string_view error);
  void Close(Node& n);

  const RedisUrl url_;
  const Duration timeout_;
  EventLoop& loop_;
  Clock* clock_ = nullptr;                    // loop_.clock(), fetched on the loop's thread
  std::vector<std::unique_ptr<Node>> nodes_;  // [0] = the seed; grows, never shrinks
  bool cluster_ = false;
  // On a cluster, each slot's owner as an index into nodes_ (-1 = unknown); empty otherwise.
  std::vector<int16_t> slot_node_;
  std::array<std::string, kCount> sha_;  // the same SHA1 on every node
  ClientStats stats_;
  std::vector<std::string> warnings_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for callbacks after destruction
};

}  // namespace tollgate::redis

#endif  // TOLLGATE_BACKENDS_REDIS_CLIENT_H_
