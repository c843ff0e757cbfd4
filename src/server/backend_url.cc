#include "server/backend_url.h"

#ifdef TOLLGATE_HAVE_REDIS_BACKEND
#include "tollgate/redis_backend.h"
#endif
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
#include "tollgate/postgres_backend.h"
#endif
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
#include "tollgate/etcd_backend.h"
#endif

namespace tollgate::server {
namespace {

bool StartsWith(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> ConnectBackend(const std::string& url) {
  if (StartsWith(url, "redis://")) {
#ifdef TOLLGATE_HAVE_REDIS_BACKEND
    return NewRedisBackend(url);
#else
    return absl::UnimplementedError("this build has no Redis backend");
#endif
  }
  if (StartsWith(url, "postgres://") || StartsWith(url, "postgresql://") ||
      url.find('=') != std::string::npos) {
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
    return NewPostgresBackend(url);
#else
    return absl::UnimplementedError("this build has no PostgreSQL backend");
#endif
  }
  if (StartsWith(url, "etcd://")) {
#ifdef TOLLGATE_HAVE_ETCD_BACKEND
    return NewEtcdBackend(url);
#else
    return absl::UnimplementedError("this build has no etcd backend");
#endif
  }
  return absl::InvalidArgumentError(
      "--backend '" + url.substr(0, 200) +
      "' is not a backend URL; accepted: redis://host:port[/db], postgres://... (or a libpq "
      "key=value string), etcd://host:port");
}

absl::Status MigrateBackend(const std::string& url) {
  if (StartsWith(url, "postgres://") || StartsWith(url, "postgresql://") ||
      url.find('=') != std::string::npos) {
#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
    return MigratePostgres(url);
#else
    return absl::UnimplementedError("this build has no PostgreSQL backend");
#endif
  }
  return absl::InvalidArgumentError("--backend '" + url.substr(0, 200) +
                                    "': only PostgreSQL backends need migrating "
                                    "(postgres://... or a libpq key=value string)");
}

}  // namespace tollgate::server
