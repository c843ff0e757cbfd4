// The dashboard (src/dashboard/dashboard.h) in headless Chromium (Debian's `chromium`, as
// report_chromium_test.cc; without it these tests fail, they do not skip). Each check loads the
// page over HTTP, lets it poll /metrics for a few (virtual) seconds (--virtual-time-budget: timers
// run, fetches are real) and dumps the DOM:
//  - against a tiny HTTP server run by the test that serves the page and a canned /metrics whose
//    counters grow with every scrape: every chart is drawn from several polls, and a second dump
//    a few seconds later shows other values; a /metrics that answers 401 shows the token note;
//  - against a live `tollgate serve --http-port N` under RESP load (RATE.CHECK with
//    examples/policies/chat.yaml, THROTTLE, LOCK.ACQUIRE/RELEASE, FENCE.SET with stale fences):
//    the same, with the server's own numbers. Skipped (with a message) while the binary has no
//    --http-port.
// In all of them the page's script-error hook and Chromium's console log show no errors. Outputs
// (DOM dumps, logs, screenshots) stay in the build directory under dashboard_chromium/.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dashboard/dashboard.h"
#include "tests/support/chromium.h"
#include "tests/support/resp_client.h"
#include "tests/support/server_process.h"

namespace tollgate::dashboard {
namespace {

namespace fs = std::filesystem;
using tollgate::testing::FindChromium;
using tollgate::testing::Quote;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kChromiumTimeoutSeconds = 90;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path OutDir() {
  fs::path dir = fs::path(TOLLGATE_DASHBOARD_OUT_DIR);
  fs::create_directories(dir);
  return dir;
}

struct ChromiumRun {
  int exit_code = -1;
  std::string out;  // the DOM with --dump-dom
  std::string err;  // Chromium's log, including the page's console messages
};

// Headless Chromium on `url` for `budget_ms` of virtual time, in a fresh profile.
ChromiumRun RunChromium(const std::string& url, const std::string& mode_args, const std::string& tag,
                        int budget_ms) {
  ChromiumRun run;
  std::string chromium = FindChromium();
  if (chromium.empty()) return run;
  tollgate::testing::TempDir profile;
  fs::path out = OutDir() / (tag + ".out"), err = OutDir() / (tag + ".err");
  std::string cmd = "timeout -k 10 " + std::to_string(kChromiumTimeoutSeconds) + " " +
                    Quote(chromium) +
                    " --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage"
                    " --enable-logging=stderr --v=0 --no-first-run --no-default-browser-check"
                    " --disable-extensions --disable-background-networking --disable-sync"
                    " --virtual-time-budget=" +
                    std::to_string(budget_ms) + " --user-data-dir=" + Quote(profile.path()) +
                    " " + mode_args + " " + Quote(url) + " >" + Quote(out.string()) + " 2>" +
                    Quote(err.string()) + " </dev/null";
  int status = std::system(cmd.c_str());
  run.exit_code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = ReadFile(out);
  run.err = ReadFile(err);
  return run;
}

std::string OpeningTag(const std::string& html, const std::string& id) {
  size_t at = html.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  size_t start = html.rfind('<', at);
  size_t end = html.find('>', at);
  return html.substr(start, end - start + 1);
}

std::string Attr(const std::string& tag, const std::string& name) {
  std::string key = " " + name + "=\"";
  size_t at = tag.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  size_t end = tag.find('"', at);
  return end == std::string::npos ? "" : tag.substr(at, end - at);
}

std::string BodyTag(const std::string& dom) {
  size_t b = dom.find("<body");
  return b == std::string::npos ? "" : dom.substr(b, dom.find('>', b) - b + 1);
}

// The element with this id up to its closing tag (for <svg>: the whole chart).
std::string Element(const std::string& dom, const std::string& id, const std::string& tag) {
  size_t at = dom.find("id=\"" + id + "\"");
  if (at == std::string::npos) return "";
  size_t start = dom.rfind('<', at);
  size_t end = dom.find("</" + tag + ">", at);
  return end == std::string::npos ? "" : dom.substr(start, end - start);
}

std::vector<std::string> DomProblems(const std::string& dom) {
  std::vector<std::string> problems;
  size_t h = dom.find("<html");
  std::string html_tag = h == std::string::npos ? "" : dom.substr(h, dom.find('>', h) - h + 1);
  std::string body = BodyTag(dom);
  if (Attr(html_tag, "data-script-errors") != "0") {
    problems.push_back("<html data-script-errors=\"" + Attr(html_tag, "data-script-errors") +
                       "\">");
  }
  if (Attr(body, "data-script-errors") != "0") {
    problems.push_back("<body data-script-errors=\"" + Attr(body, "data-script-errors") +
                       "\">: " + Attr(body, "data-script-error-log"));
  }
  if (Attr(body, "data-scripts-ran") != "1") {
    problems.push_back("the page's script did not run to its end (no data-scripts-ran=\"1\")");
  }
  return problems;
}

std::vector<std::string> ConsoleProblems(const std::string& log) {
  std::vector<std::string> problems;
  std::stringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    bool console = line.find(":CONSOLE") != std::string::npos;
    if (line.find("Uncaught") != std::string::npos ||
        line.find("ERROR:CONSOLE") != std::string::npos ||
        (console && (line.find("Error") != std::string::npos ||
                     line.find("net::ERR_") != std::string::npos))) {
      problems.push_back("console: " + line);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server on 127.0.0.1 (one request per connection) answering from `handler`.

struct Response {
  int status = 200;
  std::string content_type = "text/plain; version=0.0.4; charset=utf-8";
  std::string body;
};

class TinyHttpServer {
 public:
  explicit TinyHttpServer(std::function<Response(const std::string& path)> handler)
      : handler_(std::move(handler)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close(fd_);
      fd_ = -1;
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~TinyHttpServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos && req.size() < 65536) {
        pollfd q{c, POLLIN, 0};
        if (::poll(&q, 1, 2000) <= 0) break;
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      size_t sp = req.find(' '), sp2 = req.find(' ', sp + 1);
      std::string path = sp == std::string::npos || sp2 == std::string::npos
                             ? "/"
                             : req.substr(sp + 1, sp2 - sp - 1);
      Response r = handler_(path);
      std::string out = "HTTP/1.1 " + std::to_string(r.status) + " X\r\nContent-Type: " +
                        r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) +
                        "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n" + r.body;
      for (size_t off = 0; off < out.size();) {
        ssize_t n = write(c, out.data() + off, out.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      close(c);
    }
  }

  std::function<Response(const std::string&)> handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Canned /metrics: every metric the dashboard reads, counters growing with each scrape `n` (and
// with a rate that changes over time, so consecutive dumps differ).
std::string CannedMetrics(int n) {
  double k = n * (n + 3);
  std::ostringstream m;
  m << "# HELP tollgate_build_info Build.\n# TYPE tollgate_build_info gauge\n"
    << "tollgate_build_info{version=\"0.1.0-test\"} 1\n"
    << "# TYPE tollgate_connected_clients gauge\ntollgate_connected_clients " << 3 + n % 4 << "\n"
    << "# TYPE tollgate_ratelimit_decisions_total counter\n";
  const char* layers[] = {"global", "ip", "user_type", "candidate"};
  for (int i = 0; i < 4; ++i) {
    m << "tollgate_ratelimit_decisions_total{policy=\"chat\",layer=\"" << layers[i]
      << "\",result=\"allowed\"} " << 900 * k / (i + 1) << "\n";
    m << "tollgate_ratelimit_decisions_total{policy=\"chat\",layer=\"" << layers[i]
      << "\",result=\"denied\"} " << (i == 3 ? 0 : 40 * k * i) << "\n";
    if (i == 3) {
      m << "tollgate_ratelimit_decisions_total{policy=\"chat\",layer=\"candidate\","
           "result=\"shadow_denied\"} "
        << 55 * k << "\n";
    }
  }
  m << "# TYPE tollgate_ratelimit_check_duration_seconds histogram\n";
  // Checks observed so far, per bucket: the distribution shifts with each scrape, so the
  // quantiles over a window move.
  const double les[] = {0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005};
  double cum[7] = {0, 0, 0, 0, 0, 0, 0};
  for (int j = 1; j <= n; ++j) {
    const double slow = (j % 3) * 0.1;  // share moved to the slow buckets
    const double share[7] = {0.1, 0.5 - slow, 0.8 - slow, 0.97 - slow / 2, 0.995, 1, 1};
    for (int i = 0; i < 7; ++i) cum[i] += 3000.0 * j * share[i];
  }
  for (int i = 0; i < 6; ++i) {
    m << "tollgate_ratelimit_check_duration_seconds_bucket{policy=\"chat\",le=\"" << les[i]
      << "\"} " << static_cast<long>(cum[i]) << "\n";
  }
  m << "tollgate_ratelimit_check_duration_seconds_bucket{policy=\"chat\",le=\"+Inf\"} "
    << static_cast<long>(cum[6]) << "\n"
    << "tollgate_ratelimit_check_duration_seconds_sum{policy=\"chat\"} " << 0.0001 * cum[6]
    << "\ntollgate_ratelimit_check_duration_seconds_count{policy=\"chat\"} "
    << static_cast<long>(cum[6]) << "\n"
    << "# TYPE tollgate_lock_waiters gauge\ntollgate_lock_waiters " << n % 5 << "\n"
    << "# TYPE tollgate_lock_acquisitions_total counter\n"
    << "tollgate_lock_acquisitions_total{result=\"granted\"} " << 20 * k << "\n"
    << "tollgate_lock_acquisitions_total{result=\"contended\"} " << 4 * k << "\n"
    << "tollgate_lock_acquisitions_total{result=\"timeout\"} " << n << "\n"
    << "# TYPE tollgate_fence_writes_total counter\n"
    << "tollgate_fence_writes_total{result=\"accepted\"} " << 10 * k << "\n"
    << "tollgate_fence_writes_total{result=\"stale\"} " << 2 * n << "\n"
    << "# TYPE tollgate_store_fsync_duration_seconds histogram\n"
    << "tollgate_store_fsync_duration_seconds_bucket{le=\"0.0005\"} " << 10 * n << "\n"
    << "tollgate_store_fsync_duration_seconds_bucket{le=\"0.001\"} " << 30 * n << "\n"
    << "tollgate_store_fsync_duration_seconds_bucket{le=\"0.005\"} " << 39 * n << "\n"
    << "tollgate_store_fsync_duration_seconds_bucket{le=\"+Inf\"} " << 40 * n << "\n"
    << "tollgate_store_fsync_duration_seconds_sum " << 0.001 * 40 * n << "\n"
    << "tollgate_store_fsync_duration_seconds_count " << 40 * n << "\n"
    << "# TYPE tollgate_policy_info gauge\n"
    << "tollgate_policy_info{path=\"/etc/tollgate/chat \\\"prod\\\".yaml\"} 1\n"
    << "tollgate_policy_last_reload_success 1\n"
    << "tollgate_policy_last_reload_timestamp_seconds 1767225600\n"
    << "tollgate_policy_reloads_total{result=\"ok\"} 2\n"
    << "tollgate_policy_reloads_total{result=\"error\"} 1\n";
  return m.str();
}

// Every chart of the page is drawn, from data (not the "no data yet" placeholder) where
// `with_data` lists it; returns id -> data-last.
std::map<std::string, std::string> ExpectChartsDrawn(const std::string& dom,
                                                     const std::vector<std::string>& with_data) {
  std::map<std::string, std::string> last;
  for (const char* id : {"chart-allowed", "chart-denied", "chart-shadow", "chart-deny-share",
                         "chart-latency", "chart-locks", "chart-fences", "chart-fsync"}) {
    std::string tag = OpeningTag(dom, id);
    EXPECT_THAT(tag, HasSubstr("<svg")) << "no #" << id << " <svg> in the DOM";
    last[id] = Attr(tag, "data-last");
  }
  for (const auto& id : with_data) {
    std::string svg = Element(dom, id, "svg");
    EXPECT_GT(std::atoi(Attr(OpeningTag(dom, id), "data-points").c_str()), 0) << id;
    EXPECT_THAT(svg, ::testing::Not(HasSubstr("no data yet"))) << id;
    if (id != "chart-deny-share") {
      // At least one drawn line with two or more points.
      EXPECT_THAT(svg, ::testing::ContainsRegex("class=\"line\"[^>]* d=\"M[0-9.]+,[0-9.]+L"))
          << id << ":\n"
          << svg;
    } else {
      EXPECT_THAT(svg, HasSubstr("<rect class=\"bar\"")) << svg;
    }
  }
  for (const char* attr : {" src=", " href=", "url(", "@import"}) {
    EXPECT_THAT(dom, ::testing::Not(HasSubstr(attr))) << attr;
  }
  return last;
}

struct Dump {
  std::string dom;
  std::map<std::string, std::string> last;
};

Dump LoadAndCheck(const std::string& url, const std::string& tag,
                  const std::vector<std::string>& with_data) {
  ChromiumRun run = RunChromium(url, "--window-size=1280,1800 --dump-dom", tag, 6000);
  EXPECT_EQ(run.exit_code, 0) << "chromium --dump-dom failed; its log:\n" << run.err;
  EXPECT_THAT(run.out, HasSubstr("</html>")) << run.err;
  EXPECT_THAT(DomProblems(run.out), IsEmpty());
  EXPECT_THAT(ConsoleProblems(run.err), IsEmpty());
  std::string body = BodyTag(run.out);
  EXPECT_EQ(Attr(body, "data-metrics-state"), "ok") << body;
  EXPECT_GE(std::atoi(Attr(body, "data-polls").c_str()), 3) << body;
  return {run.out, ExpectChartsDrawn(run.out, with_data)};
}

void Screenshot(const std::string& url, const std::string& name) {
  fs::path png = OutDir() / (name + ".png");
  fs::remove(png);
  ChromiumRun shot = RunChromium(
      url, "--hide-scrollbars --window-size=1280,1700 --screenshot=" + Quote(png.string()),
      name + ".png", 8000);
  EXPECT_EQ(shot.exit_code, 0) << shot.err;
  std::string bytes = ReadFile(png);
  EXPECT_GT(bytes.size(), 30'000u) << png;
  EXPECT_EQ(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n"), 0) << png;
  EXPECT_THAT(ConsoleProblems(shot.err), IsEmpty());
}

class DashboardChromiumTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(FindChromium().empty())
        << "chromium not found (set TOLLGATE_CHROMIUM or run scripts/install-deps.sh)";
  }
};

const std::vector<std::string> kAllCharts = {"chart-allowed", "chart-denied",  "chart-shadow",
                                             "chart-deny-share", "chart-latency", "chart-locks",
                                             "chart-fences", "chart-fsync"};

TEST_F(DashboardChromiumTest, ChartsDrawAndMoveAgainstCannedMetrics) {
  std::atomic<int> scrapes{0};
  TinyHttpServer server([&](const std::string& path) {
    if (path == "/") return Response{200, "text/html; charset=utf-8", std::string(DashboardHtml())};
    if (path == "/metrics") return Response{200, "text/plain; version=0.0.4", CannedMetrics(++scrapes)};
    return Response{404, "text/plain", "not found"};
  });
  ASSERT_GT(server.port(), 0);
  std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  Dump first = LoadAndCheck(url, "canned_1", kAllCharts);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  Dump second = LoadAndCheck(url, "canned_2", kAllCharts);
  for (const char* id : {"chart-allowed", "chart-denied", "chart-latency", "chart-locks"}) {
    EXPECT_NE(first.last[id], second.last[id]) << id << " did not move";
  }
  // The header: build, policy file (escaped quotes decoded), last reload, reload counts.
  EXPECT_THAT(second.dom, HasSubstr("<dd id=\"version\">0.1.0-test</dd>"));
  EXPECT_THAT(second.dom, HasSubstr("/etc/tollgate/chat \"prod\".yaml"));
  EXPECT_THAT(second.dom, HasSubstr("<dd id=\"policy-reload\" class=\"ok\">ok at 2026-01-01 00:00:00 UTC"));
  EXPECT_THAT(second.dom, HasSubstr("<dd id=\"policy-reloads\">1 error, 2 ok</dd>"));
  Screenshot(url, "canned");
}

TEST_F(DashboardChromiumTest, MetricsAuthShowsTheTokenNote) {
  TinyHttpServer server([&](const std::string& path) {
    if (path == "/") return Response{200, "text/html; charset=utf-8", std::string(DashboardHtml())};
    return Response{401, "text/plain", "unauthorized"};
  });
  ASSERT_GT(server.port(), 0);
  ChromiumRun run = RunChromium("http://127.0.0.1:" + std::to_string(server.port()) + "/",
                                "--dump-dom", "auth", 3000);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(DomProblems(run.out), IsEmpty());
  EXPECT_EQ(Attr(BodyTag(run.out), "data-metrics-state"), "auth");
  std::string note = OpeningTag(run.out, "auth-needed");
  EXPECT_THAT(note, HasSubstr("<div")) << run.out;
  EXPECT_THAT(note, ::testing::Not(HasSubstr("hidden")));
  EXPECT_THAT(run.out, HasSubstr("needs a Bearer token (--metrics-auth)"));
  // The failed fetch (401) is logged by Chromium as a resource error: that one is expected.
}

// A free TCP port on 127.0.0.1 (bound and released).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool BinaryHasHttp() {
  std::string cmd = Quote(tollgate::testing::TollgateBinary()) + " serve --help 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return false;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out.find("--http-port") != std::string::npos;
}

// RESP load from a few threads until stopped: rate checks (some users over their limits, so
// layers deny and the shadow layer disagrees), throttles, contended locks, fenced writes with
// stale fences.
class Load {
 public:
  explicit Load(int port) {
    for (int t = 0; t < 3; ++t) {
      threads_.emplace_back([this, port, t] {
        tollgate::testing::Client c(port);
        if (!c.ok()) return;
        for (long i = 0; !stop_; ++i) {
          std::string user = "u" + std::to_string((i * 7 + t) % 40);
          c.Run({"RATE.CHECK", "chat", "ip", "10.0.0." + std::to_string(i % 3), "user", user,
                 "type", i % 5 == 0 ? "code_paste" : "text"});
          c.Run({"THROTTLE", "k" + std::to_string(i % 10), "20", "50"});
          if (i % 4 == 0) {
            auto r = c.Run({"LOCK.ACQUIRE", "job" + std::to_string(i % 2), "50", "WAIT", "5"});
            (void)r;
          }
          if (i % 8 == 0) {
            c.Run({"FENCE.SET", "res", std::to_string(i % 16 == 0 ? 1 : 1000 + i), "v"});
          }
        }
      });
    }
  }
  ~Load() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

TEST_F(DashboardChromiumTest, ChartsDrawAndMoveAgainstALiveServerUnderLoad) {
  if (!BinaryHasHttp()) {
    GTEST_SKIP() << "tollgate serve has no --http-port yet (the HTTP server, src/http)";
  }
  tollgate::testing::TempDir data;
  int http_port = FreePort();
  ASSERT_GT(http_port, 0);
  tollgate::testing::ServerProcess server(
      data.path(), {"--config", TOLLGATE_CHAT_YAML, "--http-port", std::to_string(http_port)});
  ASSERT_TRUE(server.ok());
  Load load(server.port());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::string url = "http://127.0.0.1:" + std::to_string(http_port) + "/";
  std::vector<std::string> moving = {"chart-allowed", "chart-denied", "chart-shadow",
                                     "chart-deny-share", "chart-latency", "chart-locks"};
  Dump first = LoadAndCheck(url, "live_1", moving);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  Dump second = LoadAndCheck(url, "live_2", moving);
  // Counters' rates move under load; latency quantiles are read from histogram buckets and may
  // rightly stay in the same bucket from one dump to the next (they are only required to draw).
  for (const char* id : {"chart-allowed", "chart-locks"}) {
    EXPECT_NE(first.last[id], second.last[id]) << id << " did not move";
  }
  EXPECT_THAT(second.dom, HasSubstr("chat.yaml"));
  Screenshot(url, "live");
}

}  // namespace
}  // namespace tollgate::dashboard
