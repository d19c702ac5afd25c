// PrefixCache (include/layerfreeze/prefix_cache.hpp): values of the frozen prefix's output by
// sample id, at the boundary the executor's plan holds now. Entries live in memory up to the
// budget, then in a memory-mapped spill file; each remembers a hash of the input row it was
// computed from, so a sample id that comes back with another input (augmentation, other padding)
// is recomputed, never served stale.
#include "layerfreeze/prefix_cache.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <unordered_map>

#include "core/format.hpp"
#include "core/hash.hpp"
#include "torch/errors.hpp"

namespace layerfreeze {

namespace {

std::optional<at::ScalarType> parse_storage(const std::string& s) {
  if (s == "same") return std::nullopt;
  if (s == "float32") return at::kFloat;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16") return at::kHalf;
  fail("prefix-cache-option",
       "PrefixCacheOptions::storage must be same, float32, bfloat16 or float16, got '" + s + "'" +
           did_you_mean(s, {"same", "float32", "bfloat16", "float16"}));
}

uint64_t row_hash(const at::Tensor& row) {
  at::Tensor c = row.contiguous().to(at::kCPU);
  Hasher h;
  for (int64_t d : c.sizes()) h.add(d);
  h.add(static_cast<int>(c.scalar_type()));
  h.add_bytes(c.data_ptr(), static_cast<size_t>(c.numel()) * c.element_size());
  return h.value();
}

// A spill file: segments mapped one after another; entries are never moved or freed singly
// (the whole file goes when the cache is dropped).
class SpillFile {
 public:
  ~SpillFile() { close(); }
  bool open(const std::string& dir) {
    std::string path = dir + "/layerfreeze-prefix-cache-XXXXXX";
    fd_ = ::mkstemp(path.data());
    if (fd_ < 0) return false;
    ::unlink(path.c_str());  // gone with the process, whatever happens
    return true;
  }
  bool is_open() const { return fd_ >= 0; }
  // Copies `n` bytes into the file; returns where, or nullopt when the disk refuses.
  std::optional<std::pair<int32_t, size_t>> put(const void* data, size_t n) {
    if (segs_.empty() || segs_.back().used + n > segs_.back().size) {
      const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
      size_t size = std::max<size_t>(size_t{256} << 20, (n + page - 1) / page * page);
      if (::ftruncate(fd_, static_cast<off_t>(end_ + size)) != 0) return std::nullopt;
      void* base =
          ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, static_cast<off_t>(end_));
      if (base == MAP_FAILED) return std::nullopt;
      segs_.push_back({static_cast<char*>(base), size, 0});
      end_ += size;
    }
    Seg& s = segs_.back();
    std::memcpy(s.base + s.used, data, n);
    std::pair<int32_t, size_t> at{static_cast<int32_t>(segs_.size() - 1), s.used};
    s.used += n;
    bytes_ += n;
    return at;
  }
  const char* at(int32_t seg, size_t offset) const { return segs_[seg].base + offset; }
  int64_t bytes() const { return static_cast<int64_t>(bytes_); }
  void clear() {
    for (auto& s : segs_) ::munmap(s.base, s.size);
    segs_.clear();
    end_ = bytes_ = 0;
    if (fd_ >= 0 && ::ftruncate(fd_, 0) != 0) close();
  }

 private:
  void close() {
    for (auto& s : segs_) ::munmap(s.base, s.size);
    segs_.clear();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  struct Seg {
    char* base;
    size_t size, used;
  };
  int fd_ = -1;
  std::vector<Seg> segs_;
  size_t end_ = 0, bytes_ = 0;
};

}  // namespace

struct PrefixCache::Impl {
  Executor* ex;
  PrefixContract model;
  PrefixCacheOptions opt;
  std::optional<at::ScalarType> storage;

  struct Entry {
    at::Tensor value;  // in memory; undefined when spilled
    int32_t seg = -1;
    size_t offset = 0;
    uint64_t input_hash = 0;
  };
  mutable std::shared_mutex mutex;
  std::unordered_map<int64_t, Entry> entries;
  int32_t k = -1;                  // the boundary the entries are of
  std::vector<at::Tensor> prefix;  // its parameters, and their version counters when taken
  std::vector<int64_t> versions;
  std::vector<int64_t> row_shape;  // of a value (the prefix output without its batch dimension)
  at::ScalarType stored = at::kFloat, computed = at::kFloat;
  bool verified = false;
  std::string not_deterministic;  // the verification failed at boundary k
  SpillFile spill;
  PrefixCacheStats st;
  std::vector<std::string> notes;
  std::set<std::string> noted;

  void note(const std::string& text) {
    if (noted.insert(text).second) notes.push_back(text);
  }

  void drop(const std::string& why) {
    if (!entries.empty()) {
      ++st.drops;
      note("dropped " + std::to_string(entries.size()) + " cached value" +
           (entries.size() == 1 ? "" : "s") + ": " + why);
    }
    entries.clear();
    spill.clear();
    st.entries = st.memory_bytes = st.spilled_bytes = 0;
    row_shape.clear();
  }

  // Takes the prefix's parameters at boundary `c.layers`; their version counters move with every
  // in-place write (an optimizer step, a load) — then every value computed from them is stale.
  void take_prefix(const CacheablePrefix& c) {
    const std::vector<at::Tensor> all = ex->parameters();
    prefix.clear();
    versions.clear();
    for (size_t i : c.params) {
      prefix.push_back(all[i]);
      versions.push_back(all[i]._version());
    }
  }
  std::string moved_weight() const {
    for (size_t j = 0; j < prefix.size(); ++j)
      if (prefix[j]._version() != versions[j]) return name_of(j);
    return "";
  }
  std::string name_of(size_t j) const {
    const auto& all = ex->parameters();
    for (size_t i = 0; i < all.size(); ++i)
      if (all[i].unsafeGetTensorImpl() == prefix[j].unsafeGetTensorImpl())
        return ex->inventory().params()[i].name;
    return "?";
  }

  at::Tensor full(const at::Tensor& input) {
    return model.forward_from(model.forward_prefix(input, 0), 0);
  }

  at::Tensor read(const Entry& e) const {
    if (e.value.defined()) return e.value;
    return at::from_blob(const_cast<char*>(spill.at(e.seg, e.offset)), row_shape,
                         at::TensorOptions().dtype(stored));
  }

  void forget(int64_t id) {
    auto it = entries.find(id);
    if (it == entries.end()) return;
    if (it->second.value.defined())
      st.memory_bytes -= it->second.value.numel() * int64_t(it->second.value.element_size());
    entries.erase(it);  // a spilled value's bytes stay in the file until the cache is dropped
    --st.entries;
  }

  // Stores row `value` (already in the storage dtype, contiguous) for `id`; false when there is
  // no room (the budget is full and nothing can spill).
  bool store(int64_t id, const at::Tensor& value, uint64_t input_hash) {
    const int64_t bytes = value.numel() * static_cast<int64_t>(value.element_size());
    Entry e;
    e.input_hash = input_hash;
    if (st.memory_bytes + bytes <= opt.memory_budget) {
      e.value = value.device().is_cpu() ? value : value.to(at::kCPU);
      st.memory_bytes += bytes;
    } else {
      if (!opt.spill_dir.empty() && !spill.is_open() && !spill.open(opt.spill_dir))
        note("cannot create a spill file in '" + opt.spill_dir + "' (" + std::strerror(errno) +
             "): values past the memory budget are not cached");
      std::optional<std::pair<int32_t, size_t>> at;
      if (spill.is_open()) {
        at::Tensor c = value.to(at::kCPU).contiguous();
        at = spill.put(c.data_ptr(), static_cast<size_t>(bytes));
        if (!at) note("the spill file could not grow: values past the budget are not cached");
      } else if (opt.spill_dir.empty()) {
        note("the memory budget (" + std::to_string(opt.memory_budget) +
             " B) is full and no spill_dir is set: the other samples' prefix runs every time");
      }
      if (!at) return false;
      e.seg = at->first;
      e.offset = at->second;
      st.spilled_bytes = spill.bytes();
    }
    forget(id);
    entries.emplace(id, std::move(e));
    ++st.entries;
    return true;
  }

  at::Tensor forward(const at::Tensor& input, const std::vector<int64_t>& ids);
};

at::Tensor PrefixCache::Impl::forward(const at::Tensor& input, const std::vector<int64_t>& ids) {
  const int64_t n = input.size(0);
  if (static_cast<int64_t>(ids.size()) != n)
    fail("prefix-cache-ids",
         "PrefixCache::forward: " + std::to_string(ids.size()) + " ids for a batch of " +
             std::to_string(n) + " rows",
         {"give one sample id per row of the input (dimension 0)"});
  const CacheablePrefix c = ex->cacheable_prefix();
  if (!c.cacheable()) {
    if (k >= 0) drop("nothing is cacheable any more (" + c.stops + ")");
    k = -1;
    st.boundary = -1;
    st.refused = "nothing is cacheable now: " + c.stops;
    st.uncached += n;
    return full(input);
  }
  if (c.layers != k) {
    if (k >= 0)
      drop("the boundary moved from layer " + std::to_string(k) + " to " +
           std::to_string(c.layers) + " (" + c.stops + ")");
    k = c.layers;
    take_prefix(c);
    verified = false;
    not_deterministic.clear();
  } else if (std::string w = moved_weight(); !w.empty()) {
    drop("'" + w + "', in the prefix, was written since its values were cached");
    take_prefix(c);
  }
  st.boundary = k;
  if (!c.train_mode_effects.empty()) {
    st.refused = "the prefix's output varies in train mode: " + join(c.train_mode_effects, "; ") +
                 " (options.frozen_prefix: eval holds its modules in eval mode)";
    note(st.refused);
    st.uncached += n;
    return full(input);
  }
  if (!not_deterministic.empty()) {
    st.refused = not_deterministic;
    st.uncached += n;
    return full(input);
  }
  st.refused.clear();

  // Which rows are cached (for this very input row), which must run the prefix.
  std::vector<int64_t> miss;
  std::vector<uint64_t> hashes(n);
  std::vector<const Entry*> hit(n, nullptr);
  for (int64_t r = 0; r < n; ++r) {
    hashes[r] = row_hash(input[r]);
    auto it = entries.find(ids[r]);
    if (it != entries.end() && it->second.input_hash == hashes[r]) {
      hit[r] = &it->second;
    } else {
      if (it != entries.end())
        note(
            "a sample id came back with another input (augmentation, other padding?): its "
            "prefix output is recomputed");
      miss.push_back(r);
    }
  }
  // The hits are read first: a miss stored below may replace an entry of the same id.
  std::vector<at::Tensor> rows(n);
  for (int64_t r = 0; r < n; ++r)
    if (hit[r]) rows[r] = read(*hit[r]).to(input.device(), computed);
  at::Tensor computed_rows;
  if (!miss.empty()) {
    const bool all = static_cast<int64_t>(miss.size()) == n;
    at::Tensor x =
        all ? input
            : input.index_select(
                  0, at::tensor(miss, at::TensorOptions().dtype(at::kLong)).to(input.device()));
    // The default generator is the process's: its state is read and put back under its lock.
    auto gen = at::detail::getDefaultCPUGenerator();
    auto rng_state = [&] {
      std::lock_guard<std::mutex> lock(gen.mutex());
      return gen.get_state();
    };
    auto set_rng = [&](const at::Tensor& state) {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(state);
    };
    const bool check = opt.verify && !verified;
    at::Tensor rng_before = check ? rng_state() : at::Tensor();
    auto run_prefix = [&] {
      at::NoGradGuard no_grad;
      return model.forward_prefix(x, k);
    };
    computed_rows = run_prefix();
    if (!computed_rows.defined() || computed_rows.dim() < 1 || computed_rows.size(0) != x.size(0))
      fail("prefix-contract",
           "forward_prefix(input, " + std::to_string(k) + ") did not return one row per sample",
           {"forward_prefix must return the hidden state with the batch along dimension 0"});
    if (check) {
      // The RNG as it was after the first run: the check must not shift later draws.
      at::Tensor rng_after = rng_state();
      at::Tensor again = run_prefix();
      set_rng(rng_after);
      if (!(again.sizes() == computed_rows.sizes() && at::equal(again, computed_rows))) {
        not_deterministic =
            "the prefix (up to layer " + std::to_string(k) +
            ") gave two different outputs for the same batch: something in it is random in "
            "train mode" +
            (c.unplaced.empty() ? std::string(" (functional dropout, a stochastic layer?)")
                                : " — " + join(c.unplaced, "; ")) +
            "; options.frozen_prefix: eval, or eval mode on that module, makes it "
            "deterministic";
        note(not_deterministic);
        st.refused = not_deterministic;
        st.uncached += n;
        set_rng(rng_before);  // as if the cache had never run: what a run without it does
        return full(input);
      }
      verified = true;
    }
    if (row_shape.empty()) {
      row_shape = computed_rows.sizes().slice(1).vec();
      computed = computed_rows.scalar_type();
      stored = storage.value_or(computed);
    }
    if (computed_rows.sizes().slice(1).vec() != row_shape ||
        computed_rows.scalar_type() != computed)
      fail("prefix-contract",
           "forward_prefix returned rows of another shape or dtype than the cached ones",
           {"every sample's prefix output must have one shape (pad inputs to one length)"});
    at::Tensor keep = computed_rows.to(stored).contiguous();
    if (storage && *storage != computed) computed_rows = keep.to(computed);  // as later passes read
    for (size_t j = 0; j < miss.size(); ++j) {
      const bool kept = store(ids[miss[j]], keep[static_cast<int64_t>(j)].clone(), hashes[miss[j]]);
      ++(kept ? st.misses : st.uncached);
    }
  }
  at::Tensor h;
  if (static_cast<int64_t>(miss.size()) == n) {
    h = computed_rows;
  } else {
    for (size_t j = 0; j < miss.size(); ++j) rows[miss[j]] = computed_rows[static_cast<int64_t>(j)];
    st.hits += n - static_cast<int64_t>(miss.size());
    h = at::stack(rows);
  }
  return model.forward_from(h, k);
}

PrefixCache::PrefixCache(Executor& executor, PrefixContract model, PrefixCacheOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (!model.forward_prefix || !model.forward_from)
    fail("prefix-contract", "PrefixCache needs both forward_prefix and forward_from");
  if (options.memory_budget < 0)
    fail("prefix-cache-option", "PrefixCacheOptions::memory_budget must not be negative");
  impl_->ex = &executor;
  impl_->storage = parse_storage(options.storage);
  impl_->model = std::move(model);
  impl_->opt = std::move(options);
}
PrefixCache::~PrefixCache() = default;
PrefixCache::PrefixCache(PrefixCache&&) noexcept = default;
PrefixCache& PrefixCache::operator=(PrefixCache&&) noexcept = default;

torch::Tensor PrefixCache::forward(const torch::Tensor& input, const std::vector<int64_t>& ids) {
  std::unique_lock<std::shared_mutex> lock(impl_->mutex);
  return torch_guarded("PrefixCache::forward", [&] { return impl_->forward(input, ids); });
}

torch::Tensor PrefixCache::lookup(int64_t id) const {
  std::shared_lock<std::shared_mutex> lock(impl_->mutex);
  auto it = impl_->entries.find(id);
  if (it == impl_->entries.end()) return {};
  return impl_->read(it->second).clone();
}

PrefixCacheStats PrefixCache::stats() const {
  std::shared_lock<std::shared_mutex> lock(impl_->mutex);
  return impl_->st;
}

std::vector<std::string> PrefixCache::notes() const {
  std::shared_lock<std::shared_mutex> lock(impl_->mutex);
  return impl_->notes;
}

void PrefixCache::clear() {
  std::unique_lock<std::shared_mutex> lock(impl_->mutex);
  impl_->drop("cleared");
  // A refusal is forgotten too: after the model is fixed (eval mode), the next fill checks again.
  impl_->not_deterministic.clear();
  impl_->verified = false;
}

}  // namespace layerfreeze
