#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tollgate/event_loop.h"

namespace tollgate {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<EpollEventLoop> NewLoop() {
  auto loop = EpollEventLoop::Create();
  EXPECT_TRUE(loop.ok());
  return std::move(*loop);
}

TEST(EpollEventLoopTest, TimersRunInDeadlineOrderAndCancelledOnesDoNot) {
  auto loop = NewLoop();
  std::vector<int> order;
  const SteadyTime now = loop->clock()->SteadyNow();
  loop->RunAt(now + milliseconds(30), [&] { order.push_back(3); });
  loop->RunAt(now + milliseconds(10), [&] { order.push_back(1); });
  const uint64_t cancelled = loop->RunAt(now + milliseconds(20), [&] { order.push_back(2); });
  loop->CancelTimer(cancelled);
  EXPECT_TRUE(loop->RunUntil([&] { return order.size() == 2; }, now + std::chrono::seconds(5)));
  EXPECT_EQ(order, (std::vector<int>{1, 3}));
}

TEST(EpollEventLoopTest, PostFromAnotherThreadWakesTheLoop) {
  auto loop = NewLoop();
  bool ran = false;
  std::thread t([&] { loop->Post([&] { ran = true; }); });
  EXPECT_TRUE(
      loop->RunUntil([&] { return ran; }, loop->clock()->SteadyNow() + std::chrono::seconds(5)));
  t.join();
}

TEST(EpollEventLoopTest, WatchReportsReadableAndEndOfPassRunsAfterCallbacks) {
  auto loop = NewLoop();
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  std::vector<std::string> log;
  loop->Watch(fds[0], EventLoop::kReadable, [&](uint32_t ev) {
    EXPECT_TRUE(ev & EventLoop::kReadable);
    char buf[16];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    log.push_back("read " + std::to_string(n));
    loop->AtEndOfPass([&] { log.push_back("end of pass"); });
  });
  ASSERT_EQ(::write(fds[1], "abc", 3), 3);
  EXPECT_TRUE(loop->RunUntil([&] { return log.size() == 2; },
                             loop->clock()->SteadyNow() + std::chrono::seconds(5)));
  EXPECT_EQ(log, (std::vector<std::string>{"read 3", "end of pass"}));
  loop->Unwatch(fds[0]);
  ASSERT_EQ(::write(fds[1], "d", 1), 1);
  loop->RunOnce(milliseconds(20));
  EXPECT_EQ(log.size(), 2u);  // no longer watched
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(EpollEventLoopTest, RunUntilReturnsFalseAtTheDeadline) {
  auto loop = NewLoop();
  const SteadyTime start = loop->clock()->SteadyNow();
  EXPECT_FALSE(loop->RunUntil([] { return false; }, start + milliseconds(50)));
  EXPECT_GE(loop->clock()->SteadyNow() - start, milliseconds(50));
}

}  // namespace
}  // namespace tollgate
