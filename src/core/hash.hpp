// Hasher: a stable 64-bit hash (FNV-style multiply and fold, a word at a time) for fingerprints.
// Stable across runs, platforms and processes (no std::hash), so two ranks of a job can compare
// plans.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace layerfreeze {

/// splitmix64: the next value of a stream whose state is `x` — the draws of random_layers and of
/// a reshuffled block cycle, identical on every platform (no std::distribution).
inline uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Hasher {
 public:
  // Eight bytes a step (read as little-endian words, so the value is the same on every
  // platform), then the tail byte by byte; each step multiplies and folds.
  void add_bytes(const void* data, size_t n) {
    auto p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
      w = __builtin_bswap64(w);
#endif
      mix(w);
    }
    for (; i < n; ++i) mix(p[i]);
  }
  void add(const std::string& s) {
    add(static_cast<int64_t>(s.size()));
    add_bytes(s.data(), s.size());
  }
  void add(int64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i)
      b[i] = static_cast<unsigned char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    add_bytes(b, 8);
  }
  void add(int v) { add(static_cast<int64_t>(v)); }
  uint64_t value() const { return h_; }
  std::string hex() const { return fmt::format("{:016x}", h_); }

 private:
  void mix(uint64_t w) {
    h_ ^= w;
    h_ *= 0x100000001b3ULL;
    h_ ^= h_ >> 29;
  }
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

}  // namespace layerfreeze
