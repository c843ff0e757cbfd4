#include "tests/support/postgres_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace tollgate::testing {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

std::string Bin(const char* name) { return std::string(PostgresServer::kBinDir) + "/" + name; }

}  // namespace

PostgresServer::~PostgresServer() {
  if (running_) Run(Bin("pg_ctl") + " -D " + dir_ + "/data -m immediate -w -t 30 stop");
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

bool PostgresServer::Run(const std::string& cmd) {
  std::string line = geteuid() == 0 ? "runuser -u postgres -- " + cmd : cmd;
  line += " >>" + dir_ + "/commands.log 2>&1";
  const int rc = std::system(line.c_str());
  if (rc != 0) {
    error_ = "command failed (" + std::to_string(rc) + "): " + cmd + "; see " + dir_ +
             "/commands.log and " + dir_ + "/server.log";
    return false;
  }
  return true;
}

bool PostgresServer::Start() {
  char tmpl[] = "/tmp/tollgate-pg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    error_ = "mkdtemp failed";
    return false;
  }
  dir_ = tmpl;
  if (geteuid() == 0) {
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr || chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      error_ = "no postgres OS user to run the server as (PostgreSQL refuses to run as root)";
      return false;
    }
  }
  if (!Run(Bin("initdb") + " -D " + dir_ + "/data -U postgres -A trust -E UTF8 --no-sync")) {
    return false;
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = FreePort();
    if (port_ != 0 && StartServer()) break;
  }
  if (!running_) return false;
  return Run(Bin("createdb") + " -h 127.0.0.1 -p " + std::to_string(port_) +
             " -U postgres tollgate");
}

bool PostgresServer::StartServer() {
  const std::string opts = "-p " + std::to_string(port_) + " -k " + dir_ +
                           " -c listen_addresses=127.0.0.1 -c fsync=off"
                           " -c full_page_writes=off -c max_connections=100";
  running_ = Run(Bin("pg_ctl") + " -D " + dir_ + "/data -l " + dir_ + "/server.log -w -t 60 -o '" +
                 opts + "' start");
  return running_;
}

void PostgresServer::Stop() {
  if (!running_) return;
  Run(Bin("pg_ctl") + " -D " + dir_ + "/data -m fast -w -t 60 stop");
  running_ = false;
}

bool PostgresServer::Restart() {
  if (running_) return true;
  return StartServer();
}

std::string PostgresServer::conninfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=tollgate";
}

std::string PostgresServer::url() const {
  return "postgres://postgres@127.0.0.1:" + std::to_string(port_) + "/tollgate";
}

}  // namespace tollgate::testing
