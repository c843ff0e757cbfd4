// `tollgate lock` end to end: the real binary against a real `tollgate serve`.
#include "client/lock_command.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/duration.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/server_process.h"
#include "tollgate/client.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using testing::ServerProcess;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class LockCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(dir_.path());
    ASSERT_TRUE(server_->ok());
  }
  std::string Server() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }

  // Starts `tollgate lock args...` with stderr to a file; returns its pid.
  pid_t Spawn(std::vector<std::string> args, const std::string& err_name = "stderr") {
    args.insert(args.begin(), {testing::TollgateBinary(), "lock"});
    const std::string err = Path(err_name);
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  }
  // Waits up to `limit` for pid; its exit code, or -1 (killed, or did not end: then SIGKILLed).
  static int Wait(pid_t pid, Duration limit = seconds(20)) {
    const auto deadline = Clock::now() + limit;
    int status = 0;
    while (Clock::now() < deadline) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
  }
  int Run(std::vector<std::string> args) { return Wait(Spawn(std::move(args))); }
  std::string Stderr(const std::string& name = "stderr") { return ReadFile(Path(name)); }

  // A shell command that appends a wall-clock timestamp (ns, date +%s%N) to `file` every 20 ms.
  std::string Ticker(const std::string& file) {
    return "while :; do date +%s%N >> " + file + "; sleep 0.02; done";
  }
  static int64_t WallNs() { return std::chrono::system_clock::now().time_since_epoch().count(); }
  static int64_t LastLine(const std::string& text) {
    std::istringstream in(text);
    std::string line, last;
    while (std::getline(in, line)) {
      if (!line.empty()) last = line;
    }
    return last.empty() ? 0 : std::stoll(last);
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST(DurationTest, Parses) {
  EXPECT_EQ(*client::ParseDuration("500ms", "--ttl"), milliseconds(500));
  EXPECT_EQ(*client::ParseDuration("30s", "--ttl"), seconds(30));
  EXPECT_EQ(*client::ParseDuration("5m", "--ttl"), std::chrono::minutes(5));
  EXPECT_EQ(*client::ParseDuration("0", "--wait"), Duration(0));
  for (const char* bad : {"", "5", "5x", "-1s", "1.5s", "s", "25h", "9999999999ms"}) {
    absl::StatusOr<Duration> d = client::ParseDuration(bad, "--ttl");
    EXPECT_TRUE(absl::IsInvalidArgument(d.status())) << bad;
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("--ttl")) << bad;
  }
}

TEST_F(LockCommandTest, BadArgumentsExit2NamingTheArgument) {
  EXPECT_EQ(Run({"k", "--ttl", "5x", "--server", Server(), "--", "true"}), 2);
  EXPECT_THAT(Stderr(), HasSubstr("--ttl"));
  EXPECT_EQ(Run({"k", "--server", Server(), "--", "true"}), 2);  // --ttl missing (CLI11)
  EXPECT_THAT(Stderr(), HasSubstr("--ttl"));
  EXPECT_EQ(Run({"k", "--ttl", "2s", "--wait", "later", "--", "true"}), 2);
  EXPECT_THAT(Stderr(), HasSubstr("--wait"));
  EXPECT_EQ(Run({"k", "--ttl", "2s", "--server", "nohost", "--", "true"}), 2);
  EXPECT_THAT(Stderr(), HasSubstr("--server"));
  EXPECT_EQ(
      Run({"k", "--ttl", "2s", "--server", Server(), "--backend", "redis://x:1", "--", "true"}), 2);
  EXPECT_THAT(Stderr(), HasSubstr("--backend"));
  EXPECT_EQ(Run({"k", "--ttl", "2s", "--server", Server()}), 2);  // no COMMAND
  EXPECT_THAT(Stderr(), HasSubstr("COMMAND"));
  EXPECT_EQ(Run({"k", "--ttl", "100ms", "--server", Server(), "--", "true"}), 2);  // < guard
  EXPECT_THAT(Stderr(), HasSubstr("--ttl"));
  EXPECT_EQ(Run({"k", "--ttl", "2s", "--max-hold", "soon", "--", "true"}), 2);
  EXPECT_THAT(Stderr(), HasSubstr("--max-hold"));
}

TEST_F(LockCommandTest, PassesExitStatusAndEnvironment) {
  const std::string out = Path("env");
  EXPECT_EQ(Run({"jobs/1", "--ttl", "5s", "--server", Server(), "--", "sh", "-c",
                 "echo \"$TOLLGATE_FENCE $TOLLGATE_LOCK_KEY\" > " + out + "; exit 3"}),
            3)
      << Stderr();
  std::string env = ReadFile(out);
  EXPECT_THAT(env, ::testing::MatchesRegex("[1-9][0-9]* jobs/1\n"));
  // Released when the command exits.
  auto client = Client::Connect({.port = server_->port()});
  ASSERT_TRUE(client.ok());
  auto info = client->backend().Info("jobs/1");
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
  // Killed by a signal: 128 + signal.
  EXPECT_EQ(Run({"jobs/1", "--ttl", "5s", "--server", Server(), "--", "sh", "-c", "kill -TERM $$"}),
            128 + SIGTERM);
  EXPECT_EQ(Run({"jobs/1", "--ttl", "5s", "--server", Server(), "--", "no-such-command-xyz"}), 127);
}

TEST_F(LockCommandTest, NotAcquiredExit75AndUnreachableExit69) {
  auto client = Client::Connect({.port = server_->port()});
  ASSERT_TRUE(client.ok());
  auto held = client->Acquire("k", {.ttl = seconds(10)});
  ASSERT_TRUE(held.ok() && held->has_value());
  auto t0 = Clock::now();
  EXPECT_EQ(Run({"k", "--ttl", "2s", "--wait", "300ms", "--server", Server(), "--", "true"}), 75);
  EXPECT_GE(Clock::now() - t0, milliseconds(290));
  EXPECT_THAT(Stderr(), HasSubstr("not acquired"));
  // Released during the wait: acquired (server-side WAIT).
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(300));
    EXPECT_TRUE((*held)->release().ok());
  });
  EXPECT_EQ(Run({"k", "--ttl", "2s", "--wait", "5s", "--server", Server(), "--", "true"}), 0)
      << Stderr();
  releaser.join();
  EXPECT_EQ(Run({"k", "--ttl", "2s", "--server", "127.0.0.1:1", "--", "true"}), 69);
}

TEST_F(LockCommandTest, ForwardsSigterm) {
  pid_t pid = Spawn({"k", "--ttl", "5s", "--server", Server(), "--", "sh", "-c",
                     "trap 'exit 42' TERM; while :; do sleep 0.01; done"});
  std::this_thread::sleep_for(milliseconds(500));
  kill(pid, SIGTERM);
  EXPECT_EQ(Wait(pid), 42) << Stderr();
}

TEST_F(LockCommandTest, MaxHoldStopsTheCommand) {
  auto t0 = Clock::now();
  EXPECT_EQ(
      Run({"k", "--ttl", "1s", "--max-hold", "1s", "--server", Server(), "--", "sleep", "30"}), 76)
      << Stderr();
  EXPECT_LT(Clock::now() - t0, seconds(5));
  EXPECT_THAT(Stderr(), HasSubstr("max hold exceeded"));
}

// The server stops answering (SIGSTOP): renewals time out, and the command is killed and
// `tollgate lock` exits 76 before the lease's expiry on the server (which is at most ttl after
// the SIGSTOP: no renewal reached it after that).
TEST_F(LockCommandTest, StoppedServerKillsCommandBeforeExpiry) {
  const std::string ticks = Path("ticks");
  pid_t pid = Spawn({"k", "--ttl", "2s", "--server", Server(), "--", "sh", "-c", Ticker(ticks)});
  std::this_thread::sleep_for(milliseconds(1500));  // a few renewals
  ASSERT_EQ(kill(server_->pid(), SIGSTOP), 0);
  const int64_t stopped_at = WallNs();
  const auto t_stop = Clock::now();
  int code = Wait(pid, seconds(10));
  const auto exited = Clock::now();
  kill(server_->pid(), SIGCONT);
  EXPECT_EQ(code, 76) << Stderr();
  EXPECT_LT(exited - t_stop, seconds(2)) << "not stopped before the server's expiry";
  std::this_thread::sleep_for(milliseconds(100));
  const int64_t last_tick = LastLine(ReadFile(ticks));
  EXPECT_GT(last_tick, stopped_at - 100'000'000);  // it did run until the loss
  EXPECT_LT(last_tick, stopped_at + 2'000'000'000) << "command ran past the server's expiry";
  const std::string after = ReadFile(ticks);
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(ReadFile(ticks), after) << "command still running";
  EXPECT_THAT(Stderr(), HasSubstr("unreachable"));
}

// `tollgate lock` itself stops (SIGSTOP): its renewals stop, and the reaper kills the command
// by safe_until, before another `tollgate lock` on the same key acquires it.
TEST_F(LockCommandTest, StoppedClientCommandKilledBeforeOthersAcquire) {
  const std::string ticks = Path("ticks"), second = Path("second");
  pid_t first = Spawn({"k", "--ttl", "2s", "--server", Server(), "--", "sh", "-c", Ticker(ticks)});
  std::this_thread::sleep_for(milliseconds(1000));
  ASSERT_EQ(kill(first, SIGSTOP), 0);
  const auto t_stop = Clock::now();
  pid_t other = Spawn({"k", "--ttl", "2s", "--wait", "10s", "--server", Server(), "--", "sh", "-c",
                       "date +%s%N > " + second},
                      "stderr2");
  EXPECT_EQ(Wait(other), 0) << Stderr("stderr2");
  EXPECT_LT(Clock::now() - t_stop, seconds(4));
  const int64_t second_ran = LastLine(ReadFile(second));
  const int64_t last_tick = LastLine(ReadFile(ticks));
  ASSERT_GT(last_tick, 0);
  EXPECT_LT(last_tick, second_ran) << "the first command still ran when the second acquired";
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(LastLine(ReadFile(ticks)), last_tick) << "first command still running";
  kill(first, SIGCONT);
  EXPECT_EQ(Wait(first), 76) << Stderr();
}

}  // namespace
}  // namespace tollgate
