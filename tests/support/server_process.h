// Runs the real `tollgate serve` binary as a child process for end-to-end tests.
#ifndef TOLLGATE_TESTS_SUPPORT_SERVER_PROCESS_H_
#define TOLLGATE_TESTS_SUPPORT_SERVER_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace tollgate::testing {

class ServerProcess {
 public:
  // Starts `tollgate serve --port 0 --http-port 0 --data-dir data_dir extra_args...` and waits (up
  // to 20 s) for its ready line. ok() tells whether it came up. A "--port" or "--http-port" in
  // extra_args replaces the default one.
  ServerProcess(const std::string& data_dir, std::vector<std::string> extra_args = {});
  // SIGKILLs the server if it still runs.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool ok() const { return port_ > 0; }
  int port() const { return port_; }
  // The HTTP port from the "tollgate http on" line; 0 with --http-port off.
  int http_port() const { return http_port_; }
  pid_t pid() const { return pid_; }

  // Sends SIGTERM and waits; returns the exit status (or -1 if killed by a signal / timeout).
  int Terminate();
  // kill -9, then reaps the process.
  void Kill();

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int http_port_ = 0;
};

// The binary under test: $TOLLGATE_TEST_BIN if set and non-empty (to run the end-to-end tests
// against another build, e.g. an older one to show a regression test fails there), else the one
// this build made.
std::string TollgateBinary();

// Runs `tollgate migrate --backend conninfo` (stdout discarded) and waits for it; true if it exited
// 0. conninfo is passed as one argument, so it needs no shell quoting.
bool RunMigrate(const std::string& conninfo);

// A fresh, empty temporary directory removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_SERVER_PROCESS_H_
