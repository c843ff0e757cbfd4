// Reply pieces shared by several command families and the I/O thread.
#ifndef TOLLGATE_SERVER_REPLIES_H_
#define TOLLGATE_SERVER_REPLIES_H_

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "protocol/reply_builder.h"
#include "tollgate/lease_manager.h"

namespace tollgate::server {

// Whole milliseconds, rounded up: a live lease never reports 0, and a client that waits a
// retry_after this long will succeed. Negative durations give 0; Duration::max() saturates.
inline int64_t CeilMs(Duration d) {
  if (d == Duration::max()) return std::numeric_limits<int64_t>::max() / 1'000'000;
  const int64_t ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return ms < 0 ? 0 : ms;
}

// A wall-clock time as Unix milliseconds, rounded down (times before 1970 round toward -inf).
inline int64_t UnixMs(WallTime t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// LOCK.ACQUIRE ... WITHTIMES: when the lease was granted and when it expires, Unix ms, on the
// server's clock.
struct GrantTimes {
  int64_t acquired_at_ms = 0;
  int64_t expires_at_ms = 0;
};

// The times of grant `g` for WITHTIMES: acquired_at from the grant, or `fallback` (the server's
// wall clock before the request) when the grant does not carry it (the epoch); expires_at =
// acquired_at + ttl_ms (the ttl_ms of the reply).
inline GrantTimes TimesOfGrant(const LeaseGrant& g, WallTime fallback) {
  const int64_t acquired = UnixMs(g.acquired_at == WallTime{} ? fallback : g.acquired_at);
  return {acquired, acquired + CeilMs(g.ttl)};
}

// LOCK.ACQUIRE's success reply: [lock_id, fence, ttl_ms], plus [acquired_at_ms, expires_at_ms]
// with `times` (WITHTIMES).
inline void ReplyGrant(protocol::ReplyBuilder& reply, const LeaseGrant& g,
                       const std::optional<GrantTimes>& times = std::nullopt) {
  reply.ArrayHeader(times ? 5 : 3);
  reply.Bulk(g.lock_id);
  reply.Integer(static_cast<int64_t>(g.fence));
  reply.Integer(CeilMs(g.ttl));
  if (times) {
    reply.Integer(times->acquired_at_ms);
    reply.Integer(times->expires_at_ms);
  }
}

// SEM.ACQUIRE's success reply: [permit_id, slot, fence, ttl_ms].
inline void ReplyPermit(protocol::ReplyBuilder& reply, const PermitGrant& g) {
  reply.ArrayHeader(4);
  reply.Bulk(g.permit_id);
  reply.Integer(g.slot);
  reply.Integer(static_cast<int64_t>(g.fence));
  reply.Integer(CeilMs(g.ttl));
}

// The error line RESP gives for a non-OK status: Aborted (stale fence) as "STALE msg", Unavailable
// (backend down) as "UNAVAILABLE msg", everything else as "ERR msg". The HTTP API's 4xx/5xx bodies
// carry the same text.
inline std::string RespErrorText(const absl::Status& st) {
  std::string msg(st.message().data(), st.message().size());
  switch (st.code()) {
    case absl::StatusCode::kAborted:
      return "STALE " + msg;
    case absl::StatusCode::kUnavailable:
      return "UNAVAILABLE " + msg;
    default:
      return "ERR " + msg;
  }
}

// Replies with a non-OK status as an error (RespErrorText).
inline void ReplyStatus(protocol::ReplyBuilder& reply, const absl::Status& st) {
  reply.Error(RespErrorText(st));
}

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_REPLIES_H_
