#include "tests/support/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#ifndef TOLLGATE_BIN
#error "TOLLGATE_BIN must point at the tollgate executable"
#endif

namespace tollgate::testing {
std::string TollgateBinary() {
  const char* over = std::getenv("TOLLGATE_TEST_BIN");
  return over != nullptr && *over != '\0' ? over : TOLLGATE_BIN;
}

ServerProcess::ServerProcess(const std::string& data_dir, std::vector<std::string> extra_args) {
  int out[2];
  if (pipe(out) != 0) return;
  std::vector<std::string> args = {TollgateBinary(), "serve", "--port", "0",
                                   "--data-dir",     data_dir};
  // A --port in extra_args (e.g. to restart on the same port) replaces the default 0.
  if (std::find(extra_args.begin(), extra_args.end(), "--port") != extra_args.end()) {
    args.erase(args.begin() + 2, args.begin() + 4);
  }
  // Never the fixed default 7380: tests run in parallel.
  if (std::find(extra_args.begin(), extra_args.end(), "--http-port") == extra_args.end()) {
    args.insert(args.end(), {"--http-port", "0"});
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<size_t>(n));
    // "tollgate http on HOST:PORT" comes before the ready line when HTTP is on.
    if (auto h = seen.find("tollgate http on "); h != std::string::npos && http_port_ == 0) {
      if (auto hl = seen.find('\n', h); hl != std::string::npos) {
        std::string line = seen.substr(h, hl - h);
        http_port_ = std::atoi(line.substr(line.rfind(':') + 1).c_str());
      }
    }
    auto pos = seen.find("tollgate ready on ");
    auto nl = pos == std::string::npos ? std::string::npos : seen.find('\n', pos);
    if (nl != std::string::npos) {
      std::string line = seen.substr(pos, nl - pos);
      port_ = std::atoi(line.substr(line.rfind(':') + 1).c_str());
      break;
    }
  }
  close(out[0]);  // the server's later stdout writes are ignored (SIGPIPE is ignored there)
}

bool RunMigrate(const std::string& conninfo) {
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, STDOUT_FILENO);
    const std::string bin = TollgateBinary();
    execl(bin.c_str(), bin.c_str(), "migrate", "--backend", conninfo.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Kill();
}

int ServerProcess::Terminate() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill();
  return -1;
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "tollgate_test_XXXXXX").string();
  if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

}  // namespace tollgate::testing
