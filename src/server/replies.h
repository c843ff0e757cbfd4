// Reply pieces shared by several command families and the I/O thread.
#ifndef TOLLGATE_SERVER_REPLIES_H_
#define TOLLGATE_SERVER_REPLIES_H_

#include <chrono>
#include <cstdint>
#include <limits>
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

// LOCK.ACQUIRE's success reply: [lock_id, fence, ttl_ms].
inline void ReplyGrant(protocol::ReplyBuilder& reply, const LeaseGrant& g) {
  reply.ArrayHeader(3);
  reply.Bulk(g.lock_id);
  reply.Integer(static_cast<int64_t>(g.fence));
  reply.Integer(CeilMs(g.ttl));
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
