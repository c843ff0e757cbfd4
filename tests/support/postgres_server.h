// A throwaway PostgreSQL 15 cluster for tests: initdb into a fresh temporary directory, a server on
// 127.0.0.1 and a free port (socket directory inside the temporary directory), one database.
// PostgreSQL refuses to run as root, so when the test runs as root every server command runs as the
// `postgres` OS user (runuser) and the directory is handed to that user.
#ifndef TOLLGATE_TESTS_SUPPORT_POSTGRES_SERVER_H_
#define TOLLGATE_TESTS_SUPPORT_POSTGRES_SERVER_H_

#include <string>

namespace tollgate::testing {

class PostgresServer {
 public:
  // Where the server binaries live (Debian's postgresql-15).
  static constexpr const char* kBinDir = "/usr/lib/postgresql/15/bin";

  PostgresServer() = default;
  // Stops the server (immediate mode) and removes the temporary directory.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // initdb, start, create the database. False (with error()) if any step fails. Call once.
  bool Start();
  // Fast shutdown: open connections are terminated. The data stays.
  void Stop();
  // Starts the stopped server again on the same port and data. False if it does not come up.
  bool Restart();

  bool running() const { return running_; }
  int port() const { return port_; }
  // libpq key=value string for the test database, e.g. "host=127.0.0.1 port=5433 user=postgres
  // dbname=tollgate".
  std::string conninfo() const;
  // The same as a postgres:// URL.
  std::string url() const;
  const std::string& error() const { return error_; }

 private:
  // Runs a shell command line (as the postgres user when we are root); true on exit status 0.
  bool Run(const std::string& cmd);
  bool StartServer();

  std::string dir_;
  int port_ = 0;
  bool running_ = false;
  std::string error_;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_POSTGRES_SERVER_H_
