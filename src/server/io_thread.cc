#include "server/io_thread.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "protocol/reply_builder.h"
#include "server/replies.h"
#include "spdlog/spdlog.h"

namespace tollgate::server {
namespace {

constexpr uint64_t kListenerTag = 1;
constexpr uint64_t kWakeTag = 2;
// Backend sockets (EventLoop::Watch) are tagged with this bit and their fd; connection ids never
// reach it.
constexpr uint64_t kFdTag = uint64_t{1} << 63;
constexpr uint64_t kFirstConnId = 16;
constexpr size_t kReadChunk = 64 * 1024;
// Stop reading from a connection while this much of its input waits unprocessed (it is blocked on
// a lock, or its output is full).
constexpr size_t kMaxInputBacklog = 1 << 20;
// Stop executing a connection's input while this much of its output waits (unsent, or held for
// its fsync), and resume once it is below half of it. One reply may overshoot it (a FENCE.GET of
// an 8 MiB value), so a slow reader holds at most about kMaxOutputBacklog + 8 MiB of replies plus
// kMaxInputBacklog + 4 reads of input (README, Limits).
constexpr size_t kMaxOutputBacklog = 4 << 20;
constexpr size_t kResumeOutputBelow = kMaxOutputBacklog / 2;
// Buffers above this size are freed, not just emptied, once they drain, so a connection that once
// sent or received a lot does not keep that memory while idle.
constexpr size_t kKeepBufferBytes = 2 * kReadChunk;
// Before AUTH (with --requirepass) a connection may only send small requests, as Redis does since
// CVE-2021-32675: enough for AUTH and HELLO 3 AUTH user pass SETNAME name. A larger request is a
// protocol error: error reply, then close.
constexpr protocol::ParserLimits kPreAuthLimits{.max_args = 10,
                                                .max_bulk_len = 16 * 1024,
                                                .max_inline_len = 16 * 1024,
                                                .max_request_bytes = 64 * 1024};

void ReleaseIfLarge(std::string& buf) {
  if (buf.empty() && buf.capacity() > kKeepBufferBytes) std::string().swap(buf);
}
constexpr auto kStopGrace = std::chrono::seconds(10);
// How long a thread about to sync waits for other I/O threads to finish their passes, so one sync
// covers them all (see SettlePeers).
constexpr auto kJoinPassWait = std::chrono::microseconds(200);

}  // namespace

struct IoThread::Conn final : public ClientControl {
  Conn(IoThread* t, uint64_t id, int fd, protocol::ParserLimits limits)
      : thread(t), id(id), fd(fd), parser(limits), reply(&building) {
    session.id = id;
  }

  DeferredReply Defer() override {
    open_ticket = next_ticket++;
    open_done = false;
    return DeferredReply(thread, id, open_ticket);
  }

  void BlockUntilReply(uint64_t ticket) override { open_wait = ticket; }

  void ReplyWithGrant(const std::string& key, const LeaseGrant& g,
                      const std::optional<GrantTimes>& times) override {
    const size_t start = building.size();
    ReplyGrant(reply, g, times);
    building_grants.push_back(
        {PendingGrant::Kind::kLease, key, {}, g.lock_id, start, building.size() - start});
  }
  void ReplyWithPermit(const std::string& key, const PermitGrant& g) override {
    const size_t start = building.size();
    server::ReplyPermit(reply, g);
    building_grants.push_back(
        {PendingGrant::Kind::kPermit, key, {}, g.permit_id, start, building.size() - start});
  }
  void ReplyWithMultiGrant(const std::vector<std::string>& keys, const LeaseGrant& g) override {
    const size_t start = building.size();
    ReplyGrant(reply, g);
    building_grants.push_back(
        {PendingGrant::Kind::kMultiLease, {}, keys, g.lock_id, start, building.size() - start});
  }

  IoThread* thread;
  const uint64_t id;
  const int fd;
  std::string in;
  size_t in_off = 0;
  protocol::RequestParser parser;
  std::string building;                       // replies produced since the last Seal
  std::vector<PendingGrant> building_grants;  // grant replies inside `building`
  protocol::ReplyBuilder reply;
  std::string out;  // replies released for writing
  size_t out_off = 0;
  size_t held = 0;         // this connection's entries in held_
  size_t held_bytes = 0;   // their bytes
  size_t held_grants = 0;  // their withdrawable grants
  Session session;
  // Replies behind (and including) deferred ones not yet written, in request order.
  std::deque<Slot> slots;
  size_t slot_bytes = 0;  // bytes in `slots`
  // Dispatch bookkeeping: the ticket of the command being executed if it called Defer (0 if not),
  // whether its reply was already written (inline), and the wait it blocks on (BlockUntilReply).
  uint64_t next_ticket = 1;
  uint64_t open_ticket = 0;
  bool open_done = false;
  uint64_t open_wait = 0;
  bool blocked = false;        // waiting for the reply to wait_ticket's command; input not executed
  uint64_t wait_ticket = 0;    // State::Acquire's ticket, to cancel the wait
  uint64_t blocked_reply = 0;  // the deferred reply that unblocks
  bool resume_queued = false;  // in resume_
  bool closing = false;        // process no more input; close once everything is written
  bool peer_eof = false;       // the peer sent EOF: run what it sent, then close
  bool output_paused = false;  // input waits because PendingOutput reached kMaxOutputBacklog
  // The last reply moved to `out`, if it was a grant (offset and length in `out`): a reset of
  // the connection proves it was not read (see Close), and an EOF read before it was sent means
  // nobody will read it (see WithdrawUnsentTailGrant).
  std::optional<PendingGrant> tail_grant;
  bool dirty = false;
  uint32_t events = 0;
};

IoThread::IoThread(int index, Services& services, int listen_fd, protocol::ParserLimits limits,
                   StateFactory make_state)
    : index_(index),
      services_(services),
      make_state_(std::move(make_state)),
      listen_fd_(listen_fd),
      limits_(limits),
      next_conn_id_(kFirstConnId + static_cast<uint64_t>(index)) {}

IoThread::~IoThread() {
  Join();
  state_.reset();  // may Unwatch its fds and cancel timers: before anything else goes
  for (auto& [id, c] : conns_) ::close(c->fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

absl::Status IoThread::Start() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return absl::InternalError(std::string("epoll/eventfd: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  if (listen_fd_ >= 0) {
    ev.data.u64 = kListenerTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  }
  absl::StatusOr<std::unique_ptr<State>> state = make_state_(*this);
  if (!state.ok()) return state.status();
  state_ = std::move(*state);
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void IoThread::RequestStop() {
  stop_requested_.store(true);
  Post([] {});
}

void IoThread::Join() {
  if (thread_.joinable()) thread_.join();
}

void IoThread::Post(absl::AnyInvocable<void()> fn) {
  {
    std::lock_guard<std::mutex> l(post_mu_);
    if (loop_done_) return;
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t r = ::write(wake_fd_, &one, sizeof one);
  (void)r;  // EAGAIN only if the counter is saturated, which still wakes the loop
}

void IoThread::OnDurable() {
  if (!holds_replies_.load()) return;
  uint64_t one = 1;
  ssize_t r = ::write(wake_fd_, &one, sizeof one);
  (void)r;
}

void IoThread::Watch(int fd, uint32_t interest, absl::AnyInvocable<void(uint32_t)> on_ready) {
  epoll_event ev{};
  if (interest & kReadable) ev.events |= EPOLLIN;
  if (interest & kWritable) ev.events |= EPOLLOUT;
  ev.data.u64 = kFdTag | static_cast<uint64_t>(fd);
  auto it = watches_.find(fd);
  if (it == watches_.end()) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    watches_.emplace(fd, std::make_shared<FdHandler>(std::move(on_ready)));
  } else {
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
    it->second = std::make_shared<FdHandler>(std::move(on_ready));
  }
}

void IoThread::Unwatch(int fd) {
  if (watches_.erase(fd) > 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

uint64_t IoThread::RunAt(SteadyTime at, absl::AnyInvocable<void()> fn) {
  return timers_.Add(at, std::move(fn));
}

void IoThread::CancelTimer(uint64_t id) { timers_.Cancel(id); }

void IoThread::AtEndOfPass(absl::AnyInvocable<void()> fn) { end_of_pass_.push_back(std::move(fn)); }

int IoThread::RunTimers() { return timers_.RunDue(services_.clock); }

void IoThread::RunEndOfPass() {
  while (!end_of_pass_.empty()) {
    std::vector<absl::AnyInvocable<void()>> fns;
    fns.swap(end_of_pass_);
    for (auto& fn : fns) fn();
    break;  // callbacks queued by these run at the end of the next pass
  }
}

void IoThread::SettlePeers() {
  const int n = services_.io_threads;
  if (n <= 1) return;
  absl::InlinedVector<uint64_t, 16> seen(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) seen[i] = services_.pass_state[i].passes.load();
  const auto until = std::chrono::steady_clock::now() + kJoinPassWait;
  for (;;) {
    bool settled = true;
    for (int i = 0; i < n && settled; ++i) {
      if (i == index_) continue;
      const auto& p = services_.pass_state[i];
      settled = p.idle.load() || p.passes.load() != seen[i];
    }
    if (settled || std::chrono::steady_clock::now() >= until) return;
    std::this_thread::yield();
  }
}

IoThread::Conn* IoThread::Find(uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second.get();
}

void IoThread::Loop() {
  epoll_event events[256];
  for (;;) {
    if (stop_requested_.load() && !stopping_) BeginStop();
    if (stopping_ && (Drained() || services_.clock->SteadyNow() >= stop_deadline_)) break;
    int timeout_ms = RunTimers();
    if (!end_of_pass_.empty() || !resume_.empty()) timeout_ms = 0;
    if (stopping_ && (timeout_ms < 0 || timeout_ms > 10)) timeout_ms = 10;
    services_.pass_state[index_].idle.store(true);
    int n = epoll_wait(epoll_fd_, events, 256, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("io thread {}: epoll_wait: {}", index_, std::strerror(errno));
      break;
    }
    services_.pass_state[index_].idle.store(false);
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag & kFdTag) {
        auto it = watches_.find(static_cast<int>(tag & ~kFdTag));
        if (it == watches_.end()) continue;
        std::shared_ptr<FdHandler> h = it->second;  // survives an Unwatch from inside the callback
        uint32_t ev = 0;
        if (events[i].events & EPOLLIN) ev |= kReadable;
        if (events[i].events & EPOLLOUT) ev |= kWritable;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) ev |= kError | kReadable;
        (*h)(ev);
      } else if (tag == kListenerTag) {
        Accept();
      } else if (tag == kWakeTag) {
        DrainWakeups();
        RunPosted();
      } else if (Conn* c = Find(tag)) {
        if (events[i].events & EPOLLERR) {
          // A reset: the peer discarded data we sent (or aborted).
          Close(*c, /*peer_reset=*/true);
          continue;
        }
        if (c->closing && (events[i].events & EPOLLHUP)) {
          Close(*c);  // the peer is gone and we read nothing more from it
          continue;
        }
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable(*c);
        if ((c = Find(tag)) != nullptr && (events[i].events & EPOLLOUT)) MarkDirty(*c);
      }
    }
    RunTimers();
    ResumeFinished();
    RunEndOfPass();    // a shared backend writes this pass's batch here
    ResumeFinished();  // replies that failed at once while the batch was written
    ReleaseDurable();
    FlushDirty();
    services_.pass_state[index_].passes.fetch_add(1);
    if (!held_.empty()) {
      // One sync for everything this pass journaled (Redis syncs once per loop pass too), then
      // answer at once.
      services_.store->CommitPending([this] { SettlePeers(); });
      ReleaseDurable();
      FlushDirty();
    }
  }
  {
    std::lock_guard<std::mutex> l(post_mu_);
    loop_done_ = true;
    posted_.clear();
  }
  std::vector<uint64_t> ids;
  for (auto& [id, c] : conns_) ids.push_back(id);
  for (uint64_t id : ids) {
    if (Conn* c = Find(id)) Close(*c);
  }
}

void IoThread::DrainWakeups() {
  uint64_t v;
  while (::read(wake_fd_, &v, sizeof v) > 0) {
  }
}

void IoThread::RunPosted() {
  std::vector<absl::AnyInvocable<void()>> fns;
  {
    std::lock_guard<std::mutex> l(post_mu_);
    fns.swap(posted_);
  }
  for (auto& fn : fns) fn();
}

void IoThread::Accept() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::warn("io thread {}: accept: {}", index_, std::strerror(errno));
      }
      return;
    }
    services_.stats.connections_received.fetch_add(1, std::memory_order_relaxed);
    if (services_.stats.connected_clients.load() >= services_.options.max_clients) {
      static constexpr char kMsg[] = "-ERR max number of clients reached\r\n";
      ssize_t r = ::send(fd, kMsg, sizeof kMsg - 1, MSG_NOSIGNAL);
      (void)r;
      ::close(fd);
      services_.stats.connections_rejected.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const uint64_t id = next_conn_id_;
    // Ids stay unique across threads: thread i hands out kFirstConnId + i + k * io_threads.
    next_conn_id_ += static_cast<uint64_t>(services_.io_threads);
    const bool open = services_.options.requirepass.empty();
    auto conn = std::make_unique<Conn>(this, id, fd, open ? limits_ : kPreAuthLimits);
    conn->session.authenticated = open;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      ::close(fd);
      continue;
    }
    conn->events = EPOLLIN;
    services_.stats.connected_clients.fetch_add(1, std::memory_order_relaxed);
    conns_.emplace(id, std::move(conn));
  }
}

void IoThread::OnReadable(Conn& c) {
  static thread_local char buf[kReadChunk];
  bool eof = false;
  for (int rounds = 0; rounds < 4; ++rounds) {  // bounded, for fairness between connections
    ssize_t n = ::read(c.fd, buf, sizeof buf);
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof buf || c.in.size() - c.in_off > kMaxInputBacklog) break;
      continue;
    }
    if (n == 0) {
      eof = true;
    } else if (errno == EINTR) {
      continue;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Close(c, /*peer_reset=*/errno == ECONNRESET);
    }
    break;
  }
  if (eof && c.in_off == c.in.size() && !c.blocked && c.held == 0 && c.out.empty() &&
      c.slots.empty()) {
    return Close(c);
  }
  // The peer sent everything it will send: run it and answer, then close. A grant made from here
  // on, or still waiting for its fsync, is withdrawn (see ClientControl::ReplyWithGrant).
  if (eof) c.peer_eof = true;
  Process(c);
  if (eof && c.blocked) {
    c.closing = true;  // the wait is abandoned: "not acquired"; the rest of the input is dropped
    AbandonWait(c);
  }
  Seal(c);
  if (eof) {
    WithdrawHeldGrants(c);
    WithdrawUnsentTailGrant(c);
  }
  MarkDirty(c);
}

void IoThread::Process(Conn& c) {
  const CommandTable& table = AllCommands();
  c.output_paused = false;
  while (!c.blocked && !c.closing && c.in_off < c.in.size()) {
    if (PendingOutput(c) >= kMaxOutputBacklog) {
      c.output_paused = true;  // Flush resumes once the client has read enough
      break;
    }
    if (c.slots.size() >= kMaxDeferredReplies) {
      c.output_paused = true;  // FinishDeferred resumes once replies come back
      break;
    }
    size_t used = 0;
    auto r = c.parser.Parse(std::string_view(c.in).substr(c.in_off), &used);
    c.in_off += used;
    if (r == protocol::RequestParser::Result::kNeedMore) break;
    if (r == protocol::RequestParser::Result::kError) {
      services_.stats.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      if (c.session.authenticated) {
        c.reply.Error(c.parser.error());
      } else {
        c.reply.Error(absl::StrCat(c.parser.error(), " (before AUTH: at most ",
                                   kPreAuthLimits.max_args, " arguments, ",
                                   kPreAuthLimits.max_bulk_len, " bytes per argument, ",
                                   kPreAuthLimits.max_request_bytes, " bytes per request)"));
      }
      c.closing = true;
      break;
    }
    const bool was_authenticated = c.session.authenticated;
    CommandContext ctx{services_, c.session, c.reply, c, *state_};
    c.open_ticket = 0;
    c.open_wait = 0;
    table.Dispatch(ctx, c.parser.args());
    if (c.open_ticket != 0 && !c.open_done) {
      // The reply comes later: what was written so far goes before it, what follows after it.
      BuildingToSlot(c);
      c.slots.push_back({c.open_ticket, false, 0, c.reply.protocol(), {}, {}});
      if (c.open_wait != 0) {
        c.blocked = true;
        c.wait_ticket = c.open_wait;
        c.blocked_reply = c.open_ticket;
        services_.stats.blocked_clients.fetch_add(1, std::memory_order_relaxed);
      }
    }
    c.open_ticket = 0;
    if (!was_authenticated && c.session.authenticated) c.parser.set_limits(limits_);
    if (c.session.close_after_reply) c.closing = true;
  }
  if (c.in_off == c.in.size()) {
    c.in.clear();
    c.in_off = 0;
    ReleaseIfLarge(c.in);
  } else if (c.in_off > kReadChunk) {
    c.in.erase(0, c.in_off);
    c.in_off = 0;
  }
  AfterProcess(c);
}

size_t IoThread::PendingOutput(const Conn& c) {
  return (c.out.size() - c.out_off) + c.building.size() + c.held_bytes + c.slot_bytes;
}

void IoThread::AfterProcess(Conn& c) {
  if (c.peer_eof && !c.blocked && !c.output_paused) c.closing = true;
}

void IoThread::Seal(Conn& c) {
  if (c.slots.empty()) {
    if (!c.building.empty()) SealBytes(c, c.building, c.building_grants, c.session.needs_seq);
    c.building.clear();
    c.building_grants.clear();
    return;
  }
  BuildingToSlot(c);
  while (!c.slots.empty() && c.slots.front().ready) {
    Slot slot = std::move(c.slots.front());
    c.slots.pop_front();
    c.slot_bytes -= slot.bytes.size();
    SealBytes(c, slot.bytes, slot.grants, slot.seq);
  }
}

void IoThread::BuildingToSlot(Conn& c) {
  if (c.building.empty()) return;
  c.slot_bytes += c.building.size();
  c.slots.push_back({0, true, c.session.needs_seq, c.reply.protocol(), std::move(c.building),
                     std::move(c.building_grants)});
  c.building.clear();
  c.building_grants.clear();
}

void IoThread::SealBytes(Conn& c, std::string& bytes, std::vector<PendingGrant>& grants,
                         uint64_t seq) {
  if (bytes.empty()) return;
  // A grant made after the peer's EOF was read goes to nobody.
  if (c.peer_eof && !grants.empty()) WithdrawGrants(bytes, grants, c.reply.protocol());
  if (c.held == 0 && (services_.store == nullptr || seq <= services_.store->LastDurable())) {
    AppendOut(c, bytes, grants);
  } else {
    // Announce before checking durability again in ReleaseDurable, so that either this thread
    // sees the commit or the committer sees the flag (both sequentially consistent).
    holds_replies_.store(true);
    c.held_bytes += bytes.size();
    c.held_grants += grants.size();
    held_.push_back({seq, c.id, std::move(bytes), std::move(grants)});
    ++c.held;
  }
  bytes.clear();
  grants.clear();
}

void IoThread::AppendOut(Conn& c, std::string& bytes, std::vector<PendingGrant>& grants) {
  if (bytes.empty()) return;
  if (!grants.empty() && grants.back().offset + grants.back().length == bytes.size()) {
    PendingGrant g = std::move(grants.back());
    g.offset += c.out.size();  // where it will stand in `out`
    c.tail_grant = std::move(g);
  } else {
    c.tail_grant.reset();
  }
  grants.clear();
  if (c.out.empty()) {
    c.out.swap(bytes);
  } else {
    c.out.append(bytes);
  }
}

size_t IoThread::WithdrawGrants(std::string& bytes, std::vector<PendingGrant>& grants,
                                int protocol) {
  std::string not_acquired;
  protocol::ReplyBuilder(&not_acquired, protocol).NullArray();
  // Back to front, so the offsets of the grants not yet replaced stay valid.
  for (auto g = grants.rbegin(); g != grants.rend(); ++g) {
    ReleaseAbandoned(*g);
    bytes.replace(g->offset, g->length, not_acquired);
  }
  const size_t n = grants.size();
  grants.clear();
  return n;
}

void IoThread::WithdrawHeldGrants(Conn& c) {
  if (c.held_grants == 0) return;
  for (HeldReply& h : held_) {
    if (h.conn_id != c.id || h.grants.empty()) continue;
    const size_t before = h.bytes.size();
    c.held_grants -= WithdrawGrants(h.bytes, h.grants, c.reply.protocol());
    c.held_bytes = c.held_bytes - before + h.bytes.size();
  }
}

void IoThread::WithdrawUnsentTailGrant(Conn& c) {
  // The grant is the end of `out`, so unsent bytes mean its last byte at least was not sent.
  if (!c.tail_grant || c.out_off == c.out.size()) return;
  const PendingGrant& g = *c.tail_grant;
  ReleaseAbandoned(g);
  if (c.out_off <= g.offset) {  // nothing of it sent yet: answer "not acquired" instead
    c.out.resize(g.offset);
    protocol::ReplyBuilder(&c.out, c.reply.protocol()).NullArray();
  }  // else partly sent: the client can never read it whole
  c.tail_grant.reset();
}

void IoThread::PostToState(absl::AnyInvocable<void(State&)> fn) {
  Post([this, fn = std::move(fn)]() mutable {
    if (state_ != nullptr) fn(*state_);
  });
}

void IoThread::ReleaseAbandoned(const PendingGrant& g) {
  services_.stats.grants_withdrawn.fetch_add(1, std::memory_order_relaxed);
  auto warn = [index = index_](const absl::Status& st) {
    if (!st.ok() && st.code() != absl::StatusCode::kFailedPrecondition) {
      spdlog::warn("io thread {}: releasing an abandoned grant: {}", index,
                   std::string(st.message()));
    }
  };
  switch (g.kind) {
    case PendingGrant::Kind::kLease:
      return state_->Release(g.key, g.lock_id, warn);
    case PendingGrant::Kind::kPermit:
      return state_->SemRelease(g.key, g.lock_id, warn);
    case PendingGrant::Kind::kMultiLease:
      return state_->MultiRelease(g.keys, g.lock_id,
                                  [warn](absl::StatusOr<size_t> n) { warn(n.status()); });
  }
}

void IoThread::ReleaseDurable() {
  if (held_.empty()) return;
  const uint64_t durable = services_.store->LastDurable();
  while (!held_.empty() && held_.front().seq <= durable) {
    HeldReply& h = held_.front();
    if (Conn* c = Find(h.conn_id)) {
      c->held_bytes -= h.bytes.size();
      c->held_grants -= h.grants.size();
      AppendOut(*c, h.bytes, h.grants);
      --c->held;
      MarkDirty(*c);
    }
    held_.pop_front();
  }
  if (held_.empty()) holds_replies_.store(false);
}

void IoThread::MarkDirty(Conn& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_.push_back(c.id);
}

void IoThread::FlushDirty() {
  std::vector<uint64_t> ids;
  ids.swap(dirty_);
  for (uint64_t id : ids) {
    if (Conn* c = Find(id)) {
      c->dirty = false;
      Flush(*c);
    }
  }
}

void IoThread::Flush(Conn& c) {
  for (;;) {
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return Close(c, /*peer_reset=*/true);  // peer gone: what we sent last was not read
    }
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
      ReleaseIfLarge(c.out);
    }
    // Input that waited behind a full output runs again once the client has read enough.
    if (!c.output_paused || c.blocked || PendingOutput(c) >= kResumeOutputBelow) break;
    Process(c);
    Seal(c);
    if (c.out_off == c.out.size()) break;  // nothing new to send yet (held for its fsync)
  }
  if (c.closing && c.out.empty() && c.held == 0 && !c.blocked && c.slots.empty()) {
    return Close(c);
  }
  UpdateInterest(c);
}

void IoThread::UpdateInterest(Conn& c) {
  uint32_t want = 0;
  const bool backlog = c.in.size() - c.in_off > kMaxInputBacklog || c.output_paused ||
                       PendingOutput(c) > kMaxOutputBacklog;
  if (!c.closing && !stopping_ && !backlog) want |= EPOLLIN;
  if (!c.out.empty()) want |= EPOLLOUT;
  if (want == c.events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = c.id;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  c.events = want;
}

void IoThread::Close(Conn& c, bool peer_reset) {
  WithdrawHeldGrants(c);  // their replies will never be sent
  if (peer_reset && c.tail_grant) {
    // The peer reset the connection, so the last reply we sent was not (completely) read: if it
    // was a grant, its client never learned of the lease.
    ReleaseAbandoned(*c.tail_grant);
  }
  if (c.blocked) {
    // No answer comes after this; a grant obtained meanwhile is released by the State.
    state_->CancelWait(c.wait_ticket);
    services_.stats.blocked_clients.fetch_sub(1, std::memory_order_relaxed);
  }
  // Deferred replies still pending find the connection gone (FinishDeferred) and release their
  // grants.
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  services_.stats.connected_clients.fetch_sub(1, std::memory_order_relaxed);
  conns_.erase(c.id);  // destroys c
}

namespace {

// Where a deferred reply goes when its connection is gone: nowhere, except that a grant is
// released at once.
class GoneClient final : public ClientControl {
 public:
  using Release = absl::FunctionRef<void(const WithdrawableGrant&)>;
  explicit GoneClient(Release release) : release_(release) {}
  DeferredReply Defer() override { return {}; }
  void BlockUntilReply(uint64_t) override {}
  void ReplyWithGrant(const std::string& key, const LeaseGrant& g,
                      const std::optional<GrantTimes>&) override {
    release_({WithdrawableGrant::Kind::kLease, key, {}, g.lock_id, 0, 0});
  }
  void ReplyWithPermit(const std::string& key, const PermitGrant& g) override {
    release_({WithdrawableGrant::Kind::kPermit, key, {}, g.permit_id, 0, 0});
  }
  void ReplyWithMultiGrant(const std::vector<std::string>& keys, const LeaseGrant& g) override {
    release_({WithdrawableGrant::Kind::kMultiLease, {}, keys, g.lock_id, 0, 0});
  }

 private:
  Release release_;
};

}  // namespace

void IoThread::FinishDeferred(uint64_t conn_id, uint64_t ticket, Writer write) {
  Conn* c = Find(conn_id);
  Slot* slot = nullptr;
  if (c != nullptr && !(c->open_ticket == ticket && !c->open_done)) {
    for (Slot& s : c->slots) {
      if (s.ticket == ticket && !s.ready) slot = &s;
    }
    if (slot == nullptr) c = nullptr;  // answered already (an abandoned wait): drop this one
  }
  if (c == nullptr) {
    std::string scratch;
    protocol::ReplyBuilder discard(&scratch);
    GoneClient gone([this](const PendingGrant& g) {
      ReleaseAbandoned(g);
    });
    write(discard, gone);
    return;
  }
  if (slot == nullptr) {
    // Completed before the handler returned: the reply goes where the handler writes.
    write(c->reply, *c);
    c->open_done = true;
    return;
  }
  // Write through the connection's own builder (so grants are tracked as usual) into the slot.
  std::string saved;
  std::vector<PendingGrant> saved_grants;
  saved.swap(c->building);
  saved_grants.swap(c->building_grants);
  const int protocol = c->reply.protocol();
  c->reply.set_protocol(slot->protocol);  // as the client expects this reply
  write(c->reply, *c);
  c->reply.set_protocol(protocol);
  slot->bytes.swap(c->building);
  slot->grants.swap(c->building_grants);
  c->building.swap(saved);
  c->building_grants.swap(saved_grants);
  slot->ready = true;
  c->slot_bytes += slot->bytes.size();
  if (services_.store != nullptr) {
    slot->seq = std::max(c->session.needs_seq, services_.store->LastAppended());
    c->session.needs_seq = slot->seq;
  }
  if (c->blocked && c->blocked_reply == ticket) {
    c->blocked = false;
    services_.stats.blocked_clients.fetch_sub(1, std::memory_order_relaxed);
  }
  // Sealed, and the connection's further input run, later in this pass (never from inside another
  // connection's command, or this one's).
  if (!c->resume_queued) {
    c->resume_queued = true;
    resume_.push_back(c->id);
  }
}

void IoThread::ResumeFinished() {
  while (!resume_.empty()) {
    std::vector<uint64_t> ids;
    ids.swap(resume_);
    for (uint64_t id : ids) {
      Conn* c = Find(id);
      if (c == nullptr) continue;
      c->resume_queued = false;
      Resume(*c);
    }
  }
}

void IoThread::AbandonWait(Conn& c) {
  if (!c.blocked) return;
  const uint64_t reply = c.blocked_reply;
  state_->CancelWait(c.wait_ticket);
  FinishDeferred(c.id, reply, [](protocol::ReplyBuilder& r, ClientControl&) { r.NullArray(); });
}

void IoThread::Resume(Conn& c) {
  Process(c);
  Seal(c);
  MarkDirty(c);
}

void IoThread::BeginStop() {
  stopping_ = true;
  stop_deadline_ = services_.clock->SteadyNow() + kStopGrace;
  if (listen_fd_ >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
  // Answer what was already read; a client still waiting for a lock gets the "not acquired" reply.
  state_->Shutdown();
  ResumeFinished();
  std::vector<uint64_t> ids;
  for (auto& [id, c] : conns_) ids.push_back(id);
  for (uint64_t id : ids) {
    Conn* c = Find(id);
    if (c == nullptr) continue;
    AbandonWait(*c);
    if ((c = Find(id)) == nullptr) continue;
    if (!c->blocked) Process(*c);
    c->closing = true;
    Seal(*c);
    MarkDirty(*c);
  }
}

bool IoThread::Drained() const {
  if (!held_.empty()) return false;
  for (const auto& [id, c] : conns_) {
    if (!c->out.empty() || c->blocked || !c->slots.empty()) return false;
  }
  return true;
}

}  // namespace tollgate::server
