// Hasher: a stable 64-bit FNV-1a hash for fingerprints. Stable across runs, platforms and
// processes (no std::hash), so two ranks of a job can compare plans.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace layerfreeze {

class Hasher {
 public:
  void add_bytes(const void* data, size_t n) {
    auto p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ULL;
    }
  }
  void add(const std::string& s) {
    add(static_cast<int64_t>(s.size()));
    add_bytes(s.data(), s.size());
  }
  void add(int64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff);
    add_bytes(b, 8);
  }
  void add(int v) { add(static_cast<int64_t>(v)); }
  uint64_t value() const { return h_; }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

}  // namespace layerfreeze
