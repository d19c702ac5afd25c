// Differential test: the compiler (RE2::Set, bitsets, prefix states) against a deliberately
// naive reference evaluator — one parameter at a time, one regex at a time, Python slice
// semantics spelled out — on thousands of random inventories and rule sets.
#include <re2/re2.h>

#include <random>

#include "core/layer_discovery.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

// A generated selector: its YAML and a naive predicate over one parameter.
struct Gen {
  std::string yaml;
  std::function<bool(const Inventory&, size_t)> pred;
  bool may_error = false;  // out-of-range layer references
};

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  Inventory inventory() {
    std::vector<std::string> names = {"embed.tok.weight"};
    if (pick(0, 1)) names.push_back("embed.pos.weight");
    int stacks = pick(1, 2);
    const char* kStack[] = {"encoder.block", "decoder.block"};
    for (int s = 0; s < stacks; ++s) {
      int layers = pick(1, 6);
      std::string prefix = stacks == 1 ? "model.layers" : kStack[s];
      for (int l = 0; l < layers; ++l)
        for (const char* leaf : {"attn.q.weight", "attn.q.bias", "mlp.up.weight", "norm.weight"})
          if (pick(0, 4)) names.push_back(prefix + "." + std::to_string(l) + "." + leaf);
      if (stacks == 2 && s == 0) names.push_back("encoder.final_layer_norm.weight");
    }
    names.push_back("final_norm.weight");
    names.push_back("lm_head.weight");
    Inventory inv = test::names_inventory(names, "random");
    Diagnostics d;
    discover_layers(inv, DiscoveryPatterns::shipped(), d);
    return inv;
  }

  Gen selector(const Inventory& inv, int depth = 0) {
    int kind = pick(0, depth > 1 ? 6 : 8);
    const int L = inv.num_layers();
    switch (kind) {
      case 0: return {"all", [](const Inventory&, size_t) { return true; }};
      case 1: {
        const char* roles[] = {"embeddings", "head", "layers", "other"};
        Role rs[] = {Role::kEmbeddings, Role::kHead, Role::kLayer, Role::kOther};
        int r = pick(0, 3);
        Role want = rs[r];
        return {roles[r],
                [want](const Inventory& I, size_t i) { return I.params()[i].role == want; }};
      }
      case 2: {  // a slice, Python semantics, written out the slow way
        int a = pick(-L - 1, L + 1), b = pick(-L - 1, L + 1), step = pick(1, 3);
        bool has_a = pick(0, 1), has_b = pick(0, 1);
        std::string text = (has_a ? std::to_string(a) : "") + ":" +
                           (has_b ? std::to_string(b) : "") +
                           (step > 1 ? ":" + std::to_string(step) : "");
        bool bad = (has_a && (a < -L || a > L)) || (has_b && (b < -L || b > L));
        auto pred = [=](const Inventory& I, size_t i) {
          int layer = I.params()[i].layer;
          if (layer < 0) return false;
          int start = has_a ? (a < 0 ? a + L : a) : 0;
          int stop = has_b ? (b < 0 ? b + L : b) : L;
          for (int k = start; k < stop; k += step)
            if (k == layer) return true;
          return false;
        };
        return {"{layers: \"" + text + "\"}", pred, bad};
      }
      case 3: {
        int n = pick(0, L + 1);
        bool first = pick(0, 1);
        auto pred = [=](const Inventory& I, size_t i) {
          int layer = I.params()[i].layer;
          return layer >= 0 && (first ? layer < n : layer >= L - n);
        };
        return {std::string("{layers: {") + (first ? "first" : "last") + ": " + std::to_string(n) +
                    "}}",
                pred, n > L};
      }
      case 4: {
        const char* pats[] = {".*attn.*", ".*\\.bias",        "embed\\..*",
                              ".*NORM.*", "lm_head\\.weight", ".*block\\.[02]\\..*"};
        int k = pick(0, 5);
        bool cs = pick(0, 1);
        std::string pat = pats[k];
        auto pred = [pat, cs](const Inventory& I, size_t i) {
          RE2::Options o;
          o.set_case_sensitive(cs);
          RE2 re(pat, o);
          return RE2::FullMatch(I.params()[i].name, re);
        };
        return {"{regex: '" + pat + "', case_sensitive: " + (cs ? "true" : "false") + "}", pred};
      }
      case 5: {
        const char* leaves[] = {"bias", "weight"};
        std::string leaf = leaves[pick(0, 1)];
        return {"{leaf: " + leaf + "}",
                [leaf](const Inventory& I, size_t i) { return I.params()[i].leaf() == leaf; }};
      }
      case 6: {
        double r = pick(0, 4) / 4.0;
        int n = static_cast<int>(r * L);
        return {"{layers: {first_ratio: " + std::to_string(r) + "}}",
                [n](const Inventory& I, size_t i) {
                  return I.params()[i].layer >= 0 && I.params()[i].layer < n;
                }};
      }
      default: {
        Gen a = selector(inv, depth + 1), b = selector(inv, depth + 1);
        int op = pick(0, 2);
        Gen g;
        g.may_error = a.may_error || b.may_error;
        if (op == 0) {
          g.yaml = "{any_of: [" + a.yaml + ", " + b.yaml + "]}";
          g.pred = [a, b](const Inventory& I, size_t i) { return a.pred(I, i) || b.pred(I, i); };
        } else if (op == 1) {
          g.yaml = "{all_of: [" + a.yaml + ", " + b.yaml + "]}";
          g.pred = [a, b](const Inventory& I, size_t i) { return a.pred(I, i) && b.pred(I, i); };
        } else {
          g.yaml = "{any_of: [" + a.yaml + "], except: " + b.yaml + "}";
          g.pred = [a, b](const Inventory& I, size_t i) { return a.pred(I, i) && !b.pred(I, i); };
        }
        return g;
      }
    }
  }

  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

 private:
  std::mt19937 rng_;
};

struct NaiveRule {
  bool freeze;
  std::function<bool(const Inventory&, size_t)> pred;
  int epoch;  // -1: initial
  int order;
};

TEST(Differential, CompilerAgreesWithNaiveEvaluator) {
  int compared = 0, rejected = 0;
  for (uint32_t seed = 1; seed <= 2000; ++seed) {
    Generator g(seed);
    Inventory inv = g.inventory();
    std::string yaml = "rules:\n";
    std::vector<NaiveRule> naive;
    bool may_error = false;
    int n_initial = g.pick(0, 4);
    for (int r = 0; r < n_initial; ++r) {
      Gen s = g.selector(inv);
      bool freeze = g.pick(0, 2) > 0;
      yaml += std::string("  - ") + (freeze ? "freeze" : "unfreeze") + ": " + s.yaml + "\n";
      naive.push_back({freeze, s.pred, -1, r});
      may_error = may_error || s.may_error;
    }
    if (n_initial == 0) yaml = "rules: []\n";
    int n_stages = g.pick(0, 3);
    if (n_stages) yaml += "stages:\n";
    std::vector<int> epochs;
    for (int k = 0; k < n_stages; ++k) epochs.push_back(g.pick(0, 5));
    std::sort(epochs.begin(), epochs.end());
    for (int k = 0; k < n_stages; ++k) {
      yaml += "  - at: {epoch: " + std::to_string(epochs[k]) + "}\n    rules:\n";
      int nr = g.pick(1, 2);
      for (int r = 0; r < nr; ++r) {
        Gen s = g.selector(inv);
        bool freeze = g.pick(0, 1);
        yaml += std::string("      - ") + (freeze ? "freeze" : "unfreeze") + ": " + s.yaml + "\n";
        naive.push_back({freeze, s.pred, epochs[k], 100 + k * 10 + r});
        may_error = may_error || s.may_error;
      }
    }
    Inventory copy = inv;
    auto c = test::compile_text(yaml, std::move(copy));
    if (!c.plan) {
      EXPECT_TRUE(may_error) << "seed " << seed << "\n" << yaml << c.errors();
      ++rejected;
      continue;
    }
    EXPECT_FALSE(may_error) << "seed " << seed
                            << " compiled although it references a missing layer\n"
                            << yaml;
    ++compared;
    for (int e = 0; e <= 6; ++e) {
      Bitset got = c.plan->frozen_at({e, 0});
      for (size_t i = 0; i < inv.params().size(); ++i) {
        bool frozen = false;
        for (const auto& r : naive)
          if ((r.epoch < 0 || r.epoch <= e) && r.pred(inv, i)) frozen = r.freeze;
        ASSERT_EQ(got.test(i), frozen)
            << "seed " << seed << " epoch " << e << " param " << inv.params()[i].name << "\n"
            << yaml;
      }
    }
  }
  EXPECT_GT(compared, 1000);
  EXPECT_GT(rejected, 10);
}

}  // namespace
}  // namespace layerfreeze
