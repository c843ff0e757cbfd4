#include "http/bounded_task_queue.h"

#include <utility>

namespace tollgate::http {
namespace {
thread_local bool shed = false;
}  // namespace

bool ShedThisRequest() { return shed; }

BoundedTaskQueue::BoundedTaskQueue(size_t workers, size_t max_queued) : max_queued_(max_queued) {
  for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(); });
}

BoundedTaskQueue::~BoundedTaskQueue() { shutdown(); }

void BoundedTaskQueue::enqueue(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (jobs_.size() < max_queued_ && !shutdown_) {
      jobs_.push_back(std::move(fn));
      cv_.notify_one();
      return;
    }
  }
  shed = true;
  fn();  // answers 503 and closes the socket
  shed = false;
}

void BoundedTaskQueue::shutdown() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void BoundedTaskQueue::Work() {
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return shutdown_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      fn = std::move(jobs_.front());
      jobs_.pop_front();
    }
    fn();
  }
}

}  // namespace tollgate::http
