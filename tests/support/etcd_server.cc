#include "tests/support/etcd_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "tests/support/child_process.h"

namespace tollgate::testing {
namespace {

size_t Collect(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

bool Healthy(int port) {
  CURL* c = curl_easy_init();
  if (c == nullptr) return false;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/health";
  std::string body;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 200L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 500L);
  const bool ok = curl_easy_perform(c) == CURLE_OK && body.find("\"true\"") != std::string::npos;
  curl_easy_cleanup(c);
  return ok;
}

}  // namespace

EtcdServer::~EtcdServer() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string EtcdServer::url() const { return "etcd://127.0.0.1:" + std::to_string(client_port_); }

bool EtcdServer::Start() {
  if (pid_ > 0) return true;
  if (dir_.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tollgate_etcd_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return false;
    dir_ = tmpl;
  }
  for (int attempt = 0; attempt < 8; ++attempt) {
    client_port_ = FreeLoopbackPort();
    peer_port_ = FreeLoopbackPort();
    if (client_port_ == 0 || peer_port_ == 0 || client_port_ == peer_port_) continue;
    if (Launch()) return true;  // a collision makes etcd exit: try other ports
    std::error_code ec;         // a failed first boot may leave a half-made member directory
    std::filesystem::remove_all(dir_ + "/data", ec);
  }
  client_port_ = peer_port_ = 0;
  return false;
}

bool EtcdServer::Launch() {
  const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
  const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
  std::vector<std::string> args = {"etcd",
                                   "--name",
                                   "tollgate",
                                   "--data-dir",
                                   dir_ + "/data",
                                   "--listen-client-urls",
                                   client,
                                   "--advertise-client-urls",
                                   client,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   "tollgate=" + peer,
                                   "--logger",
                                   "zap",
                                   "--log-outputs",
                                   dir_ + "/etcd.log"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  pid_ = SpawnQuiet(std::move(args));
  if (pid_ < 0) return false;
  return WaitUntilReady(&pid_, std::chrono::seconds(20), std::chrono::milliseconds(50),
                        [this] { return Healthy(client_port_); });
}

void EtcdServer::Stop() { StopChild(&pid_); }

bool EtcdServer::Restart() {
  if (pid_ > 0) return true;
  if (client_port_ == 0 || dir_.empty()) return false;
  // The ports may briefly be unbindable: retry for a few seconds.
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (Launch()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

}  // namespace tollgate::testing
