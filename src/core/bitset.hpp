// Bitset: a fixed-size set of parameter indices, 64 per word. Selectors resolve to these and a
// stage applies as one word-wise OR / AND-NOT pass.
#pragma once

#include <cstdint>
#include <vector>

namespace layerfreeze {

class Bitset {
 public:
  Bitset() = default;
  explicit Bitset(size_t n, bool value = false)
      : n_(n), w_((n + 63) / 64, value ? ~uint64_t{0} : 0) {
    trim();
  }
  size_t size() const { return n_; }
  bool test(size_t i) const { return (w_[i >> 6] >> (i & 63)) & 1; }
  void set(size_t i) { w_[i >> 6] |= uint64_t{1} << (i & 63); }
  void reset(size_t i) { w_[i >> 6] &= ~(uint64_t{1} << (i & 63)); }
  Bitset& operator|=(const Bitset& o) {
    for (size_t k = 0; k < w_.size(); ++k) w_[k] |= o.w_[k];
    return *this;
  }
  Bitset& operator&=(const Bitset& o) {
    for (size_t k = 0; k < w_.size(); ++k) w_[k] &= o.w_[k];
    return *this;
  }
  Bitset& subtract(const Bitset& o) {
    for (size_t k = 0; k < w_.size(); ++k) w_[k] &= ~o.w_[k];
    return *this;
  }
  bool operator==(const Bitset& o) const { return n_ == o.n_ && w_ == o.w_; }
  bool operator!=(const Bitset& o) const { return !(*this == o); }
  bool any() const {
    for (auto w : w_)
      if (w) return true;
    return false;
  }
  size_t count() const {
    size_t c = 0;
    for (auto w : w_) c += static_cast<size_t>(__builtin_popcountll(w));
    return c;
  }
  /// How many of [begin, end) are set (end <= size()).
  size_t count_range(size_t begin, size_t end) const {
    size_t c = 0;
    while (begin < end && (begin & 63)) c += test(begin++);
    while (begin + 64 <= end) {
      c += static_cast<size_t>(__builtin_popcountll(w_[begin >> 6]));
      begin += 64;
    }
    while (begin < end) c += test(begin++);
    return c;
  }
  const std::vector<uint64_t>& words() const { return w_; }
  /// Calls f(i) for each set index, in order.
  template <class F>
  void for_each(F f) const {
    for (size_t k = 0; k < w_.size(); ++k) {
      uint64_t w = w_[k];
      while (w) {
        f(k * 64 + static_cast<size_t>(__builtin_ctzll(w)));
        w &= w - 1;
      }
    }
  }

 private:
  void trim() {
    if (n_ % 64 && !w_.empty()) w_.back() &= (uint64_t{1} << (n_ % 64)) - 1;
  }
  size_t n_ = 0;
  std::vector<uint64_t> w_;
};

}  // namespace layerfreeze
