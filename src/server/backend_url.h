// `tollgate migrate --backend URL`: install or upgrade the schema a backend needs. (Which backend a
// URL names, and opening it, is OpenBackend / OpenAsyncBackend in tollgate/async_backend.h.)
#ifndef TOLLGATE_SERVER_BACKEND_URL_H_
#define TOLLGATE_SERVER_BACKEND_URL_H_

#include <string>

#include "absl/status/status.h"

namespace tollgate::server {

// Installs or upgrades the schema a backend needs (PostgreSQL); InvalidArgument for a URL of a
// backend that needs none.
[[nodiscard]] absl::Status MigrateBackend(const std::string& url);

}  // namespace tollgate::server

#endif  // TOLLGATE_SERVER_BACKEND_URL_H_
