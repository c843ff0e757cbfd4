// Runs a private redis-server as a child process for tests: 127.0.0.1, a free port, data in a
// temporary directory. Persistence is on (AOF, fsync always) so Stop() + Restart() keeps the data,
// as a production deployment that relies on fences must (see docs/fencing-your-data.md).
#ifndef TOLLGATE_TESTS_SUPPORT_REDIS_SERVER_H_
#define TOLLGATE_TESTS_SUPPORT_REDIS_SERVER_H_

#include <sys/types.h>

#include <string>

namespace tollgate::testing {

class RedisServer {
 public:
  RedisServer() = default;
  // Kills the server if it still runs and removes its directory.
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts redis-server on a free port and waits (up to 10 s) until it answers PING. Retries on a
  // port collision. False if it could not start.
  bool Start();
  // SIGTERM, then waits for the process to exit (SIGKILL after 10 s). The port stays reserved for
  // Restart().
  void Stop();
  // Starts the server again on the same port and directory; waits until it answers PING.
  bool Restart();

  bool running() const { return pid_ > 0; }
  // The server's process id (-1 when stopped), e.g. to SIGSTOP it and simulate a hung server.
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  // "redis://127.0.0.1:<port>"
  std::string url() const;

 private:
  bool Launch();  // starts on port_ and waits for PING; false if it exited or never answered

  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_REDIS_SERVER_H_
