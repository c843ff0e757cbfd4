// The Redis backend's pipelined client (see client.h).
#include "backends/redis/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/redis/cluster_slot.h"
#include "core/absl_compat.h"
#include "hiredis/read.h"

namespace tollgate::redis {
namespace {

using std::chrono::milliseconds;

// A node whose connect failed, or whose connection never answered, is retried after this back-off,
// doubling up to kMaxBackoff; one that answered is reconnected at once.
constexpr Duration kMinBackoff = milliseconds(50);
constexpr Duration kMaxBackoff = milliseconds(1000);
// Reads per readiness event (the loop calls again while data is left): fairness to other fds.
constexpr int kReadsPerEvent = 16;
constexpr size_t kReadChunk = 64 * 1024;

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

struct ReaderDeleter {
  void operator()(redisReader* r) const {
    if (r != nullptr) redisReaderFree(r);
  }
};

timeval ToTimeval(Duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  timeval tv;
  tv.tv_sec = static_cast<time_t>(us / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  return tv;
}

long long Ms(Duration d) {
  return std::chrono::ceil<milliseconds>(std::max(d, Duration(0))).count();
}

// Appends one command in RESP (an array of bulk strings) to `out`.
void AppendCommand(std::string& out, std::initializer_list<std::string_view> head,
                   const std::vector<std::string>& keys = {},
                   const std::vector<std::string>& args = {}) {
  absl::StrAppend(&out, "*", head.size() + keys.size() + args.size(), "\r\n");
  auto bulk = [&out](std::string_view s) {
    absl::StrAppend(&out, "$", s.size(), "\r\n");
    out.append(s.data(), s.size());
    out.append("\r\n");
  };
  for (std::string_view s : head) bulk(s);
  for (const std::string& s : keys) bulk(s);
  for (const std::string& s : args) bulk(s);
}

// A blocking command on the setup connection.
Reply Command(redisContext* c, std::initializer_list<std::string_view> args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return Reply(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())));
}

}  // namespace

absl::StatusOr<RedisUrl> ParseUrl(const std::string& url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("invalid Redis url '", url, "': ", AV(why),
                                                   " (expected redis://host:port[/db])"));
  };
  constexpr std::string_view kScheme = "redis://";
  std::string_view s = url;
  if (s.substr(0, kScheme.size()) != kScheme) return bad("must start with redis://");
  s.remove_prefix(kScheme.size());
  RedisUrl out;
  out.text = url;
  std::string_view hostport = s.substr(0, s.find('/'));
  std::string_view rest = s.substr(hostport.size());
  if (hostport.find('@') != std::string_view::npos) return bad("credentials are not supported");
  std::string_view port_text;
  if (!hostport.empty() && hostport.front() == '[') {
    const size_t close = hostport.find(']');
    if (close == std::string_view::npos) return bad("unterminated [IPv6] host");
    out.host = std::string(hostport.substr(1, close - 1));
    std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':' after ]");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = hostport.find(':');
    out.host = std::string(hostport.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = hostport.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (out.host.empty()) return bad("empty host");
  for (char c : out.host) {
    if (c <= ' ' || c == '?' || c == '#' || c == '/' || c == '@' || c == '[' || c == ']' ||
        c == 0x7f) {
      return bad("bad character in host");
    }
  }
  auto number = [](std::string_view t, int lo, int hi) -> std::optional<int> {
    if (t.empty() || t.size() > 9) return std::nullopt;
    int v = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    if (v < lo || v > hi) return std::nullopt;
    return v;
  };
  if (!port_text.empty()) {
    std::optional<int> p = number(port_text, 1, 65535);
    if (!p) return bad("port must be an integer in [1, 65535]");
    out.port = *p;
  }
  if (!rest.empty()) {
    rest.remove_prefix(1);  // '/'
    if (!rest.empty()) {
      std::optional<int> db = number(rest, 0, 1'000'000);
      if (!db) return bad("db must be a non-negative integer");
      out.db = *db;
    }
  }
  return out;
}

// ---- State ----

struct Client::Op {
  ScriptCall call;
  Done done;
  int redirects = 0;
  bool asking = false;            // send ASKING first (after an ASK redirect)
  bool eval = false;              // send EVAL with the script's text rather than EVALSHA
  bool noscript_retried = false;  // NOSCRIPT already handled on this node
};

struct Client::Pending {
  enum Kind { kOp, kAsking, kSelect } kind = kOp;
  std::unique_ptr<Op> op;  // for kOp
  SteadyTime deadline;
};

// One server: the seed from the URL (nodes_[0]) or a cluster node learned from CLUSTER SLOTS or a
// redirect, with the backend's connection to it.
struct Client::Node {
  enum class State { kDown, kConnecting, kUp };

  size_t index = 0;  // in nodes_
  std::string host;
  int port = 0;

  State state = State::kDown;
  int fd = -1;
  bool is_watched = false;
  uint32_t watched = 0;     // the interest registered with the loop
  uint64_t generation = 0;  // bumped at each Close: callbacks for an older socket do nothing
  std::unique_ptr<redisReader, ReaderDeleter> reader;
  std::string out;  // encoded requests; [out_pos, size) not written yet
  size_t out_pos = 0;
  std::deque<Pending> pending;  // sent or queued, in order, awaiting their replies
  uint64_t deadline_timer = 0;  // watches pending.front() (0 = none)
  bool flush_scheduled = false;
  bool answered = false;  // this connection has answered at least once

  // Reconnect back-off (see kMinBackoff).
  Duration backoff{0};
  SteadyTime retry_at{};
  std::string last_error;

  // Where to connect: resolved on first use, again after a connect failure.
  struct Addr {
    sockaddr_storage addr;
    socklen_t len;
  };
  std::vector<Addr> addrs;
  size_t next_addr = 0;
};

Client::Client(RedisUrl url, Duration timeout, EventLoop& loop)
    : url_(std::move(url)), timeout_(timeout), loop_(loop) {}

Client::~Client() {
  *alive_ = false;
  for (auto& n : nodes_) Close(*n);
}

std::string Client::Where(const Node& n) const {
  return absl::StrCat("Redis ", n.host, ":", n.port);
}

SteadyTime Client::Now() {
  if (clock_ == nullptr) clock_ = loop_.clock();
  return clock_->SteadyNow();
}

absl::Status Client::ClusterDbError() const {
  return absl::InvalidArgumentError(absl::StrCat("invalid Redis url '", url_.text,
                                                 "': db must be 0 on a Redis Cluster, got ",
                                                 url_.db, " (a cluster has only database 0)"));
}

// ---- Setup (synchronous, before the loop drives the client) ----

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(RedisUrl url, Duration timeout,
                                                        EventLoop& loop) {
  std::unique_ptr<Client> c(new Client(std::move(url), timeout, loop));
  if (absl::Status st = c->Init(); !st.ok()) return st;
  return c;
}

// Connects to the seed, learns whether it is a Redis Cluster (and if so its slot map), and loads
// every script there (other cluster nodes get them on first use, through NOSCRIPT and EVAL). The
// connection is then handed to the loop (it is watched on first use, on the loop's thread).
absl::Status Client::Init() {
  std::optional<size_t> seed = NodeAt(url_.host, url_.port);
  Node& n = *nodes_[*seed];
  Context c(redisConnectWithTimeout(n.host.c_str(), n.port, ToTimeval(timeout_)));
  if (!c) return absl::UnavailableError("Redis: cannot allocate a connection");
  if (c->err != 0) {
    return absl::UnavailableError(absl::StrCat(Where(n), ": connect: ", c->errstr));
  }
  if (redisSetTimeout(c.get(), ToTimeval(timeout_)) != REDIS_OK) {
    return absl::UnavailableError(absl::StrCat(Where(n), ": setting the timeout: ", c->errstr));
  }
  auto io_error = [&](std::string_view during) {
    return absl::UnavailableError(
        absl::StrCat(Where(n), ": ", AV(during), ": ", c->err != 0 ? c->errstr : "no reply"));
  };
  if (absl::Status st = CheckNoEviction(c.get()); !st.ok()) return st;
  CheckPersistence(c.get());
  // One round trip per backend, none per call: a cluster answers CLUSTER SLOTS with its map, a
  // standalone server with "ERR This instance has cluster support disabled".
  Reply r = Command(c.get(), {"CLUSTER", "SLOTS"});
  if (!r) return io_error("CLUSTER SLOTS");
  if (r->type == REDIS_REPLY_ARRAY) {
    if (url_.db != 0) return ClusterDbError();
    cluster_ = true;
    slot_node_.assign(kClusterSlots, -1);
    ApplySlots(r.get(), 0);
  } else if (url_.db != 0) {
    const std::string db = std::to_string(url_.db);
    Reply s = Command(c.get(), {"SELECT", db});
    if (!s) return io_error("SELECT");
    if (s->type == REDIS_REPLY_ERROR) {
      const std::string_view msg = Str(s.get());
      if (msg.find("cluster mode") != std::string_view::npos) return ClusterDbError();
      return ErrorReply(msg);
    }
  }
  for (int s = 0; s < kCount; ++s) {
    Reply l = Command(c.get(), {"SCRIPT", "LOAD", ScriptText(s)});
    if (!l) return io_error("SCRIPT LOAD");
    if (l->type != REDIS_REPLY_STRING) {
      return ErrorReply(l->type == REDIS_REPLY_ERROR ? Str(l.get())
                                                     : "SCRIPT LOAD: unexpected reply");
    }
    sha_[s] = std::string(Str(l.get()));
  }
  // Hand the connection over: non-blocking from now on, read by our own reader.
  const int fd = redisFreeKeepFd(c.release());
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    return absl::UnavailableError(absl::StrCat(Where(n), ": fcntl: ", error));
  }
  n.fd = fd;
  n.state = Node::State::kUp;
  n.reader.reset(redisReaderCreate());
  n.answered = true;
  return absl::OkStatus();
}

// Refuses a seed server that may evict keys (maxmemory-policy other than noeviction): evicting a
// fence counter restarts that key's fences at 1, so a stale holder's write would be accepted.
// FailedPrecondition naming the policy (or saying INFO is not allowed, so it cannot be checked).
void Client::CheckPersistence(redisContext* c) {
  // The fence counters must survive a restart, or a restarted Redis reissues fences. Only AOF
  // (appendonly yes) keeps every acknowledged INCR; RDB snapshots lose the writes since the last.
  Reply r = Command(c, {"INFO", "persistence"});
  if (!r || r->type != REDIS_REPLY_STRING) return;  // refused or odd: nothing to say for sure
  if (Str(r.get()).find("aof_enabled:0") == std::string_view::npos) return;
  warnings_.push_back(absl::StrCat(
      "Redis at ", url_.host, ":", url_.port,
      " runs without AOF (appendonly no): after a restart it may reissue fences it already gave "
      "out (the counters written since its last snapshot are lost), and a fenced write could then "
      "be accepted from a stale holder; run it with appendonly yes and appendfsync always"));
}

absl::Status Client::CheckNoEviction(redisContext* c) {
  const std::string where = absl::StrCat("Redis at ", url_.host, ":", url_.port);
  Reply r = Command(c, {"INFO", "memory"});
  if (!r) {
    return absl::UnavailableError(
        absl::StrCat("Redis ", url_.host, ":", url_.port,
                     ": INFO memory: ", c->err != 0 ? c->errstr : "no reply"));
  }
  if (r->type == REDIS_REPLY_ERROR) {
    absl::Status st = ErrorReply(Str(r.get()));
    if (st.code() == absl::StatusCode::kUnavailable) return st;
    return absl::FailedPreconditionError(
        absl::StrCat(where, " refuses INFO (", AV(Str(r.get())),
                     "), so its maxmemory-policy cannot be checked: allow INFO for this user"));
  }
  const std::string_view info = r->type == REDIS_REPLY_STRING ? Str(r.get()) : std::string_view();
  constexpr std::string_view kField = "maxmemory_policy:";
  const size_t at = info.find(kField);
  if (at == std::string_view::npos) return absl::OkStatus();  // too old to evict by policy
  std::string_view policy = info.substr(at + kField.size());
  policy = policy.substr(0, policy.find_first_of("\r\n"));
  if (policy == "noeviction") return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      where, " has maxmemory-policy ", AV(policy),
      ": it may evict tollgate's fence counters, and a key whose counter was evicted would be "
      "granted fences from 1 again (a stale holder's writes would then be accepted); set "
      "maxmemory-policy noeviction (Redis then refuses writes when full, which tollgate "
      "reports as -UNAVAILABLE)"));
}

// ---- Cluster routing ----

// The index of the node at host:port, added if new; nullopt beyond kMaxNodes.
std::optional<size_t> Client::NodeAt(std::string_view host, int port) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->port == port && nodes_[i]->host == host) return i;
  }
  if (nodes_.size() >= kMaxNodes) return std::nullopt;
  auto n = std::make_unique<Node>();
  n->index = nodes_.size();
  n->host = std::string(host);
  n->port = port;
  nodes_.push_back(std::move(n));
  return nodes_.size() - 1;
}

// Fills slot_node_ from a CLUSTER SLOTS reply ([start, end, [host, port, id...], replicas...] per
// range) received from nodes_[from]. An empty host means "the node you asked"; "?" (unknown
// endpoint) leaves the range unknown. Malformed entries are skipped: routing then falls back to
// redirects.
void Client::ApplySlots(const redisReply* r, size_t from) {
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
        e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
        e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
      continue;
    }
    const long long lo = e->element[0]->integer, hi = e->element[1]->integer;
    std::string host(Str(e->element[2]->element[0]));
    const long long port = e->element[2]->element[1]->integer;
    if (lo < 0 || hi >= kClusterSlots || lo > hi || port < 1 || port > 65535 || host == "?") {
      continue;
    }
    if (host.empty()) host = nodes_[from]->host;
    std::optional<size_t> node = NodeAt(host, static_cast<int>(port));
    if (!node) continue;
    for (long long s = lo; s <= hi; ++s) slot_node_[s] = static_cast<int16_t>(*node);
  }
}

// Where a command for `slot` goes: its known owner, else a node we are connected to (the seed
// first), else the seed. A wrong guess costs one MOVED.
size_t Client::Route(int slot) const {
  if (slot_node_[slot] >= 0) return static_cast<size_t>(slot_node_[slot]);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->state != Node::State::kDown) return i;
  }
  return 0;
}

// A node that fails has its slots forgotten, so those calls go to another node, whose MOVED names
// the slot's owner then (a promoted replica after a failover, or the same node once it is back).
void Client::ForgetSlotsOf(size_t node) {
  for (int16_t& owner : slot_node_) {
    if (owner == static_cast<int16_t>(node)) owner = -1;
  }
}

// ---- Requests ----

void Client::Run(ScriptCall call, Done done) {
  size_t node = 0;
  if (cluster_ && !call.keys.empty()) {
    const int slot = KeySlot(call.keys[0]);
    for (size_t i = 1; i < call.keys.size(); ++i) {
      if (KeySlot(call.keys[i]) != slot) {
        done(absl::InvalidArgumentError(absl::StrCat(
            "on a Redis Cluster the keys of one operation must share a hash slot, but '",
            AV(call.keys[0]), "' and '", AV(call.keys[i]),
            "' do not (give your key a hash tag, e.g. {order:42}:state; a lease key must not "
            "start with '}')")));
        return;
      }
    }
    node = Route(slot);
  }
  auto op = std::make_unique<Op>();
  op->call = std::move(call);
  op->done = std::move(done);
  Send(node, std::move(op));
}

// Queues `op` on nodes_[node] (connecting first if needed) for the end of the loop's pass.
void Client::Send(size_t node, std::unique_ptr<Op> op) {
  Node& n = *nodes_[node];
  if (n.pending.size() >= kMaxInFlight) {
    op->done(absl::UnavailableError(absl::StrCat("backend pipeline full (", n.pending.size(),
                                                 " requests in flight): ", Where(n))));
    return;
  }
  const SteadyTime now = Now();
  if (n.state == Node::State::kDown) {
    if (now < n.retry_at) {
      op->done(absl::UnavailableError(absl::StrCat(n.last_error, " (next connection attempt in ",
                                                   Ms(n.retry_at - now), " ms)")));
      return;
    }
    if (absl::Status st = StartConnect(n); !st.ok()) {
      op->done(std::move(st));
      return;
    }
  }
  if (op->asking) {
    AppendCommand(n.out, {"ASKING"});
    ++stats_.commands;
    n.pending.push_back(Pending{Pending::kAsking, nullptr, now + timeout_});
  }
  const ScriptCall& call = op->call;
  const std::string nkeys = std::to_string(call.keys.size());
  if (op->eval) {
    AppendCommand(n.out, {"EVAL", ScriptText(call.script), nkeys}, call.keys, call.args);
  } else {
    AppendCommand(n.out, {"EVALSHA", sha_[call.script], nkeys}, call.keys, call.args);
  }
  ++stats_.commands;
  n.pending.push_back(Pending{Pending::kOp, std::move(op), now + timeout_});
  ArmDeadline(n);
  if (n.state == Node::State::kUp) ScheduleFlush(n);
}

// ---- Connections ----

// Starts a non-blocking connect to `n` (resolving its host first if needed: numeric addresses, as
// Redis Cluster hands out, never block; a host name is resolved with getaddrinfo, which may block
// the loop for as long as the system resolver takes, and is cached until a connect fails).
// Unavailable, with the back-off armed, if no address can even be tried.
absl::Status Client::StartConnect(Node& n) {
  Close(n);
  std::string error;
  if (n.addrs.empty()) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    const std::string port = std::to_string(n.port);
    addrinfo* res = nullptr;
    int rc = getaddrinfo(n.host.c_str(), port.c_str(), &hints, &res);
    if (rc == EAI_NONAME) {
      hints.ai_flags = AI_NUMERICSERV;
      rc = getaddrinfo(n.host.c_str(), port.c_str(), &hints, &res);
    }
    if (rc != 0) {
      error = absl::StrCat("resolving ", n.host, ": ", gai_strerror(rc));
    } else {
      for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
        Node::Addr addr{};
        std::memcpy(&addr.addr, a->ai_addr, a->ai_addrlen);
        addr.len = a->ai_addrlen;
        n.addrs.push_back(addr);
      }
      freeaddrinfo(res);
    }
  }
  n.next_addr = 0;
  if (!ConnectNext(n, &error)) {
    const std::string message = absl::StrCat(Where(n), ": connect: ", error);
    NoteFailure(n, /*answered=*/false, message);
    n.addrs.clear();
    ForgetSlotsOf(n.index);
    return absl::UnavailableError(message);
  }
  ++stats_.connects;
  n.reader.reset(redisReaderCreate());
  n.answered = false;
  if (url_.db != 0 && !cluster_) {  // only ever non-zero off a cluster
    AppendCommand(n.out, {"SELECT", std::to_string(url_.db)});
    ++stats_.commands;
    n.pending.push_back(Pending{Pending::kSelect, nullptr, Now() + timeout_});
    ArmDeadline(n);
  }
  if (n.state == Node::State::kUp) ScheduleFlush(n);
  return absl::OkStatus();
}

// Opens a socket to the next untried address of `n` and starts connecting it. False (with
// *error set) when every address failed at once.
bool Client::ConnectNext(Node& n, std::string* error) {
  while (n.next_addr < n.addrs.size()) {
    const Node::Addr& a = n.addrs[n.next_addr++];
    const int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc;
    do {
      rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0 || errno == EINPROGRESS) {
      n.fd = fd;
      n.state = rc == 0 ? Node::State::kUp : Node::State::kConnecting;
      UpdateWatch(n);
      return true;
    }
    *error = std::strerror(errno);
    ::close(fd);
  }
  if (error->empty()) *error = "no address";
  return false;
}

void Client::OnConnected(Node& n) {
  n.state = Node::State::kUp;
  Flush(n);  // what was queued while connecting; also sets the interest to readable
}

void Client::UpdateWatch(Node& n) {
  const uint32_t want =
      n.state == Node::State::kConnecting
          ? EventLoop::kWritable
          : EventLoop::kReadable | (n.out_pos < n.out.size() ? uint32_t{EventLoop::kWritable} : 0u);
  if (n.is_watched && n.watched == want) return;
  n.is_watched = true;
  n.watched = want;
  loop_.Watch(n.fd, want,
              [this, alive = std::weak_ptr<bool>(alive_), node = &n,
               generation = n.generation](uint32_t events) {
                if (alive.expired()) return;
                OnReady(*node, generation, events);
              });
}

void Client::OnReady(Node& n, uint64_t generation, uint32_t events) {
  if (generation != n.generation || n.fd < 0) return;
  if (n.state == Node::State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(n.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0) {
      sockaddr_storage peer;
      socklen_t peer_len = sizeof peer;
      if (getpeername(n.fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
        if (errno == ENOTCONN) return;  // not connected yet (a spurious wake-up)
        err = errno;
      }
    }
    if (err == 0) {
      OnConnected(n);
      return;
    }
    // This address refused: try the next one, if any (the queued requests wait for it).
    loop_.Unwatch(n.fd);
    ::close(n.fd);
    n.fd = -1;
    n.is_watched = false;
    std::string error = std::strerror(err);
    if (!ConnectNext(n, &error)) {
      Fail(n, absl::StrCat("connect: ", error));
      return;
    }
    if (n.state == Node::State::kUp) OnConnected(n);
    return;
  }
  if (events & (EventLoop::kReadable | EventLoop::kError)) {
    Read(n);
    if (generation != n.generation) return;
  }
  if (events & EventLoop::kWritable) Flush(n);
}

void Client::ScheduleFlush(Node& n) {
  if (n.flush_scheduled) return;
  n.flush_scheduled = true;
  loop_.AtEndOfPass(
      [alive = std::weak_ptr<bool>(alive_), this, node = &n, generation = n.generation] {
        if (alive.expired() || generation != node->generation) return;
        node->flush_scheduled = false;
        Flush(*node);
      });
}

// Writes what the socket takes now; the rest when it is writable again.
void Client::Flush(Node& n) {
  if (n.state != Node::State::kUp) return;
  while (n.out_pos < n.out.size()) {
    const ssize_t w =
        ::send(n.fd, n.out.data() + n.out_pos, n.out.size() - n.out_pos, MSG_NOSIGNAL);
    ++stats_.writes;
    if (w > 0) {
      n.out_pos += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    Fail(n, absl::StrCat("write: ", w < 0 ? std::strerror(errno) : "nothing written"));
    return;
  }
  if (n.out_pos == n.out.size()) {
    n.out.clear();
    n.out_pos = 0;
  } else if (n.out_pos >= kReadChunk) {
    n.out.erase(0, n.out_pos);
    n.out_pos = 0;
  }
  UpdateWatch(n);
}

void Client::Read(Node& n) {
  char buf[kReadChunk];
  const uint64_t generation = n.generation;
  for (int i = 0; i < kReadsPerEvent; ++i) {
    const ssize_t r = ::recv(n.fd, buf, sizeof buf, 0);
    if (r == 0) {
      Fail(n, "connection closed by the server");
      return;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      Fail(n, absl::StrCat("read: ", std::strerror(errno)));
      return;
    }
    if (redisReaderFeed(n.reader.get(), buf, static_cast<size_t>(r)) != REDIS_OK) {
      Fail(n, absl::StrCat("protocol error: ", n.reader->errstr));
      return;
    }
    for (;;) {
      void* reply = nullptr;
      if (redisReaderGetReply(n.reader.get(), &reply) != REDIS_OK) {
        Fail(n, absl::StrCat("protocol error: ", n.reader->errstr));
        return;
      }
      if (reply == nullptr) break;
      Dispatch(n, Reply(static_cast<redisReply*>(reply)));
      if (generation != n.generation) return;  // the connection failed meanwhile
    }
    if (static_cast<size_t>(r) < sizeof buf) return;  // drained, most likely
  }
}

void Client::Dispatch(Node& n, Reply reply) {
  if (n.pending.empty()) {
    Fail(n, "a reply without a request (the connection is out of step)");
    return;
  }
  Pending p = std::move(n.pending.front());
  n.pending.pop_front();
  n.answered = true;
  n.backoff = Duration(0);
  switch (p.kind) {
    case Pending::kAsking:
      return;  // an error here shows in the next reply (a redirect)
    case Pending::kSelect:
      if (reply->type == REDIS_REPLY_ERROR) {
        Fail(n, absl::StrCat("SELECT ", url_.db, ": ", AV(Str(reply.get()))));
      }
      return;
    case Pending::kOp:
      OnReply(n, std::move(p.op), std::move(reply));
      return;
  }
}

// Completes `op` with `reply`, or sends it again where Redis did not run it: NOSCRIPT (once, as
// EVAL), MOVED (remembered) and ASK (ASKING + the command, not remembered), at most kMaxRedirects
// redirects.
void Client::OnReply(Node& n, std::unique_ptr<Op> op, Reply reply) {
  if (reply->type != REDIS_REPLY_ERROR) {
    op->done(std::move(reply));
    return;
  }
  const std::string_view msg = Str(reply.get());
  if (msg.substr(0, 8) == "NOSCRIPT" && !op->noscript_retried) {
    // Flushed, a restarted server, or a cluster node that never ran it: EVAL loads it.
    op->noscript_retried = true;
    op->eval = true;
    Send(n.index, std::move(op));
    return;
  }
  std::optional<Redirect> to = ParseRedirect(msg);
  if (!to) {
    op->done(ErrorReply(msg));
    return;
  }
  if (++op->redirects > kMaxRedirects) {
    op->done(absl::UnavailableError(absl::StrCat(
        "Redis Cluster: gave up after ", kMaxRedirects,
        " redirects for one operation (the cluster may be resharding or misconfigured); last: ",
        AV(msg))));
    return;
  }
  std::optional<size_t> next = NodeAt(to->host.empty() ? n.host : to->host, to->port);
  if (!next) {
    op->done(absl::UnavailableError(
        absl::StrCat("Redis Cluster: more than ", kMaxNodes, " nodes; not following ", AV(msg))));
    return;
  }
  if (!to->ask) {
    if (!cluster_) {  // a cluster whose CLUSTER SLOTS we did not get at connect
      cluster_ = true;
      slot_node_.assign(kClusterSlots, -1);
    }
    slot_node_[to->slot] = static_cast<int16_t>(*next);
  }
  op->asking = to->ask;
  op->eval = false;
  op->noscript_retried = false;
  Send(*next, std::move(op));
}

void Client::ArmDeadline(Node& n) {
  if (n.deadline_timer != 0 || n.pending.empty()) return;
  n.deadline_timer = loop_.RunAt(
      n.pending.front().deadline,
      [alive = std::weak_ptr<bool>(alive_), this, node = &n, generation = n.generation] {
        if (alive.expired()) return;
        OnDeadline(*node, generation);
      });
}

void Client::OnDeadline(Node& n, uint64_t generation) {
  if (generation != n.generation) return;
  n.deadline_timer = 0;
  if (n.pending.empty()) return;
  if (n.pending.front().deadline <= Now()) {
    Fail(n, absl::StrCat(n.state == Node::State::kConnecting ? "connect: " : "", "no reply within ",
                         Ms(timeout_), " ms"));
    return;
  }
  ArmDeadline(n);
}

// The connection failed: closes it, then completes every pending request with Unavailable.
void Client::Fail(Node& n, std::string_view cause) {
  const absl::Status st = absl::UnavailableError(absl::StrCat(Where(n), ": ", AV(cause)));
  const bool answered = n.answered;
  std::deque<Pending> pending = std::move(n.pending);
  n.pending.clear();
  Close(n);
  NoteFailure(n, answered, SV(st.message()));
  if (!answered) n.addrs.clear();  // resolve again next time
  ForgetSlotsOf(n.index);
  for (Pending& p : pending) {
    if (p.op != nullptr) p.op->done(st);
  }
}

void Client::NoteFailure(Node& n, bool answered, std::string_view error) {
  n.last_error = std::string(error);
  if (answered) {  // it worked until now: reconnect at once
    n.backoff = Duration(0);
    n.retry_at = SteadyTime();
    return;
  }
  n.backoff = std::clamp(n.backoff * 2, kMinBackoff, kMaxBackoff);
  n.retry_at = Now() + n.backoff;
}

// Closes the socket (pending requests stay with the caller).
void Client::Close(Node& n) {
  if (n.fd >= 0) {
    if (n.is_watched) loop_.Unwatch(n.fd);
    ::close(n.fd);
  }
  n.fd = -1;
  n.is_watched = false;
  n.watched = 0;
  n.state = Node::State::kDown;
  n.out.clear();
  n.out_pos = 0;
  n.reader.reset();
  if (n.deadline_timer != 0) {
    loop_.CancelTimer(n.deadline_timer);
    n.deadline_timer = 0;
  }
  n.flush_scheduled = false;
  ++n.generation;
}

}  // namespace tollgate::redis
