// cpp-httplib's connection task queue, bounded: `workers` threads serve connections; up to
// `max_queued` more wait for a worker. Beyond that a connection is shed: it is served on the
// accepting thread with ShedThisRequest() true, and the server answers it 503 without doing any
// work (which also slows accepting down, so a flood backs up into the kernel's listen queue
// instead of into memory). cpp-httplib 0.11's TaskQueue cannot refuse a task: the socket belongs to
// the task, so shedding must still run it.
#ifndef TOLLGATE_HTTP_BOUNDED_TASK_QUEUE_H_
#define TOLLGATE_HTTP_BOUNDED_TASK_QUEUE_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "httplib.h"

namespace tollgate::http {

// True while the calling thread serves a shed connection.
bool ShedThisRequest();

class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  // REQUIRES: workers >= 1.
  BoundedTaskQueue(size_t workers, size_t max_queued);
  ~BoundedTaskQueue() override;

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then joins the workers. Idempotent.
  void shutdown() override;

 private:
  void Work();

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool shutdown_ = false;                   // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace tollgate::http

#endif  // TOLLGATE_HTTP_BOUNDED_TASK_QUEUE_H_
