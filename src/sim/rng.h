// The simulator's random numbers.
//
// Hand-written on purpose: the std:: distributions (std::exponential_distribution, ...) are not
// specified to produce the same sequence on different standard libraries, and a simulation must be
// reproducible from its seed. xoshiro256** (Blackman & Vigna) seeded through splitmix64 is small,
// fast and passes BigCrush; the samplers below use only +, *, log, sqrt and cos.
#ifndef TOLLGATE_SIM_RNG_H_
#define TOLLGATE_SIM_RNG_H_

#include <cmath>
#include <cstdint>

namespace tollgate::sim {

// splitmix64: one step of the generator from `state`. Also a good 64-bit mixer.
inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A seed for one independent stream: (run seed, stream kind, id) mixed so that neighbouring ids
// give unrelated streams.
inline uint64_t StreamSeed(uint64_t seed, uint64_t kind, uint64_t id) {
  uint64_t s = seed;
  uint64_t a = SplitMix64(s) ^ (kind * 0xd1b54a32d192ed03ULL);
  uint64_t b = SplitMix64(a) ^ (id * 0x8cb92ba72f3d8dd7ULL);
  return SplitMix64(b);
}

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { Seed(seed); }
  void Seed(uint64_t seed) {
    uint64_t s = seed;
    for (uint64_t& w : s_) w = SplitMix64(s);
  }

  // xoshiro256**.
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1), 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Exponential with the given mean (inverse transform).
  double Exponential(double mean) { return -mean * std::log1p(-Uniform()); }
  // Standard normal (Box-Muller; the second value is discarded to keep the stream simple).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Lognormal with the given mean and shape sigma (of the underlying normal).
  double LogNormal(double mean, double sigma) {
    const double mu = std::log(mean) - sigma * sigma / 2;
    return std::exp(mu + sigma * Normal());
  }
  // True with probability p.
  bool Bernoulli(double p) { return Uniform() < p; }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace tollgate::sim

#endif  // TOLLGATE_SIM_RNG_H_
