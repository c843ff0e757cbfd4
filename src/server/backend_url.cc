#include "server/backend_url.h"

#ifdef TOLLGATE_HAVE_POSTGRES_BACKEND
#include "tollgate/postgres_backend.h"
#endif

namespace tollgate::server {
namespace {

bool StartsWith(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

}  // namespace

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
