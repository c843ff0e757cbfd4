// NewAsyncPostgresBackend: libpq connections in pipeline mode on the caller's EventLoop (a Channel
// each; an operation goes to the channel of its key).
//
// Every operation is a pipeline segment: PQsendQueryPrepared of its statement, then a sync point,
// so it is its own implicit transaction and an error aborts nothing else. Segments are queued
// (unsent_) when submitted, written at the end of the loop's pass (Flush), and then wait in
// inflight_ for their results, which libpq returns in order: the statement's result(s), a null,
// then PGRES_PIPELINE_SYNC, which completes the front segment. A new session's setup is one more
// segment of several statements (SET, the schema check, one PQsendPrepare per statement), sent
// before any operation.
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/async/wait_queue.h"
#include "backends/postgres/pg_ops.h"
#include "core/absl_compat.h"
#include "tollgate/postgres_backend.h"

namespace tollgate {
namespace {

using postgres::Op;
using postgres::Result;
using std::chrono::milliseconds;

constexpr Duration kMinBackoff = milliseconds(50);
constexpr Duration kMaxBackoff = milliseconds(1000);

int64_t Ms(Duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

// Ends a pipeline segment. libpq 17's PQsendPipelineSync leaves the bytes for FlushOutput, so a
// pass's batch goes out in one write; older libpq (Debian 12 has 15) flushes at every
// PQpipelineSync: one write per operation, still without waiting for replies.
int SendSync(PGconn* conn) {
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
  return PQsendPipelineSync(conn);
#else
  return PQpipelineSync(conn);
#endif
}

// One connection and its pipeline.
class Channel {
 public:
  // One pipeline segment: `statements` statements, then a sync.
  struct Segment {
    bool setup = false;
    int statements = 1;
    postgres::Statement statement = postgres::Statement::kAcquire;
    std::vector<postgres::Param> params;
    SteadyTime deadline;
    // An operation's completion: its result, or its error.
    absl::AnyInvocable<void(absl::StatusOr<const PGresult*>)> complete;
    // Receiving.
    int ended = 0;      // statements whose results are all in (PQgetResult returned null)
    int error_at = -1;  // the statement that failed first
    Result result;      // an operation's result; the setup's schema check result
    Result error;       // the first error
  };

  Channel(EventLoop& loop, std::string conninfo, Duration timeout, std::string server)
      : loop_(loop),
        conninfo_(std::move(conninfo)),
        timeout_(timeout),
        server_(std::move(server)) {}

  // Completes every pending operation with Unavailable; later loop callbacks find it gone.
  ~Channel() {
    if (timer_id_ != 0) loop_.CancelTimer(timer_id_);
    timer_id_ = 0;
    FailAll(absl::UnavailableError(
        absl::StrCat("PostgreSQL ", server_, ": backend destroyed with the operation pending")));
    *alive_ = false;
    Close();
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Takes over a connected session from the factory (non-blocking, schema checked) and sets it up.
  void Adopt(PGconn* conn) {
    conn_ = conn;
    connect_deadline_ = Now() + timeout_;
    SetUp();
  }

  // Queues an operation's segment to be sent at the end of the pass, or completes it at once when
  // it cannot be (pipeline full, reconnecting backs off, the connect fails at once).
  void Submit(Segment s) {
    if (pending_ops_ >= kPostgresMaxInFlight) {
      s.complete(absl::UnavailableError(
          absl::StrCat("backend pipeline full (", kPostgresMaxInFlight, " operations in flight)")));
      return;
    }
    if (state_ == State::kDown) {
      if (Now() < retry_at_) {
        s.complete(last_error_);
        return;
      }
      StartConnect();
      if (state_ == State::kDown) {
        s.complete(last_error_);
        return;
      }
    }
    s.deadline = Now() + timeout_;
    unsent_.push_back(std::move(s));
    ++pending_ops_;
    if (!flush_scheduled_) {
      flush_scheduled_ = true;
      loop_.AtEndOfPass([this, alive = alive_] {
        if (!*alive) return;
        flush_scheduled_ = false;
        Flush();
      });
    }
    Arm();
  }

  // Completes every pending operation with `st`, dropping setup segments.
  void FailAll(const absl::Status& st) {
    std::deque<Segment> failed = std::move(inflight_);
    for (Segment& s : unsent_) failed.push_back(std::move(s));
    inflight_.clear();
    unsent_.clear();
    pending_ops_ = 0;
    std::shared_ptr<bool> alive = alive_;
    for (Segment& s : failed) {
      if (s.setup) continue;
      s.complete(st);
      if (!*alive) return;
    }
  }

 private:
  enum class State {
    kDown,        // no connection; the next operation connects (after retry_at_)
    kConnecting,  // PQconnectPoll in progress
    kSettingUp,   // connected; the setup segment is in flight
    kReady,       // operations are sent as they come
  };

  SteadyTime Now() { return loop_.clock()->SteadyNow(); }

  absl::Status Lost(std::string_view what) {
    const std::string msg = conn_ != nullptr ? postgres::Trimmed(PQerrorMessage(conn_)) : "";
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL ", server_, ": ", AV(what), msg.empty() ? "" : ": ", msg));
  }

  // Unwatches and closes the connection.
  void Close() {
    if (fd_ >= 0) loop_.Unwatch(fd_);
    fd_ = -1;
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
    state_ = State::kDown;
    retiring_ = false;
    watching_write_ = false;
  }

  // The connection failed (or timed out, or its setup did): closes it and fails everything pending.
  void Fail(absl::Status st) {
    const bool was_ready = state_ == State::kReady;
    Close();
    // A working connection that broke is re-made by the next operation; failed attempts back off.
    if (was_ready) {
      backoff_ = Duration(0);
    } else {
      backoff_ = std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
    }
    retry_at_ = Now() + backoff_;
    last_error_ = st;
    std::shared_ptr<bool> alive = alive_;
    FailAll(st);
    if (*alive) Arm();
  }

  // The connection is unusable for new work (an error said so) and nothing is in flight on it any
  // more: replaces it, keeping the operations waiting to be sent.
  void Retire() {
    Close();
    backoff_ = Duration(0);
    retry_at_ = Now();
    if (!unsent_.empty()) StartConnect();
  }

  void Watch(uint32_t interest) {
    loop_.Watch(fd_, interest, [this, alive = alive_](uint32_t events) {
      if (*alive) OnReady(events);
    });
  }

  void StartConnect() {
    Close();
    postgres::ConnectParams params(conninfo_, timeout_);
    conn_ = PQconnectStartParams(params.keys(), params.values(), /*expand_dbname=*/1);
    state_ = State::kConnecting;
    connect_deadline_ = Now() + timeout_;
    if (conn_ == nullptr) return Fail(Lost("connect: out of memory"));
    if (PQstatus(conn_) == CONNECTION_BAD) return Fail(Lost("connect failed"));
    polling_ = PGRES_POLLING_WRITING;
    WatchConnecting();
    Arm();
  }

  // libpq may switch sockets while connecting (trying the next address), possibly to one with the
  // same number: watch afresh each time.
  void WatchConnecting() {
    if (fd_ >= 0) loop_.Unwatch(fd_);
    fd_ = PQsocket(conn_);
    if (fd_ < 0) return Fail(Lost("connect failed"));
    Watch(polling_ == PGRES_POLLING_READING ? EventLoop::kReadable : EventLoop::kWritable);
  }

  void ContinueConnect() {
    polling_ = PQconnectPoll(conn_);
    if (polling_ == PGRES_POLLING_FAILED) return Fail(Lost("connect failed"));
    if (polling_ == PGRES_POLLING_OK) return SetUp();
    WatchConnecting();
  }

  // A connected session: pipeline mode, then the setup segment.
  void SetUp() {
    state_ = State::kSettingUp;
    if (PQsetnonblocking(conn_, 1) != 0) return Fail(Lost("setnonblocking"));
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
    if (PQenterPipelineMode(conn_) != 1) return Fail(Lost("pipeline mode"));
    bool sent = PQsendQueryParams(conn_, postgres::kSessionSetupSql, 0, nullptr, nullptr, nullptr,
                                  nullptr, 0) == 1 &&
                PQsendQueryParams(conn_, postgres::kSchemaVersionSql, 0, nullptr, nullptr, nullptr,
                                  nullptr, 0) == 1;
    for (int i = 0; sent && i < postgres::kStatementCount; ++i) {
      const auto s = static_cast<postgres::Statement>(i);
      sent = PQsendPrepare(conn_, postgres::StatementName(s), postgres::StatementSql(s), 0,
                           nullptr) == 1;
    }
    if (!sent || SendSync(conn_) != 1) return Fail(Lost("send failed"));
    Segment setup;
    setup.setup = true;
    setup.statements = 2 + postgres::kStatementCount;
    setup.deadline = connect_deadline_;
    inflight_.push_back(std::move(setup));
    if (fd_ >= 0) loop_.Unwatch(fd_);
    fd_ = PQsocket(conn_);
    Watch(EventLoop::kReadable);
    FlushOutput();
    Arm();
  }

  void FinishSetup(Segment& s) {
    absl::Status verdict;
    if (s.error != nullptr) {
      absl::Status st = postgres::MapError(s.error.get()).status;
      verdict = s.error_at == 1 ? postgres::CheckSchemaVersion(st) : postgres::SchemaHint(st);
      // A statement failed to prepare after the schema check answered: an older schema lacks its
      // function, and the check says so better ("version N, this build needs M").
      if (s.error_at > 1 && s.result != nullptr) {
        absl::Status version = postgres::CheckSchemaVersion(s.result.get());
        if (!version.ok()) verdict = version;
      }
    } else if (s.result == nullptr) {
      verdict = absl::InternalError("PostgreSQL returned no result for the schema check");
    } else {
      verdict = postgres::CheckSchemaVersion(s.result.get());
    }
    if (!verdict.ok()) {
      if (verdict.code() == absl::StatusCode::kUnavailable) return Fail(verdict);
      return Fail(absl::Status(verdict.code(),
                               absl::StrCat("PostgreSQL ", server_, ": ", verdict.message())));
    }
    state_ = State::kReady;
    backoff_ = Duration(0);
    Flush();
  }

  // Writes the queued operations (when the session is ready for them).
  void Flush() {
    if (state_ != State::kReady || retiring_) return;
    bool any = false;
    while (!unsent_.empty()) {
      Segment& s = unsent_.front();
      postgres::ParamArrays p(s.params);
      const bool ok = PQsendQueryPrepared(conn_, postgres::StatementName(s.statement), p.count(),
                                          p.values(), p.lengths(), p.formats(), 0) == 1 &&
                      SendSync(conn_) == 1;
      s.params = {};
      inflight_.push_back(std::move(s));
      unsent_.pop_front();
      if (!ok) return Fail(Lost("send failed"));
      any = true;
    }
    if (any) FlushOutput();
  }

  // Pushes libpq's output buffer to the socket, watching for writability while some is left.
  void FlushOutput() {
    const int f = PQflush(conn_);
    if (f < 0) return Fail(Lost("send failed"));
    const bool want_write = f == 1;
    if (want_write != watching_write_) {
      watching_write_ = want_write;
      Watch(want_write ? EventLoop::kReadable | EventLoop::kWritable
                       : uint32_t{EventLoop::kReadable});
    }
  }

  void OnReady(uint32_t events) {
    if (state_ == State::kConnecting) {
      // Only for the readiness libpq asked for (not a stale event of a socket it replaced).
      const uint32_t wanted =
          (polling_ == PGRES_POLLING_READING ? EventLoop::kReadable : EventLoop::kWritable) |
          EventLoop::kError;
      if ((events & wanted) != 0) ContinueConnect();
      return;
    }
    if (conn_ == nullptr) return;
    std::shared_ptr<bool> alive = alive_;
    if ((events & (EventLoop::kReadable | EventLoop::kError)) != 0) {
      Receive();
      if (!*alive) return;
    }
    if (conn_ != nullptr && watching_write_) FlushOutput();
  }

  // Reads what arrived and completes the segments whose sync came back.
  void Receive() {
    if (PQconsumeInput(conn_) == 0) return Fail(Lost("connection lost"));
    std::shared_ptr<bool> alive = alive_;
    while (conn_ != nullptr && !inflight_.empty()) {
      if (PQstatus(conn_) == CONNECTION_BAD) return Fail(Lost("connection lost"));
      if (PQisBusy(conn_) != 0) break;
      PGresult* r = PQgetResult(conn_);
      Segment& s = inflight_.front();
      if (r == nullptr) {
        if (s.ended >= s.statements) return Fail(Lost("replies out of step with requests"));
        ++s.ended;
        continue;
      }
      const ExecStatusType st = PQresultStatus(r);
      if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        Segment done = std::move(s);
        inflight_.pop_front();
        Finish(done);
        if (!*alive) return;
        continue;
      }
      if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) {
        if (s.error == nullptr) {
          s.error.reset(r);
          s.error_at = s.ended;
        } else {
          PQclear(r);
        }
      } else if (st == PGRES_PIPELINE_ABORTED || st == PGRES_NONFATAL_ERROR) {
        PQclear(r);
      } else if (!s.setup || s.ended == 1) {
        s.result.reset(r);  // an operation's (last) result; the setup's schema check
      } else {
        PQclear(r);
      }
    }
    if (conn_ == nullptr) return;
    if (PQstatus(conn_) == CONNECTION_BAD) return Fail(Lost("connection lost"));
    if (retiring_ && inflight_.empty()) return Retire();
    Arm();
  }

  void Finish(Segment& s) {
    if (s.setup) return FinishSetup(s);
    --pending_ops_;
    if (s.error != nullptr) {
      postgres::ErrorVerdict v = postgres::MapError(s.error.get());
      // As the synchronous backend drops its connection: send nothing more on this one.
      if (v.drop_connection) retiring_ = true;
      s.complete(postgres::SchemaHint(v.status));
    } else if (s.result == nullptr) {
      s.complete(absl::InternalError("PostgreSQL returned no result"));
    } else {
      s.complete(s.result.get());
    }
  }

  // Keeps one timer at the earliest deadline (connect, or the oldest pending segment).
  void Arm() {
    SteadyTime next = SteadyTime::max();
    if (state_ == State::kConnecting || state_ == State::kSettingUp) next = connect_deadline_;
    if (!inflight_.empty()) next = std::min(next, inflight_.front().deadline);
    if (!unsent_.empty()) next = std::min(next, unsent_.front().deadline);
    if (next == SteadyTime::max()) {
      if (timer_id_ != 0) loop_.CancelTimer(timer_id_);
      timer_id_ = 0;
      return;
    }
    if (timer_id_ != 0 && timer_at_ <= next) return;  // that check re-arms
    if (timer_id_ != 0) loop_.CancelTimer(timer_id_);
    timer_at_ = next;
    timer_id_ = loop_.RunAt(next, [this, alive = alive_] {
      if (!*alive) return;
      timer_id_ = 0;
      Watchdog();
    });
  }

  void Watchdog() {
    const SteadyTime now = Now();
    if ((state_ == State::kConnecting || state_ == State::kSettingUp) && now >= connect_deadline_) {
      return Fail(absl::UnavailableError(
          absl::StrCat("PostgreSQL ", server_, ": connect timed out after ", Ms(timeout_), " ms")));
    }
    const bool overdue = (!inflight_.empty() && inflight_.front().deadline <= now) ||
                         (!unsent_.empty() && unsent_.front().deadline <= now);
    if (overdue) {
      return Fail(absl::UnavailableError(absl::StrCat("PostgreSQL ", server_, ": no reply within ",
                                                      Ms(timeout_), " ms; connection closed")));
    }
    Arm();
  }

  EventLoop& loop_;
  const std::string conninfo_;
  const Duration timeout_;
  const std::string server_;  // host:port, for messages

  State state_ = State::kDown;
  PGconn* conn_ = nullptr;
  int fd_ = -1;  // watched on the loop
  PostgresPollingStatusType polling_ = PGRES_POLLING_WRITING;
  bool watching_write_ = false;
  bool retiring_ = false;
  bool flush_scheduled_ = false;
  SteadyTime connect_deadline_;
  SteadyTime retry_at_;
  Duration backoff_{0};
  absl::Status last_error_;

  std::deque<Segment> unsent_;    // submitted, not yet written
  std::deque<Segment> inflight_;  // written, in reply order
  size_t pending_ops_ = 0;        // operations in unsent_ and inflight_
  uint64_t timer_id_ = 0;
  SteadyTime timer_at_;

  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for loop callbacks
};

class AsyncPostgresBackend final : public AsyncBackend {
 public:
  AsyncPostgresBackend(EventLoop& loop, std::vector<std::unique_ptr<Channel>> channels)
      : channels_(std::move(channels)), waits_(loop, WaitOps()) {}

  ~AsyncPostgresBackend() override {
    shut_down_ = true;
    destroying_ = true;
    waits_.Shutdown();
    // Each channel completes its pending operations; a completion calling back finds this object
    // shut down (and does not touch channels_).
    channels_.clear();
  }

  std::string_view kind() const override { return "postgres"; }

  uint64_t Acquire(const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) override {
    if (shut_down_) {
      done(Closed());
      return 0;
    }
    if (absl::Status st = ValidateAcquireRequest(req); !st.ok()) {
      done(std::move(st));
      return 0;
    }
    return waits_.Acquire(req, std::move(done));
  }
  void CancelWait(uint64_t ticket) override { waits_.Cancel(ticket); }
  size_t LocalWaiters(std::string_view key) const override { return waits_.Count(key); }
  void ShareWaitOrder(WaitOrder* order) override { waits_.set_order(order); }

  void Release(std::string_view key, std::string_view lock_id, StatusCompletion done) override {
    Run(key, postgres::ReleaseOp(key, lock_id), StatusOnly(std::move(done)));
  }
  void Extend(std::string_view key, std::string_view lock_id, Duration ttl,
              Completion<Duration> done) override {
    Run(key, postgres::ExtendOp(key, lock_id, ttl), std::move(done));
  }
  void Info(std::string_view key, Completion<std::optional<LeaseInfo>> done) override {
    Run(key, postgres::InfoOp(key), std::move(done));
  }
  // Goes to the connection of the lock_id (the key is not known yet). An operation completes only
  // after its transaction committed, so a lookup submitted after an Acquire completed finds it on
  // any connection.
  void LookupById(std::string_view lock_id, Completion<std::optional<LeaseById>> done) override {
    Run(lock_id, postgres::LookupOp(lock_id), std::move(done));
  }
  uint64_t SemAcquire(const SemAcquireRequest& req,
                      Completion<std::optional<PermitGrant>> done) override {
    if (shut_down_) {
      done(Closed());
      return 0;
    }
    if (absl::Status st = ValidateSemAcquireRequest(req); !st.ok()) {
      done(std::move(st));
      return 0;
    }
    return waits_.SemAcquire(req, std::move(done));
  }
  void SemRelease(std::string_view key, std::string_view permit_id,
                  StatusCompletion done) override {
    Run(key, postgres::SemReleaseOp(key, permit_id), StatusOnly(std::move(done)));
  }
  void SemExtend(std::string_view key, std::string_view permit_id, Duration ttl,
                 Completion<Duration> done) override {
    Run(key, postgres::SemExtendOp(key, permit_id, ttl), std::move(done));
  }
  // `waiters`: this object's waiters for the semaphore (and those sharing its WaitOrder) when the
  // answer arrives.
  void SemInfo(std::string_view key, Completion<std::optional<SemaphoreInfo>> done) override {
    Run(key, postgres::SemInfoOp(key),
        [this, key = std::string(key),
         done = std::move(done)](absl::StatusOr<std::optional<SemaphoreInfo>> r) mutable {
          if (r.ok() && r->has_value()) (*r)->waiters = waits_.SemCount(key);
          done(std::move(r));
        });
  }
  uint64_t MultiAcquire(const MultiAcquireRequest& req,
                        Completion<std::optional<LeaseGrant>> done) override {
    if (shut_down_) {
      done(Closed());
      return 0;
    }
    if (absl::Status st = ValidateMultiAcquireRequest(req); !st.ok()) {
      done(std::move(st));
      return 0;
    }
    return waits_.MultiAcquire(req, std::move(done));
  }
  void MultiRelease(std::span<const std::string> keys, std::string_view lock_id,
                    Completion<size_t> done) override {
    Run(MultiRoute(keys), postgres::MultiReleaseOp(keys, lock_id), std::move(done));
  }
  void MultiExtend(std::span<const std::string> keys, std::string_view lock_id, Duration ttl,
                   Completion<Duration> done) override {
    Run(MultiRoute(keys), postgres::MultiExtendOp(keys, lock_id, ttl), std::move(done));
  }
  void FencedSet(std::string_view resource, uint64_t fence, std::string_view value,
                 StatusCompletion done) override {
    Run(resource, postgres::FencedSetOp(resource, fence, value), StatusOnly(std::move(done)));
  }
  void FencedGet(std::string_view resource, Completion<std::optional<FencedValue>> done) override {
    Run(resource, postgres::FencedGetOp(resource), std::move(done));
  }
  void Throttle(std::string_view key, const BucketParams& params, Decimal cost,
                Completion<Decision> done) override {
    Run(key, postgres::ThrottleOp(key, params, cost), std::move(done));
  }
  void CheckLayers(std::span<const LayerCheck> layers, Decimal cost,
                   Completion<PolicyDecision> done) override {
    Run(layers.empty() ? std::string_view() : std::string_view(layers.front().key),
        postgres::CheckLayersOp(layers, cost), std::move(done));
  }

  void Shutdown() override {
    shut_down_ = true;
    waits_.Shutdown();
  }

 private:
  static absl::Status Closed() { return absl::UnavailableError("backend is shutting down"); }

  // The WaitQueue's access to the non-waiting operations (its own calls: `internal`).
  WaitQueue::Ops WaitOps() {
    WaitQueue::Ops ops;
    ops.acquire = [this](const AcquireRequest& req, Completion<std::optional<LeaseGrant>> done) {
      Run(req.key, postgres::AcquireOp(req.key, req.ttl, req.owner), std::move(done),
          /*internal=*/true);
    };
    ops.release = [this](const std::string& key, const std::string& id) {
      Run(
          key, postgres::ReleaseOp(key, id), [](absl::StatusOr<std::monostate>) {},
          /*internal=*/true);
    };
    ops.sem_acquire = [this](const SemAcquireRequest& req,
                             Completion<std::optional<PermitGrant>> done) {
      Run(req.key, postgres::SemAcquireOp(req), std::move(done), /*internal=*/true);
    };
    ops.sem_release = [this](const std::string& key, const std::string& id) {
      Run(
          key, postgres::SemReleaseOp(key, id), [](absl::StatusOr<std::monostate>) {},
          /*internal=*/true);
    };
    ops.multi_acquire = [this](const MultiAcquireRequest& req,
                               Completion<std::optional<LeaseGrant>> done) {
      Run(MultiRoute(req.keys), postgres::MultiAcquireOp(req), std::move(done),
          /*internal=*/true);
    };
    ops.multi_release = [this](const std::vector<std::string>& keys, const std::string& id) {
      Run(
          MultiRoute(keys), postgres::MultiReleaseOp(keys, id), [](absl::StatusOr<size_t>) {},
          /*internal=*/true);
    };
    return ops;
  }

  // The connection of a multi-key operation: its first key's.
  static std::string_view MultiRoute(std::span<const std::string> keys) {
    return keys.empty() ? std::string_view() : std::string_view(keys.front());
  }

  static Completion<std::monostate> StatusOnly(StatusCompletion done) {
    return [done = std::move(done)](absl::StatusOr<std::monostate> r) mutable { done(r.status()); };
  }

  // Submits `op` on the connection of `route` (the key): answered at once if it needs no round
  // trip, else queued there. `internal`: the WaitQueue's own calls, which go on after Shutdown.
  template <class T>
  void Run(std::string_view route, Op<T> op, std::type_identity_t<Completion<T>> done,
           bool internal = false) {
    if (destroying_ || (shut_down_ && !internal)) {
      done(Closed());
      return;
    }
    if (op.immediate.has_value()) {
      done(*std::move(op.immediate));
      return;
    }
    Channel::Segment s;
    s.statement = op.statement;
    s.params = std::move(op.params);
    s.complete = [decode = std::move(op.decode),
                  done = std::move(done)](absl::StatusOr<const PGresult*> r) mutable {
      if (!r.ok()) {
        done(r.status());
      } else {
        done(decode(*r));
      }
    };
    Channel& c = channels_.size() == 1
                     ? *channels_.front()
                     : *channels_[std::hash<std::string_view>()(route) % channels_.size()];
    c.Submit(std::move(s));
  }

  bool shut_down_ = false;
  bool destroying_ = false;
  std::vector<std::unique_ptr<Channel>> channels_;
  WaitQueue waits_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AsyncBackend>> NewAsyncPostgresBackend(const std::string& conninfo,
                                                                      EventLoop& loop,
                                                                      Duration timeout,
                                                                      int connections) {
  if (absl::Status st = postgres::CheckConninfo(conninfo); !st.ok()) return st;
  if (timeout <= Duration(0)) return absl::InvalidArgumentError("timeout must be positive");
  if (connections < 1 || connections > kPostgresMaxConnections) {
    return absl::InvalidArgumentError(absl::StrCat(
        "connections must be in [1, ", kPostgresMaxConnections, "], got ", connections));
  }
  // Every session is connected and checked here, so an unusable server fails the call.
  std::vector<PGconn*> sessions;
  for (int i = 0; i < connections; ++i) {
    postgres::Connection session(conninfo, timeout, /*check_schema=*/true);
    absl::Status st = session.Connect();
    if (!st.ok()) {
      for (PGconn* c : sessions) PQfinish(c);
      return st;
    }
    sessions.push_back(session.Release());
  }
  const std::string server = absl::StrCat(PQhost(sessions[0]), ":", PQport(sessions[0]));
  std::vector<std::unique_ptr<Channel>> channels;
  for (PGconn* c : sessions) {
    channels.push_back(std::make_unique<Channel>(loop, conninfo, timeout, server));
    channels.back()->Adopt(c);
  }
  return std::unique_ptr<AsyncBackend>(new AsyncPostgresBackend(loop, std::move(channels)));
}

}  // namespace tollgate
