// The block_cycle selector: its blocks on one model (Resolver::resolve_cycle) and the block of
// each period (docs/RULES.md, "Block cycles").
#include "core/block_cycle.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include "core/format.hpp"
#include "core/hash.hpp"
#include "core/selector_resolver.hpp"

namespace layerfreeze {

namespace {

int64_t floor_mod(int64_t a, int64_t n) {
  int64_t m = a % n;
  return m < 0 ? m + n : m;
}

// "layers 4–7" or "layer 4" of the trunk's numbering; a tower's layer by its module name.
std::string layer_run_name(const Inventory& inv, int32_t first, int32_t last) {
  if (first >= inv.num_layers() || last >= inv.num_layers())
    return first == last ? inv.layers[static_cast<size_t>(first)].name
                         : inv.layers[static_cast<size_t>(first)].name + "–" +
                               inv.layers[static_cast<size_t>(last)].name;
  return first == last ? "layer " + std::to_string(first)
                       : "layers " + std::to_string(first) + "–" + std::to_string(last);
}

}  // namespace

const std::vector<std::string>& cycle_block_words() {
  static const std::vector<std::string> w = {"layers", "modules"};
  return w;
}

const std::vector<std::string>& cycle_order_words() {
  static const std::vector<std::string> w = {"ascending", "descending", "reshuffle", "fixed"};
  return w;
}

CycleOrder parse_cycle_order(const std::string& word) {
  if (word == "descending") return CycleOrder::kDescending;
  if (word == "reshuffle") return CycleOrder::kReshuffle;
  if (word == "fixed") return CycleOrder::kFixed;
  return CycleOrder::kAscending;
}

const char* cycle_order_name(CycleOrder o) {
  switch (o) {
    case CycleOrder::kAscending: return "ascending";
    case CycleOrder::kDescending: return "descending";
    case CycleOrder::kReshuffle: return "reshuffle";
    case CycleOrder::kFixed: return "fixed";
  }
  return "ascending";
}

std::string cycle_word_error(const std::string& what, const std::string& word,
                             const std::vector<std::string>& words, const std::string& or_else) {
  return what + " is '" + word + "', which is not " + join(words, ", ") +
         (or_else.empty() ? "" : " or " + or_else) + did_you_mean(word, words);
}

std::vector<std::string> cycle_word_notes(const std::string& what, const std::string& word) {
  if (what == "'order'" && (word == "random" || word == "shuffle"))
    return {
        "BAdam and LLaMA-Factory call it 'random': here it is 'reshuffle' — every block once "
        "per cycle, in a new order each cycle ('random' would read as independent draws, "
        "which is random_layers)"};
  if (what == "'blocks'" && (word == "layer" || word == "module"))
    return {"the plural: 'blocks: " + word + "s'"};
  return {};
}

std::vector<int32_t> cycle_permutation(int64_t n, uint64_t seed, int64_t c) {
  std::vector<int32_t> p(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<int32_t>(i);
  // A stream per (seed, cycle): the cycle number spread by a second odd constant.
  uint64_t x = seed ^ (static_cast<uint64_t>(c) * 0xa0761d6478bd642fULL);
  for (size_t i = p.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(splitmix64(x) % i);
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

int64_t cycle_block(const DynamicSet& d, int64_t period) {
  const int64_t n = static_cast<int64_t>(d.blocks.size());
  if (n == 0) return 0;
  switch (d.order) {
    case CycleOrder::kAscending: return floor_mod(d.start + period, n);
    case CycleOrder::kDescending: return floor_mod(d.start - period, n);
    case CycleOrder::kFixed: return d.start;
    case CycleOrder::kReshuffle:
      return cycle_permutation(n, d.seed, period / n)[static_cast<size_t>(period % n)];
  }
  return 0;
}

std::string cycle_order_text(const DynamicSet& d) {
  if (d.blocks.empty()) return "no block";
  const std::string first = "block " + std::to_string(d.start) + " ('" +
                            d.block_names[static_cast<size_t>(d.start)] + "')";
  switch (d.order) {
    case CycleOrder::kAscending: return "ascending from " + first;
    case CycleOrder::kDescending: return "descending from " + first;
    case CycleOrder::kFixed: return first + " throughout";
    case CycleOrder::kReshuffle:
      return "reshuffled each cycle (seed " + std::to_string(d.seed) + ")";
  }
  return "";
}

Selection DynamicSet::block(size_t b, size_t n_params, const SliceTable& table) const {
  Bitset params(n_params);
  for (uint32_t i : blocks[b].params) params.set(i);
  if (blocks[b].cut) return {std::move(params), *blocks[b].cut};
  Bitset slices = table.expand(params);
  return {std::move(params), std::move(slices)};
}

const DynamicSet* DynamicSet::cycle() const {
  if (op == Op::kCycle) return this;
  for (const auto& k : kids)
    if (const DynamicSet* c = k.cycle()) return c;
  return nullptr;
}

// The blocks, in the order a cycle numbers them: the embeddings block, the generated or listed
// ones, the head block (every parameter of the head and other roles in no other block: BAdam's
// "lm_head and other params", without the embeddings — see docs/RULES.md).
DynamicSet Resolver::resolve_cycle(const Selector& s) {
  const DynamicSet none = leaf(Bitset(n_));
  auto word = [&](const Expr& e, const std::string& what, const std::vector<std::string>& words,
                  const std::string& or_else, const std::string& fallback) {
    if (e.empty()) return std::optional<std::string>(fallback);
    auto v = e.eval(scope_, diags_);
    if (!v) return std::optional<std::string>();
    if (v->kind != Value::Kind::kString) {
      diags_.error("wrong-type", what + " must be a string, got " + v->to_string(), e.loc());
      return std::optional<std::string>();
    }
    if (std::find(words.begin(), words.end(), v->s) == words.end()) {
      if (!e.is_literal())  // a literal was reported when the file was read
        diags_.error("bad-value", cycle_word_error(what, v->s, words, or_else), e.loc(),
                     cycle_word_notes(what, v->s));
      return std::optional<std::string>();
    }
    return std::optional<std::string>(v->s);
  };
  const auto order = word(s.order, "'order'", cycle_order_words(), "", "ascending");
  const bool listed = s.strings.empty();
  const auto kind = listed ? std::optional<std::string>("list")
                           : word(s.strings, "'blocks'", cycle_block_words(),
                                  "a list of selectors (one block each)", "layers");
  if (!order || !kind) return none;

  DynamicSet d;
  d.op = DynamicSet::Op::kCycle;
  d.order = parse_cycle_order(*order);
  std::vector<SourceLoc> locs;  // where an empty block is reported
  size_t cut_bytes = 0;
  auto add = [&](std::vector<uint32_t> params, std::string name, const SourceLoc& at,
                 std::optional<Bitset> cut = std::nullopt) {
    if (cut) cut_bytes += cut->words().size() * 8;
    d.blocks.push_back({std::move(params), std::move(cut)});
    d.block_names.push_back(std::move(name));
    locs.push_back(at);
  };
  auto indices = [](const Bitset& b) {
    std::vector<uint32_t> out;
    b.for_each([&](size_t i) { out.push_back(static_cast<uint32_t>(i)); });
    return out;
  };
  const bool with_embeddings = eval_bool(s.embeddings_block, false);
  const bool with_head = eval_bool(s.head_block, false);
  if (with_embeddings) add(indices(role_set(Role::kEmbeddings)), "embeddings", s.loc);

  if (listed) {
    if (!s.amount.empty())
      diags_.error("misplaced-key", "'layers_per_block' groups 'blocks: layers', not listed blocks",
                   s.amount.loc());
    for (const auto& c : s.children) {
      DynamicSet k = resolve(c);
      if (!k.is_static()) {
        diags_.error("nested-random", "a block of block_cycle cannot itself vary by period", c.loc);
        return none;
      }
      // A block that cuts a tensor (rows, experts) keeps its slices.
      Bitset whole = slices_.expand(k.leaf);
      std::optional<Bitset> cut;
      if (whole != k.slices) cut = std::move(k.slices);
      add(indices(k.leaf), c.text, c.loc, std::move(cut));
    }
    if (cut_bytes > (size_t{256} << 20)) {
      diags_.error("too-many-rows",
                   "the blocks of '" + s.text + "' cut rows or experts " +
                       std::to_string(cut_bytes) + " bytes' worth of sets (at most 256 MiB)",
                   s.loc);
      return none;
    }
  } else {
    Bitset universe = role_set(Role::kLayer);
    if (!s.children.empty()) {
      DynamicSet from = resolve(s.children[0]);
      if (!from.is_static()) {
        diags_.error("nested-random", "'from' of block_cycle cannot itself vary by period",
                     s.children[0].loc);
        return none;
      }
      universe = std::move(from.leaf);
    } else if (!require_layers(s)) {
      return none;
    }
    // The layers the universe reaches, ascending; each one's parameters in it.
    std::map<int32_t, std::vector<uint32_t>> by_layer;
    universe.for_each([&](size_t i) {
      if (inv_.params()[i].layer >= 0)
        by_layer[inv_.params()[i].layer].push_back(static_cast<uint32_t>(i));
    });
    if (by_layer.empty()) {
      diags_.error("empty-block",
                   "'" + s.text + "' has no block: " +
                       (s.children.empty() ? inv_.facts().source + " has no layers"
                                           : "'from' selects no parameter of a layer"),
                   s.loc);
      return none;
    }
    int64_t per = 1;
    if (!s.amount.empty()) {
      auto v = eval_int(s.amount, "'layers_per_block'");
      if (!v) return none;
      if (*kind == "modules" && *v != 1) {
        diags_.error("misplaced-key", "'layers_per_block' groups 'blocks: layers', not modules",
                     s.amount.loc());
        return none;
      }
      if (*v < 1 || *v > static_cast<int64_t>(by_layer.size())) {
        diags_.error("out-of-range",
                     "layers_per_block " + std::to_string(*v) +
                         " is out of range: the blocks are made of " +
                         std::to_string(by_layer.size()) + " layers",
                     s.amount.loc());
        return none;
      }
      per = *v;
    }
    if (*kind == "layers") {
      std::vector<int32_t> layers;
      for (const auto& [l, _] : by_layer) layers.push_back(l);
      for (size_t b = 0; b < layers.size(); b += static_cast<size_t>(per)) {
        const size_t e = std::min(layers.size(), b + static_cast<size_t>(per));
        std::vector<uint32_t> params;
        for (size_t k = b; k < e; ++k)
          params.insert(params.end(), by_layer[layers[k]].begin(), by_layer[layers[k]].end());
        std::sort(params.begin(), params.end());
        add(std::move(params), layer_run_name(inv_, layers[b], layers[e - 1]), s.loc);
      }
    } else {
      // Each module of each layer: the parameters that share a name up to their last
      // component, in the layer's order ("layer 3 self_attn.q_proj"). A module without a matrix
      // (a norm) would make a block of a few thousand parameters that holds a whole period: it
      // trains with the layer's first block instead.
      for (const auto& [l, params] : by_layer) {
        const std::string& prefix = inv_.layers[static_cast<size_t>(l)].name;
        std::vector<std::string> modules;
        std::map<std::string, std::vector<uint32_t>> members;
        for (uint32_t i : params) {
          const std::string& name = inv_.params()[i].name;
          auto dot = name.rfind('.');
          std::string module = dot == std::string::npos ? std::string() : name.substr(0, dot);
          auto [it, added] = members.try_emplace(module);
          if (added) modules.push_back(module);
          it->second.push_back(i);
        }
        auto has_matrix = [&](const std::vector<uint32_t>& m) {
          return std::any_of(m.begin(), m.end(), [&](uint32_t i) {
            const Param& p = inv_.params()[i];
            return !p.shape_known || p.shape.size() >= 2;
          });
        };
        std::vector<uint32_t> loose;
        const size_t first_block = d.blocks.size();
        for (const auto& m : modules) {
          auto& ps = members.at(m);
          if (!has_matrix(ps)) {
            loose.insert(loose.end(), ps.begin(), ps.end());
            continue;
          }
          std::string local = m.size() > prefix.size() && m.compare(0, prefix.size(), prefix) == 0
                                  ? m.substr(prefix.size() + 1)
                                  : m;
          add(std::move(ps),
              layer_run_name(inv_, l, l) + (local.empty() || local == prefix ? "" : " " + local),
              s.loc);
        }
        if (d.blocks.size() == first_block) {  // no matrix at all: the layer is one block
          add(std::move(loose), layer_run_name(inv_, l, l), s.loc);
        } else if (!loose.empty()) {
          auto& first = d.blocks[first_block].params;
          first.insert(first.end(), loose.begin(), loose.end());
          std::sort(first.begin(), first.end());
        }
      }
    }
  }
  if (with_head) {
    Bitset rest = role_set(Role::kHead);
    rest |= role_set(Role::kOther);
    for (const auto& b : d.blocks) {
      for (uint32_t i : b.params) rest.reset(i);
      if (b.cut)  // a tensor another block cuts rows or experts of stays with that block
        for (uint32_t i : slices_.params)
          if (slices_.count(i, *b.cut) > 0) rest.reset(i);
    }
    add(indices(rest), "head and the rest", s.loc);
  }
  for (size_t k = 0; k < d.blocks.size(); ++k)
    if (d.blocks[k].params.empty() && !(d.blocks[k].cut && d.blocks[k].cut->any())) {
      diags_.error("empty-block",
                   "block " + std::to_string(k) + " of the cycle ('" + d.block_names[k] +
                       "') selects no parameter of " + inv_.facts().source +
                       ": its periods would train nothing",
                   locs[k]);
      return none;
    }
  const int64_t n = static_cast<int64_t>(d.blocks.size());

  // start: ascending and fixed from block 0, descending from the last; reshuffle draws.
  d.start = d.order == CycleOrder::kDescending ? n - 1 : 0;
  if (!s.start.empty() && !is_null(s.start)) {
    auto v = eval_int(s.start, "'start'");
    if (!v) return none;
    if (d.order == CycleOrder::kReshuffle) {
      diags_.error("bad-value",
                   "'start' has no meaning with order: reshuffle (each cycle's order is drawn)",
                   s.start.loc());
      return none;
    }
    if (*v < 0 || *v >= n) {
      diags_.error("out-of-range",
                   "start " + std::to_string(*v) + " is out of range: the cycle has " +
                       std::to_string(n) + " blocks (0–" + std::to_string(n - 1) + ")",
                   s.start.loc());
      return none;
    }
    d.start = *v;
  }
  auto seed = s.seed.empty() ? std::optional<int64_t>(0) : eval_int(s.seed, "'seed'");
  if (!seed) return none;
  d.seed = static_cast<uint64_t>(*seed);
  return d;
}

}  // namespace layerfreeze
