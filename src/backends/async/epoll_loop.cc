// EpollEventLoop: epoll for fds, an eventfd for Post, a min-heap of timers.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "backends/async/timer_queue.h"
#include "tollgate/event_loop.h"

namespace tollgate {
namespace {

constexpr uint64_t kWakeTag = ~uint64_t{0};

uint32_t ToEpoll(uint32_t interest) {
  uint32_t e = 0;
  if (interest & EventLoop::kReadable) e |= EPOLLIN;
  if (interest & EventLoop::kWritable) e |= EPOLLOUT;
  return e;
}

class EpollLoopImpl final : public EpollEventLoop {
 public:
  EpollLoopImpl(Clock* clock, int epfd, int wakefd) : clock_(clock), epfd_(epfd), wakefd_(wakefd) {}
  ~EpollLoopImpl() override {
    {
      std::lock_guard<std::mutex> l(post_mu_);
      closed_ = true;
      posted_.clear();
    }
    ::close(epfd_);
    ::close(wakefd_);
  }

  void Watch(int fd, uint32_t interest, absl::AnyInvocable<void(uint32_t)> on_ready) override {
    epoll_event ev{};
    ev.events = ToEpoll(interest);
    ev.data.u64 = static_cast<uint64_t>(fd);
    auto it = watches_.find(fd);
    if (it == watches_.end()) {
      epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
      watches_.emplace(fd, std::make_shared<Handler>(std::move(on_ready)));
    } else {
      epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
      it->second = std::make_shared<Handler>(std::move(on_ready));
    }
  }

  void Unwatch(int fd) override {
    if (watches_.erase(fd) > 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  }

  uint64_t RunAt(SteadyTime at, absl::AnyInvocable<void()> fn) override {
    return timers_.Add(at, std::move(fn));
  }

  void CancelTimer(uint64_t id) override { timers_.Cancel(id); }

  void AtEndOfPass(absl::AnyInvocable<void()> fn) override {
    end_of_pass_.push_back(std::move(fn));
  }

  void Post(absl::AnyInvocable<void()> fn) override {
    {
      std::lock_guard<std::mutex> l(post_mu_);
      if (closed_) return;
      posted_.push_back(std::move(fn));
    }
    uint64_t one = 1;
    ssize_t r = ::write(wakefd_, &one, sizeof one);
    (void)r;
  }

  Clock* clock() override { return clock_; }

  bool RunUntil(absl::FunctionRef<bool()> done, SteadyTime deadline) override {
    while (!done()) {
      const SteadyTime now = clock_->SteadyNow();
      if (now >= deadline) return done();
      RunOnce(deadline - now);
    }
    return true;
  }

  void RunOnce(Duration max_wait) override {
    // Timers run after the wait, in this pass: RunUntil checks its condition between passes, so a
    // timer that completes what it waits for ends the pass (and the wait) at once.
    const int next_timer = timers_.NextTimeoutMs(clock_);
    // Work queued for the end of the previous pass's callbacks goes first (nothing may wait on it).
    if (!end_of_pass_.empty()) max_wait = Duration(0);
    int64_t ms = std::min<int64_t>(
        std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(max_wait).count()),
        60'000);
    if (next_timer >= 0) ms = std::min<int64_t>(ms, next_timer);
    epoll_event events[64];
    const int n = epoll_wait(epfd_, events, 64, static_cast<int>(ms));
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kWakeTag) {
        uint64_t v;
        while (::read(wakefd_, &v, sizeof v) > 0) {
        }
        RunPosted();
        continue;
      }
      const int fd = static_cast<int>(events[i].data.u64);
      auto it = watches_.find(fd);
      if (it == watches_.end()) continue;
      std::shared_ptr<Handler> h = it->second;  // survives an Unwatch from inside the callback
      uint32_t ev = 0;
      if (events[i].events & EPOLLIN) ev |= kReadable;
      if (events[i].events & EPOLLOUT) ev |= kWritable;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) ev |= kError | kReadable;
      (*h)(ev);
    }
    timers_.RunDue(clock_);
    RunEndOfPass();
  }

 private:
  using Handler = absl::AnyInvocable<void(uint32_t)>;

  void RunPosted() {
    std::vector<absl::AnyInvocable<void()>> fns;
    {
      std::lock_guard<std::mutex> l(post_mu_);
      fns.swap(posted_);
    }
    for (auto& fn : fns) fn();
  }

  void RunEndOfPass() {
    std::vector<absl::AnyInvocable<void()>> fns;
    fns.swap(end_of_pass_);
    for (auto& fn : fns) fn();
  }

  Clock* const clock_;
  const int epfd_;
  const int wakefd_;
  absl::flat_hash_map<int, std::shared_ptr<Handler>> watches_;
  TimerQueue timers_;
  std::vector<absl::AnyInvocable<void()>> end_of_pass_;
  std::mutex post_mu_;
  std::vector<absl::AnyInvocable<void()>> posted_;  // guarded by post_mu_
  bool closed_ = false;                             // guarded by post_mu_
};

}  // namespace

absl::StatusOr<std::unique_ptr<EpollEventLoop>> EpollEventLoop::Create(Clock* clock) {
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return absl::InternalError(std::string("epoll_create1: ") + std::strerror(errno));
  const int wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd < 0) {
    ::close(epfd);
    return absl::InternalError(std::string("eventfd: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev);
  return std::unique_ptr<EpollEventLoop>(new EpollLoopImpl(clock, epfd, wakefd));
}

}  // namespace tollgate
