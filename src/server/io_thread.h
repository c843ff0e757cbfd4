// One I/O thread: an epoll loop that owns its connections, parses requests, runs commands and
// releases each reply only once the store has made everything it depends on durable.
//
// Hand-written on epoll rather than on an event library: the loop must interleave three wake-up
// sources (sockets, the store's durability notifications, and grants posted by other threads) and
// hold replies per connection in a durability FIFO; that is ~400 lines here, while a library would
// still need all of it written as callbacks.
#ifndef TOLLGATE_SERVER_IO_THREAD_H_
#define TOLLGATE_SERVER_IO_THREAD_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "protocol/resp_parser.h"
#include "server/command_table.h"
#include "server/services.h"
#include "tollgate/backend.h"

namespace tollgate::server {

class IoThread {
 public:
  // Takes ownership of listen_fd (a non-blocking listening socket, or -1 for none) and of
  // `backend`, this thread's own connection to a shared backend (null on the embedded store).
  IoThread(int index, Services& services, int listen_fd, protocol::ParserLimits limits,
           std::unique_ptr<Backend> backend = nullptr);
  ~IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  // Creates the epoll set and wake-up eventfd and starts the thread.
  [[nodiscard]] absl::Status Start();
  // Asks the loop to stop accepting, answer what it already read, flush, close its connections
  // and return. Does not wait; Join() does.
  void RequestStop();
  void Join();

  // Runs fn on this thread's loop soon. Thread-safe; may be called after the loop ended (fn is
  // then dropped).
  void Post(std::function<void()> fn);
  // Called by the store after each group commit (any thread): wakes the loop if it holds replies.
  void OnDurable();

 private:
  struct Conn;
  // A grant reply inside a reply buffer that may still be withdrawn (ReplyWithGrant).
  struct PendingGrant {
    std::string key;
    std::string lock_id;
    size_t offset;  // of the grant reply in its buffer
    size_t length;
  };
  struct HeldReply {
    uint64_t seq;  // durable sequence the reply waits for
    uint64_t conn_id;
    std::string bytes;
    std::vector<PendingGrant> grants;  // grant replies inside `bytes`, in order
  };

  void Loop();
  void Accept();
  void DrainWakeups();
  void RunPosted();
  void OnReadable(Conn& c);
  // Parses and runs buffered requests until the input is exhausted or the connection blocks or
  // closes.
  void Process(Conn& c);
  void Seal(Conn& c);
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
  void ReleaseAbandoned(const std::string& key, const std::string& lock_id);
  void OnWaiterDone(uint64_t conn_id, uint64_t generation, const std::string& key,
                    std::optional<LeaseGrant> grant);
  // Answers a blocked connection's waiter with an error reply instead (WaiterErrorCallback).
  void OnWaiterError(uint64_t conn_id, uint64_t generation, const absl::Status& status);
  // The connection still blocked by the Block call `generation`, now unblocked; null if it went
  // away or is no longer waiting for that answer.
  Conn* Unblock(uint64_t conn_id, uint64_t generation);
  // After a blocked connection's reply: runs its further buffered requests and flushes.
  void Resume(Conn& c);
  // Called by the thread about to sync (with the commit claimed): waits, briefly, until every other
  // I/O thread is idle or has finished the pass it was in, so their journaled requests ride along.
  void SettlePeers();
  void BeginStop();
  bool Drained() const;
  Conn* Find(uint64_t id);

  const int index_;
  std::unique_ptr<Backend> backend_;
  Services& services_;
  int listen_fd_;
  const protocol::ParserLimits limits_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;

  // Loop-thread state.
  absl::flat_hash_map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::deque<HeldReply> held_;  // sequences are non-decreasing
  std::vector<uint64_t> dirty_;
  uint64_t next_conn_id_;
  bool stopping_ = false;
  SteadyTime stop_deadline_{};

  std::atomic<bool> holds_replies_{false};  // held_ non-empty; read by the committer
  std::atomic<bool> stop_requested_{false};
  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;  // guarded by post_mu_
  bool loop_done_ = false;                     // guarded by post_mu_
};

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_IO_THREAD_H_
