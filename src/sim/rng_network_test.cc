// The PRNG and the network models.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "sim/network.h"
#include "sim/rng.h"

namespace tollgate::sim {
namespace {

TEST(RngTest, SameSeedSameStreamDifferentSeedsDiffer) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    differs |= x != c.Next();
  }
  EXPECT_TRUE(differs);
  EXPECT_NE(StreamSeed(1, 2, 3), StreamSeed(1, 2, 4));
  EXPECT_NE(StreamSeed(1, 2, 3), StreamSeed(1, 3, 3));
  EXPECT_NE(StreamSeed(1, 2, 3), StreamSeed(2, 2, 3));
}

// Pins the generator: a change to it changes every simulation's numbers and must be deliberate.
TEST(RngTest, KnownValues) {
  Rng r(1);
  const uint64_t first = r.Next();
  Rng again(1);
  EXPECT_EQ(first, again.Next());
  uint64_t s = 0;
  EXPECT_EQ(SplitMix64(s), 0xe220a8397b1dcdafULL);  // splitmix64's published first output
}

TEST(RngTest, SamplerMeans) {
  Rng r(7);
  const int n = 200000;
  double u = 0, e = 0, ln = 0, lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const double x = r.Uniform();
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    u += x;
    e += r.Exponential(3.0);
    ln += r.LogNormal(6.0, 0.8);
  }
  EXPECT_GE(lo, 0.0);
  EXPECT_LT(hi, 1.0);
  EXPECT_NEAR(u / n, 0.5, 0.01);
  EXPECT_NEAR(e / n, 3.0, 0.05);
  EXPECT_NEAR(ln / n, 6.0, 0.12);
}

NetworkParams Params(double latency, double jitter, double loss, double stalls_per_min,
                     double stall_ms) {
  NetworkParams p;
  p.latency_ms = latency;
  p.jitter_ms = jitter;
  p.loss = loss;
  p.rto_ms = 200;
  p.rto_max_ms = 3000;
  p.stalls_per_min = stalls_per_min;
  p.stall_mean_ms = stall_ms;
  return p;
}

// Sends one message every `gap_ms` for `seconds` and returns the arrival times.
std::vector<int64_t> Transmit(const NetworkParams& p, double gap_ms, double seconds, uint64_t seed,
                              std::vector<int64_t>* sends = nullptr) {
  NetworkModel model(p);
  NetworkLink link(&model, seed);
  std::vector<int64_t> out;
  const int64_t gap = static_cast<int64_t>(gap_ms * 1e6);
  for (int64_t t = 0; t < static_cast<int64_t>(seconds * 1e9); t += gap) {
    out.push_back(link.Deliver(t));
    if (sends != nullptr) sends->push_back(t);
  }
  return out;
}

// Sizes of groups of messages that arrive at the same nanosecond.
std::vector<size_t> Clumps(const std::vector<int64_t>& arrivals) {
  std::vector<size_t> out;
  size_t run = 1;
  for (size_t i = 1; i <= arrivals.size(); ++i) {
    if (i < arrivals.size() && arrivals[i] == arrivals[i - 1]) {
      ++run;
    } else {
      if (run > 1) out.push_back(run);
      run = 1;
    }
  }
  return out;
}

TEST(NetworkTest, BuiltinsAreValid) {
  for (const std::string& name : BuiltinNetworkNames()) {
    auto p = BuiltinNetwork(name);
    ASSERT_TRUE(p.ok()) << name;
    EXPECT_TRUE(ValidateNetwork(*p).ok()) << name;
  }
  EXPECT_FALSE(BuiltinNetwork("5g").ok());
  NetworkParams bad;
  bad.loss = 0.9;
  EXPECT_NE(ValidateNetwork(bad).message().find("loss"), std::string::npos);
  bad = NetworkParams{};
  bad.rto_max_ms = 10;
  EXPECT_NE(ValidateNetwork(bad).message().find("rto_max_ms"), std::string::npos);
}

TEST(NetworkTest, EthernetAddsNoClumps) {
  std::vector<int64_t> sends;
  const std::vector<int64_t> a = Transmit(*BuiltinNetwork("ethernet"), 10, 600, 1, &sends);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_GE(a[i] - sends[i], 2'000'000);  // the base latency
    if (i > 0) {
      EXPECT_GT(a[i] - a[i - 1], 5'000'000) << i;  // 10 ms apart stay apart
    }
  }
  EXPECT_TRUE(Clumps(a).empty());
}

TEST(NetworkTest, DeliveryIsInOrderDespiteJitter) {
  std::vector<int64_t> sends;
  // 50 ms mean jitter on messages 1 ms apart would reorder them without head-of-line blocking.
  const std::vector<int64_t> a = Transmit(Params(10, 50, 0, 0, 0), 1, 60, 3, &sends);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_GE(a[i], sends[i] + 10'000'000);
    if (i > 0) {
      EXPECT_GE(a[i], a[i - 1]) << i;
    }
  }
}

TEST(NetworkTest, LossDelaysLaterMessagesWhichArriveTogether) {
  std::vector<int64_t> sends;
  const std::vector<int64_t> a = Transmit(Params(20, 0, 0.05, 0, 0), 20, 600, 5, &sends);
  size_t lost = 0, held_back = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (i > 0) {
      ASSERT_GE(a[i], a[i - 1]);
    }
    const int64_t own = a[i] - sends[i];
    if (own >= 220'000'000 && (i == 0 || a[i] != a[i - 1])) {
      ++lost;  // retransmitted after >= one RTO: the messages behind it wait for it
      for (size_t j = i + 1; j < a.size() && sends[j] + 20'000'000 < a[i]; ++j) {
        EXPECT_GE(a[j], a[i]);
        held_back += a[j] == a[i];
      }
    }
  }
  EXPECT_GT(lost, 100u);
  EXPECT_GT(held_back, 5 * lost);  // ~200 ms / 20 ms = ~9 messages per loss
  size_t biggest = 0;
  for (size_t c : Clumps(a)) biggest = std::max(biggest, c);
  EXPECT_GE(biggest, 10u);
}

TEST(NetworkTest, StallDeliversTheQueueAsOneClump) {
  std::vector<int64_t> sends;
  // One stall a minute of 1 s on average, a message every 10 ms.
  const std::vector<int64_t> a = Transmit(Params(10, 0, 0, 1, 1000), 10, 3600, 9, &sends);
  const std::vector<size_t> clumps = Clumps(a);
  // ~60 stalls in an hour; each of them delivers ~100 messages at one instant.
  EXPECT_GT(clumps.size(), 35u);
  EXPECT_LT(clumps.size(), 90u);
  size_t in_clumps = 0;
  for (size_t c : clumps) in_clumps += c;
  EXPECT_GT(in_clumps / clumps.size(), 40u);
  for (size_t i = 1; i < a.size(); ++i) ASSERT_GE(a[i], a[i - 1]);
}

TEST(NetworkTest, SameSeedSameArrivals) {
  const NetworkParams p = *BuiltinNetwork("4g");
  EXPECT_EQ(Transmit(p, 50, 120, 11), Transmit(p, 50, 120, 11));
  EXPECT_NE(Transmit(p, 50, 120, 11), Transmit(p, 50, 120, 12));
}

}  // namespace
}  // namespace tollgate::sim
