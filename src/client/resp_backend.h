// The Backend of a tollgate::Client: every Backend method as one RESP command to `tollgate serve`.
#ifndef TOLLGATE_CLIENT_RESP_BACKEND_H_
#define TOLLGATE_CLIENT_RESP_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "tollgate/backend.h"
#include "tollgate/client.h"

namespace tollgate::client {

// Connects (RespPool::Check) and returns the backend. Errors as Client::Connect; the command
// mapping and error mapping are described there.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Backend>> NewRespBackend(const ClientOptions& options);

}  // namespace tollgate::client

#endif  // TOLLGATE_CLIENT_RESP_BACKEND_H_
