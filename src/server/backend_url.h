// `tollgate serve --backend URL`: which shared backend a URL names, and a connection to it.
#ifndef TOLLGATE_SERVER_BACKEND_URL_H_
#define TOLLGATE_SERVER_BACKEND_URL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tollgate/backend.h"

namespace tollgate::server {

// redis://host:port[/db] → Redis; postgres://..., postgresql://... or a libpq "key=value" string →
// PostgreSQL; etcd://host:port → Unimplemented (not built yet). InvalidArgument for anything else,
// naming the URL and the accepted forms; Unimplemented for a backend this build lacks.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> ConnectBackend(const std::string& url);

// Installs or upgrades the schema a backend needs (PostgreSQL); InvalidArgument for a URL of a
// backend that needs none.
[[nodiscard]] absl::Status MigrateBackend(const std::string& url);

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_BACKEND_URL_H_
