#include "torch/prefix_modes.hpp"

#include <algorithm>
#include <sstream>
#include <unordered_map>

#include "analysis/cache_boundary.hpp"

namespace layerfreeze {

namespace {

// "transformer.h.3.attn.c_attn.weight" -> "transformer.h.3.attn.c_attn", "transformer.h.3.attn",
// …, "transformer": each found in `index`.
template <class F>
void for_each_ancestor(const std::string& name, F&& f) {
  for (size_t cut = name.rfind('.'); cut != std::string::npos && cut > 0;
       cut = name.rfind('.', cut - 1)) {
    f(name.substr(0, cut));
    if (cut == 0) break;
  }
}

bool varies_in_train_mode(const LiveModel::Submodule& m) {
  if (m.type.find("BatchNorm") != std::string::npos) return true;
  return m.type.find("Dropout") != std::string::npos && m.p != 0;
}

std::string describe_module(const LiveModel::Submodule& m) {
  std::ostringstream o;
  o << m.name << " (" << m.type;
  if (m.p > 0) o << ", p=" << m.p;
  o << ")";
  return o.str();
}

// At most four names, then a count: a 32-layer model has a dropout or three in every layer.
void add_capped(std::vector<std::string>& out, size_t& more, std::string text) {
  if (out.size() < 4)
    out.push_back(std::move(text));
  else
    ++more;
}

}  // namespace

void PrefixModes::bind(const std::vector<LiveModel::Submodule>& modules,
                       const Inventory& inventory) {
  modules_ = &modules;
  inventory_ = &inventory;
  indexed_ = false;
  ++version_;
}

void PrefixModes::index() const {
  if (indexed_) return;
  indexed_ = true;
  const auto& modules = *modules_;
  std::unordered_map<std::string, int32_t> index;
  for (size_t m = 0; m < modules.size(); ++m) index.emplace(modules[m].name, int32_t(m));
  parent_.assign(modules.size(), -1);
  for (size_t m = 0; m < modules.size(); ++m)
    for_each_ancestor(modules[m].name + ".", [&](const std::string& a) {
      if (parent_[m] >= 0 || a == modules[m].name) return;
      auto it = index.find(a);
      if (it != index.end()) parent_[m] = it->second;
    });
  holds_params_.assign(modules.size(), 0);
  ancestors_.assign(inventory_->params().size(), {});
  for (size_t i = 0; i < inventory_->params().size(); ++i) {
    const Param& p = inventory_->params()[i];
    auto add = [&](const std::string& name) {
      for_each_ancestor(name, [&](const std::string& a) {
        auto it = index.find(a);
        if (it == index.end()) return;
        auto& an = ancestors_[i];
        if (std::find(an.begin(), an.end(), it->second) == an.end()) an.push_back(it->second);
        holds_params_[it->second] = 1;
      });
    };
    add(p.name);
    for (const auto& alias : p.aliases) add(alias);
  }
  place_.assign(modules.size(), kAfter);
}

void PrefixModes::place(const CompiledPlan& plan, const Selection& state) const {
  if (placed_version_ == version_) return;
  placed_version_ = version_;
  index();
  const CacheBoundary b = cache_boundary(plan, state);
  layers_ = b.layers;
  stops_ = b.stops;
  const auto& mods = *modules_;
  const auto& params = inventory_->params();
  std::vector<uint32_t> pre(mods.size(), 0), post(mods.size(), 0);
  uint32_t root_pre = 0, root_post = 0;
  prefix_params_.clear();
  for (size_t i = 0; i < params.size(); ++i) {
    const bool in = layers_ >= 0 && in_cache_prefix(params[i], layers_);
    if (in) prefix_params_.push_back(i);
    ++(in ? root_pre : root_post);
    for (int32_t m : ancestors_[i]) ++(in ? pre : post)[m];
  }
  // Registration order lists a parent before its children.
  for (size_t m = 0; m < mods.size(); ++m) {
    if (holds_params_[m]) {
      place_[m] = post[m] == 0 ? kPrefix : pre[m] == 0 ? kAfter : kUnknown;
    } else if (parent_[m] >= 0) {
      place_[m] = place_[parent_[m]];
    } else {
      place_[m] = root_pre == 0 ? kAfter : root_post == 0 ? kPrefix : kUnknown;
    }
  }
}

void PrefixModes::update(const CompiledPlan& plan, const Selection& state, bool hold_eval,
                         const std::function<bool()>& root_training) {
  if (!modules_) return;
  ++version_;
  hold_eval_ = hold_eval;
  if (!hold_eval) return;
  place(plan, state);
  const auto& mods = *modules_;
  std::vector<int32_t> roots;
  for (size_t m = 0; m < mods.size(); ++m)
    if (place_[m] == kPrefix && (parent_[m] < 0 || place_[parent_[m]] != kPrefix))
      roots.push_back(int32_t(m));
  const bool training = root_training ? root_training() : true;
  for (int32_t m : held_eval_)
    if (place_[m] != kPrefix) mods[m].set_training(training);
  for (int32_t m : roots) mods[m].set_training(false);
  held_eval_ = std::move(roots);
}

void PrefixModes::enforce() {
  if (!hold_eval_ || held_eval_.empty()) return;
  // One check in the common case: `model->train()` flips every submodule at once.
  if (!(*modules_)[held_eval_.front()].is_training()) return;
  for (int32_t m : held_eval_) (*modules_)[m].set_training(false);
}

CacheablePrefix PrefixModes::describe(const CompiledPlan& plan, const Selection& state) const {
  CacheablePrefix c;
  if (!modules_) return c;
  place(plan, state);
  c.layers = layers_;
  c.stops = stops_;
  if (layers_ < 0) return c;
  c.params = prefix_params_;
  size_t more_effects = 0, more_unplaced = 0;
  const auto& mods = *modules_;
  for (size_t m = 0; m < mods.size(); ++m) {
    if (place_[m] == kAfter || !varies_in_train_mode(mods[m]) || !mods[m].is_training()) continue;
    if (place_[m] == kPrefix)
      add_capped(c.train_mode_effects, more_effects, describe_module(mods[m]) + " in train mode");
    else
      add_capped(c.unplaced, more_unplaced,
                 describe_module(mods[m]) + " in train mode, under '" +
                     (parent_[m] >= 0 ? mods[parent_[m]].name : std::string("the root")) +
                     "', which holds both the prefix and what trains");
  }
  if (more_effects)
    c.train_mode_effects.push_back("… and " + std::to_string(more_effects) + " more");
  if (more_unplaced) c.unplaced.push_back("… and " + std::to_string(more_unplaced) + " more");
  return c;
}

}  // namespace layerfreeze
