// Runs a private single-member etcd server as a child process for tests: 127.0.0.1, free client and
// peer ports, data in a temporary directory (kept across Stop() + Restart(), so revisions, i.e.
// fences, never go back).
#ifndef TOLLGATE_TESTS_SUPPORT_ETCD_SERVER_H_
#define TOLLGATE_TESTS_SUPPORT_ETCD_SERVER_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace tollgate::testing {

class EtcdServer {
 public:
  EtcdServer() = default;
  // Kills the server if it still runs and removes its directory.
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // Starts etcd on free ports and waits (up to 20 s) until GET /health answers healthy. Retries on
  // a port collision. False if it could not start.
  bool Start();
  // SIGTERM, then waits for the process to exit (SIGKILL after 10 s). The ports stay reserved for
  // Restart().
  void Stop();
  // Starts the server again on the same ports and directory; waits until it is healthy.
  bool Restart();

  // Extra etcd flags for Start() (e.g. {"--quota-backend-bytes", "1048576"}).
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return client_port_; }
  // "etcd://127.0.0.1:<port>"
  std::string url() const;

 private:
  bool Launch();  // starts on the chosen ports and waits for /health

  pid_t pid_ = -1;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::string dir_;
  std::vector<std::string> extra_args_;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_ETCD_SERVER_H_
