// The simulator's event queue: a binary min-heap of (time, sequence) keyed entries, one per
// connection with a message in flight. Sequence numbers make ties deterministic: of two events at
// the same nanosecond, the one scheduled first runs first. ReplaceTop reschedules the connection
// just served with one sift-down instead of a pop and a push.
#ifndef TOLLGATE_SIM_EVENT_QUEUE_H_
#define TOLLGATE_SIM_EVENT_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tollgate::sim {

class EventQueue {
 public:
  struct Event {
    int64_t time;
    uint64_t seq;
    uint32_t conn;
  };

  void Reserve(size_t n) { heap_.reserve(n); }
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  const Event& top() const { return heap_.front(); }

  void Push(int64_t time, uint32_t conn) {
    heap_.push_back({time, seq_++, conn});
    SiftUp(heap_.size() - 1);
  }
  void Pop() {
    heap_.front() = heap_.back();
    heap_.pop_back();
    if (!heap_.empty()) SiftDown(0);
  }
  // Replaces the top entry with (time, conn) scheduled now.
  void ReplaceTop(int64_t time, uint32_t conn) {
    heap_.front() = {time, seq_++, conn};
    SiftDown(0);
  }

 private:
  static bool Less(const Event& a, const Event& b) {
    return a.time != b.time ? a.time < b.time : a.seq < b.seq;
  }
  void SiftUp(size_t i) {
    Event e = heap_[i];
    while (i > 0) {
      const size_t parent = (i - 1) / 2;
      if (!Less(e, heap_[parent])) break;
      heap_[i] = heap_[parent];
      i = parent;
    }
    heap_[i] = e;
  }
  void SiftDown(size_t i) {
    const size_t n = heap_.size();
    Event e = heap_[i];
    while (true) {
      size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && Less(heap_[child + 1], heap_[child])) ++child;
      if (!Less(heap_[child], e)) break;
      heap_[i] = heap_[child];
      i = child;
    }
    heap_[i] = e;
  }

  std::vector<Event> heap_;
  uint64_t seq_ = 0;
};

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIM_EVENT_QUEUE_H_
