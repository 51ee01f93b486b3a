// A uniform draw in [0, 1) from the n-th value of a seeded sequence
// (SplitMix64): lock-free, and the same for one seed whatever thread asks.
// Feedback sampling (the engine) and traffic recording (the server) use it.
#ifndef GATI_RUNTIME_UNIFORM_DRAW_H_
#define GATI_RUNTIME_UNIFORM_DRAW_H_

#include <cstdint>

namespace gati::runtime {

inline double UniformDraw(uint64_t seed, uint64_t n) {
  uint64_t z = seed + (n + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_UNIFORM_DRAW_H_
