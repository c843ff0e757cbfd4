// OpenBackend / OpenAsyncBackend: which backend a URL names (one definition, used by the server's
// --backend and by applications).
#include <string>
#include <string_view>

#include "tollgate/async_backend.h"

#ifdef TOLLGATE_HAVE_REDIS_BACKEND
#include "tollgate/redis_backend.h"
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
#include "tollgate/postgres_backend.h"
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
#include "tollgate/etcd_backend.h"
#endif

namespace tollgate {
namespace {

bool StartsWith(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

enum class Kind { kRedis, kPostgres, kEtcd, kUnknown };

Kind KindOf(const std::string& url) {
  if (StartsWith(url, "redis://")) return Kind::kRedis;
  if (StartsWith(url, "postgres://") || StartsWith(url, "postgresql://") ||
      url.find('=') != std::string::npos) {
    return Kind::kPostgres;
  }
  if (StartsWith(url, "etcd://")) return Kind::kEtcd;
  return Kind::kUnknown;
}

absl::Status NotABackend(const std::string& url) {
  return absl::InvalidArgumentError(
      "backend URL '" + url.substr(0, 200) +
      "' is not a backend URL; accepted: redis://host:port[/db], postgres://... (or a libpq "
      "key=value string), etcd://host:port");
}

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kRedis:
      return "redis";
    case Kind::kPostgres:
      return "postgres";
    case Kind::kEtcd:
      return "etcd";
    default:
      return "unknown";
  }
}

}  // namespace

bool HonoursLockDelay(const std::string& url) { return KindOf(url) == Kind::kRedis; }

namespace {

// InvalidArgument for a lock-delay the backend would not honour.
absl::Status CheckOptions(const std::string& url, const OpenOptions& options) {
  if (options.lock_delay <= Duration(0) || HonoursLockDelay(url)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      std::string("--lock-delay-ms is not honoured on the ") + KindName(KindOf(url)) +
      " backend (--backend): run without --lock-delay-ms, or on the embedded store or Redis");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> OpenBackend(const std::string& url,
                                                     const OpenOptions& options) {
  if (KindOf(url) == Kind::kUnknown) return NotABackend(url);
  if (absl::Status st = CheckOptions(url, options); !st.ok()) return st;
  switch (KindOf(url)) {
    case Kind::kRedis:
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
      return NewRedisBackend(url, std::chrono::seconds(2), options.lock_delay);
#else
      return absl::UnimplementedError("this build has no Redis backend");
#endif
    case Kind::kPostgres:
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
      return NewPostgresBackend(url);
#else
      return absl::UnimplementedError("this build has no PostgreSQL backend");
#endif
    case Kind::kEtcd:
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
      return NewEtcdBackend(url);
#else
      return absl::UnimplementedError("this build has no etcd backend");
#endif
    case Kind::kUnknown:
      break;
  }
  return NotABackend(url);
}

absl::StatusOr<std::unique_ptr<AsyncBackend>> OpenAsyncBackend(const std::string& url,
                                                               EventLoop& loop,
                                                               const OpenOptions& options) {
  if (KindOf(url) == Kind::kUnknown) return NotABackend(url);
  if (absl::Status st = CheckOptions(url, options); !st.ok()) return st;
  switch (KindOf(url)) {
    case Kind::kUnknown:
      return NotABackend(url);
    case Kind::kRedis:
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
      // Pipelined on the loop's own sockets.
      return NewAsyncRedisBackend(url, loop, std::chrono::seconds(2), options.lock_delay);
#else
      return absl::UnimplementedError("this build has no Redis backend");
#endif
    case Kind::kPostgres:
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
      // Pipelined; several connections because Throttle and CheckLayers are PL/pgSQL, bound by
      // one server process's CPU per connection.
      return NewAsyncPostgresBackend(url, loop, std::chrono::seconds(2), kAsyncPostgresConnections);
#else
      return absl::UnimplementedError("this build has no PostgreSQL backend");
#endif
    case Kind::kEtcd:
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
      // Non-blocking HTTP requests (curl multi) on the loop's own sockets and timers.
      return NewAsyncEtcdBackend(url, loop, std::chrono::seconds(2));
#else
      return absl::UnimplementedError("this build has no etcd backend");
#endif
  }
  return NotABackend(url);
}

}  // namespace tollgate
