#include "tollgate/client.h"

#include "client/resp_backend.h"

namespace tollgate {

absl::StatusOr<Client> Client::Connect(const ClientOptions& options) {
  absl::StatusOr<std::unique_ptr<Backend>> backend = client::NewRespBackend(options);
  if (!backend.ok()) return backend.status();
  return Client(std::move(*backend));
}

Client::Client(Backend& backend) : backend_(&backend) {}
Client::Client(std::unique_ptr<Backend> owned) : owned_(std::move(owned)), backend_(owned_.get()) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

}  // namespace tollgate
