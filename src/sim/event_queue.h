// The simulator's event queue: a 4-ary min-heap of (time, sequence) keyed entries, one per
// connection with a message in flight. Sequence numbers make ties deterministic: of two events at
// the same nanosecond, the one scheduled first runs first. Entries are 16 bytes (the sequence
// number and the connection share one word) and a node's four children are adjacent, so a sift
// touches about half as many cache lines as a binary heap of 24-byte entries. ReplaceTop
// reschedules the connection just served with one sift-down instead of a pop and a push.
#ifndef TOLLGATE_SIM_EVENT_QUEUE_H_
#define TOLLGATE_SIM_EVENT_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tollgate::sim {

class EventQueue {
 public:
  static constexpr uint32_t kMaxConns = 1u << 24;  // connection ids fit in 24 bits

  struct Event {
    int64_t time;
    uint64_t key;  // sequence << 24 | connection
    uint32_t conn() const { return static_cast<uint32_t>(key & (kMaxConns - 1)); }
  };

  void Reserve(size_t n) { heap_.reserve(n); }
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  const Event& top() const { return heap_.front(); }
  // The top's child that would become the top if the top were removed (nullptr if none).
  const Event* runner_up() const {
    const size_t n = heap_.size();
    if (n < 2) return nullptr;
    size_t best = 1;
    for (size_t c = 2; c <= 4 && c < n; ++c) {
      if (Less(heap_[c], heap_[best])) best = c;
    }
    return &heap_[best];
  }

  // `conn` < kMaxConns.
  void Push(int64_t time, uint32_t conn) {
    heap_.push_back({time, Key(conn)});
    SiftUp(heap_.size() - 1);
  }
  void Pop() {
    heap_.front() = heap_.back();
    heap_.pop_back();
    if (!heap_.empty()) SiftDown(0);
  }
  // Replaces the top entry with (time, conn) scheduled now.
  void ReplaceTop(int64_t time, uint32_t conn) {
    heap_.front() = {time, Key(conn)};
    SiftDown(0);
  }

 private:
  uint64_t Key(uint32_t conn) { return (seq_++ << 24) | conn; }
  static bool Less(const Event& a, const Event& b) {
    return a.time != b.time ? a.time < b.time : a.key < b.key;
  }
  void SiftUp(size_t i) {
    const Event e = heap_[i];
    while (i > 0) {
      const size_t parent = (i - 1) / 4;
      if (!Less(e, heap_[parent])) break;
      heap_[i] = heap_[parent];
      i = parent;
    }
    heap_[i] = e;
  }
  void SiftDown(size_t i) {
    const size_t n = heap_.size();
    const Event e = heap_[i];
    while (true) {
      const size_t first = 4 * i + 1;
      if (first >= n) break;
      size_t best = first;
      const size_t last = first + 4 < n ? first + 4 : n;
      for (size_t c = first + 1; c < last; ++c) {
        if (Less(heap_[c], heap_[best])) best = c;
      }
      if (!Less(heap_[best], e)) break;
      heap_[i] = heap_[best];
      i = best;
    }
    heap_[i] = e;
  }

  std::vector<Event> heap_;
  uint64_t seq_ = 0;
};

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIM_EVENT_QUEUE_H_
