// One I/O thread: an epoll loop that owns its connections, parses requests, runs commands and
// releases each reply only once the store has made everything it depends on durable. It is also the
// EventLoop of its State (state.h): a shared backend's sockets and timers live in this loop, and
// its batch of requests is written once per pass (AtEndOfPass), after every readable client was
// read.
//
// Replies keep request order per connection: a command whose reply a completion writes later
// (ClientControl::Defer) holds a slot in the connection's reply queue; replies of later commands
// wait behind it, and go out once every reply before them is written (and, on the embedded store,
// durable).
//
// Hand-written on epoll rather than on an event library: the loop must interleave four wake-up
// sources (client sockets, backend sockets and timers, the store's durability notifications, and
// answers posted by other threads) and hold replies per connection in order; a library would still
// need all of it written as callbacks.
#ifndef TOLLGATE_SERVER_IO_THREAD_H_
#define TOLLGATE_SERVER_IO_THREAD_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "backends/async/timer_queue.h"
#include "protocol/resp_parser.h"
#include "server/command_table.h"
#include "server/services.h"
#include "server/state.h"
#include "tollgate/async_backend.h"

namespace tollgate::server {

// A grant reply inside a reply buffer that may still be withdrawn (ReplyWithGrant).
struct WithdrawableGrant {
  enum class Kind { kLease, kPermit, kMultiLease };
  Kind kind = Kind::kLease;
  std::string key;                // kLease, kPermit
  std::vector<std::string> keys;  // kMultiLease
  std::string lock_id;            // or the permit id
  size_t offset;                  // of the grant reply in its buffer
  size_t length;
};

class IoThread final : public EventLoop, public DeferredReplyTarget {
 public:
  // Makes this thread's State, driven by this thread's loop (called by Start).
  using StateFactory = std::function<absl::StatusOr<std::unique_ptr<State>>(EventLoop&)>;

  // Takes ownership of listen_fd (a non-blocking listening socket, or -1 for none).
  IoThread(int index, Services& services, int listen_fd, protocol::ParserLimits limits,
           StateFactory make_state);
  ~IoThread() override;
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  // Creates the epoll set and wake-up eventfd, makes the State and starts the thread. The State's
  // error if it cannot be made (e.g. its backend is unreachable).
  [[nodiscard]] absl::Status Start();
  // Asks the loop to stop accepting, answer what it already read, flush, close its connections
  // and return. Does not wait; Join() does.
  void RequestStop();
  void Join();

  // Called by the store after each group commit (any thread): wakes the loop if it holds replies.
  void OnDurable();

  // EventLoop. Post is thread-safe and may be called after the loop ended (fn is then dropped).
  void Watch(int fd, uint32_t interest, absl::AnyInvocable<void(uint32_t)> on_ready) override;
  void Unwatch(int fd) override;
  uint64_t RunAt(SteadyTime at, absl::AnyInvocable<void()> fn) override;
  void CancelTimer(uint64_t id) override;
  void AtEndOfPass(absl::AnyInvocable<void()> fn) override;
  void Post(absl::AnyInvocable<void()> fn) override;
  Clock* clock() override { return services_.clock; }
  // Runs fn(state) on this thread's loop, with the State its RESP commands use: how a side channel
  // (the HTTP API, src/http) reaches the same state. Thread-safe, as Post; dropped (fn destroyed
  // without running) if the loop has stopped.
  void PostToState(absl::AnyInvocable<void(State&)> fn);

  // DeferredReplyTarget.
  void FinishDeferred(uint64_t conn_id, uint64_t ticket, Writer write) override;

 private:
  struct Conn;
  using PendingGrant = WithdrawableGrant;
  // A reply in a connection's queue behind a deferred one (or the deferred one itself).
  struct Slot {
    uint64_t ticket = 0;  // of the deferred reply; 0 for replies written at once
    bool ready = false;
    uint64_t seq = 0;  // durable sequence the reply waits for
    int protocol = 2;  // the encoding in effect when the command ran (a later HELLO may switch it)
    std::string bytes;
    std::vector<PendingGrant> grants;
  };
  struct HeldReply {
    uint64_t seq;  // durable sequence the reply waits for
    uint64_t conn_id;
    std::string bytes;
    std::vector<PendingGrant> grants;  // grant replies inside `bytes`, in order
  };

  void Loop();
  // Runs timers that are due; returns the epoll timeout until the next one (ms, -1 for none).
  int RunTimers();
  void RunEndOfPass();
  void Accept();
  void DrainWakeups();
  void RunPosted();
  void OnReadable(Conn& c);
  // Parses and runs buffered requests until the input is exhausted or the connection blocks or
  // closes.
  void Process(Conn& c);
  // Moves finished replies, in order, toward the socket: to `out`, or to held_ until durable.
  void Seal(Conn& c);
  // Queues the replies written so far (if any) as a ready slot behind the deferred ones.
  static void BuildingToSlot(Conn& c);
  // Seal for one reply (or run of replies) that waits for durable sequence `seq`.
  void SealBytes(Conn& c, std::string& bytes, std::vector<PendingGrant>& grants, uint64_t seq);
  void ReleaseDurable();
  void Flush(Conn& c);
  void FlushDirty();
  void MarkDirty(Conn& c);
  void UpdateInterest(Conn& c);
  // Closes and forgets the connection: cancels its wait, withdraws its grants still waiting for
  // their fsync and, if `peer_reset` (the peer reset the connection, so the last bytes sent to it
  // were not read), the grant that was its last reply.
  void Close(Conn& c, bool peer_reset = false);
  // Moves replies (and their grants) to the connection's output, noting whether the last of them
  // is a grant.
  static void AppendOut(Conn& c, std::string& bytes, std::vector<PendingGrant>& grants);
  // Reply bytes this connection holds: unsent output, replies being built and replies waiting
  // for their fsync. Input is not executed while this is at kMaxOutputBacklog or above.
  static size_t PendingOutput(const Conn& c);
  // After Process: a connection whose peer sent EOF closes once nothing more can run.
  static void AfterProcess(Conn& c);
  // The client is gone: releases the leases of the grant replies in `bytes` and turns each reply
  // into "not acquired" (`protocol` 2 or 3). Returns how many grants were withdrawn.
  size_t WithdrawGrants(std::string& bytes, std::vector<PendingGrant>& grants, int protocol);
  // Withdraws the grants of this connection's replies that still wait for their fsync.
  void WithdrawHeldGrants(Conn& c);
  // At the peer's EOF: withdraws the grant that ends the connection's output if it has not been
  // sent completely (the client hung up before it could read it).
  void WithdrawUnsentTailGrant(Conn& c);
  // Releases a lease nobody will learn about (its client is gone) and counts it in
  // grants_withdrawn.
  void ReleaseAbandoned(const PendingGrant& g);
  // A blocked connection's wait is abandoned (EOF, stop): cancels it and answers "not acquired".
  void AbandonWait(Conn& c);
  // Runs Resume for the connections whose deferred replies were written since the last call.
  void ResumeFinished();
  // After a deferred reply: seals it, runs the connection's further buffered requests and flushes.
  void Resume(Conn& c);
  // Called by the thread about to sync (with the commit claimed): waits, briefly, until every other
  // I/O thread is idle or has finished the pass it was in, so their journaled requests ride along.
  void SettlePeers();
  void BeginStop();
  bool Drained() const;
  Conn* Find(uint64_t id);

  const int index_;
  Services& services_;
  StateFactory make_state_;
  int listen_fd_;
  const protocol::ParserLimits limits_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;

  // Loop-thread state.
  std::unique_ptr<State> state_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Conn>> conns_;
  using FdHandler = absl::AnyInvocable<void(uint32_t)>;
  absl::flat_hash_map<int, std::shared_ptr<FdHandler>> watches_;  // backend fds
  TimerQueue timers_;
  std::vector<absl::AnyInvocable<void()>> end_of_pass_;
  std::deque<HeldReply> held_;  // sequences are non-decreasing
  std::vector<uint64_t> dirty_;
  std::vector<uint64_t> resume_;  // connections with newly written deferred replies
  uint64_t next_conn_id_;
  bool stopping_ = false;
  SteadyTime stop_deadline_{};

  std::atomic<bool> holds_replies_{false};  // held_ non-empty; read by the committer
  std::atomic<bool> stop_requested_{false};
  std::mutex post_mu_;
  std::vector<absl::AnyInvocable<void()>> posted_;  // guarded by post_mu_
  bool loop_done_ = false;                          // guarded by post_mu_
};

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_IO_THREAD_H_
