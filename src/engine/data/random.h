#pragma once
// The random numbers of the data pipeline. Every random choice (epoch order, crop box, flip, clutter) draws
// from a small generator seeded from (seed, stream, item), never from a generator shared between threads, so
// results depend only on the seed — not on the number of worker threads or the order in which they run.
#include <cstdint>

namespace vitprobe {

/// SplitMix64's finaliser: a bijective mix of 64 bits (Steele, Lea and Flood, OOPSLA 2014).
constexpr uint64_t mix_bits(uint64_t value) {
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ULL;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBULL;
  return value ^ (value >> 31);
}

/// A seed for one (stream, item) pair derived from a user seed; distinct inputs give unrelated seeds.
constexpr uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t item = 0) {
  return mix_bits(mix_bits(mix_bits(seed + 0x9E3779B97F4A7C15ULL) ^ stream) + item * 0x9E3779B97F4A7C15ULL);
}

/// Streams of derive_seed, one per kind of random choice, so that they never share numbers.
enum class RandomStream : uint64_t { EpochOrder = 1, Transform = 2, Clutter = 3, Subset = 4 };

/// A SplitMix64 generator: small, fast, statistically sound for sampling (passes BigCrush).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  /// The next 64 random bits.
  uint64_t next_u64() {
    state_ += 0x9E3779B97F4A7C15ULL;
    return mix_bits(state_);
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  /// Uniform in [low, high).
  double uniform(double low, double high) { return low + (high - low) * uniform(); }

  /// Uniform integer in [0, count) by Lemire's multiply-shift (bias below count / 2^64); 0 when count <= 0.
  int64_t below(int64_t count) {
    if (count <= 0) return 0;
    const unsigned __int128 product = static_cast<unsigned __int128>(next_u64()) * static_cast<uint64_t>(count);
    return static_cast<int64_t>(product >> 64);
  }

  /// Uniform integer in [low, high] (inclusive, like torch.randint(low, high + 1)).
  int64_t between(int64_t low, int64_t high) { return low + below(high - low + 1); }

 private:
  uint64_t state_;
};

}  // namespace vitprobe
