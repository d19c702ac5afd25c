#include "core/plan.hpp"

#include <limits>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/block_cycle.hpp"
#include "core/canonical_plan.hpp"
#include "core/hash.hpp"

namespace layerfreeze {

namespace {

void apply(const PlanRule& r, Selection& state, int64_t period, const Inventory& inv,
           const SliceTable& table) {
  auto put = [&](const Bitset& params, const Bitset& slices) {
    if (r.action == Action::kFreeze) {
      state.params |= params;
      state.slices |= slices;
    } else {
      state.params.subtract(params);
      state.slices.subtract(slices);
    }
  };
  if (r.set.is_static()) {
    put(r.set.leaf, r.set.slices);
  } else {
    Selection s = r.set.eval(period, inv, table);
    put(s.params, s.slices);
  }
  if (!table.empty()) table.normalize(state.params, state.slices);
}

// Fused tensors, not frozen whole in `now`, whose frozen slices differ from `before`.
std::vector<uint32_t> remasked_between(const SliceTable& table, const Bitset& before,
                                       const Selection& now) {
  std::vector<uint32_t> out;
  for (size_t k = 0; k < table.params.size(); ++k) {
    const uint32_t i = table.params[k];
    if (now.params.test(i)) continue;
    for (size_t j = table.first[k]; j < table.first[k + 1]; ++j)
      if (before.test(j) != now.slices.test(j)) {
        out.push_back(i);
        break;
      }
  }
  return out;
}

}  // namespace

std::string Provenance::where() const {
  if (!loc.known()) return loc.file;
  return loc.file + ":" + std::to_string(loc.line) + ":" + std::to_string(loc.column);
}

Selection DynamicSet::eval(int64_t period, const Inventory& inv, const SliceTable& table) const {
  switch (op) {
    case Op::kLeaf: return {leaf, slices};
    case Op::kUnion: {
      Selection b = kids[0].eval(period, inv, table);
      for (size_t i = 1; i < kids.size(); ++i) {
        Selection k = kids[i].eval(period, inv, table);
        b.params |= k.params;
        b.slices |= k.slices;
      }
      table.normalize(b.params, b.slices);
      return b;
    }
    case Op::kIntersect: {
      Selection b = kids[0].eval(period, inv, table);
      for (size_t i = 1; i < kids.size(); ++i) {
        Selection k = kids[i].eval(period, inv, table);
        b.params &= k.params;
        b.slices &= k.slices;
      }
      return b;
    }
    case Op::kMinus: {
      Selection b = kids[0].eval(period, inv, table);
      Selection k = kids[1].eval(period, inv, table);
      b.params.subtract(k.params);
      b.slices.subtract(k.slices);
      table.normalize(b.params, b.slices);
      return b;
    }
    case Op::kRandom: {
      // Deterministic by (seed, period), identical on every platform: splitmix64 and a partial
      // Fisher-Yates shuffle (no std::distribution, whose output is implementation-defined).
      uint64_t x = seed ^ (static_cast<uint64_t>(period) * 0xd1b54a32d192ed03ULL);
      std::vector<int32_t> p = pool;
      int64_t k = std::min<int64_t>(count, static_cast<int64_t>(p.size()));
      for (int64_t i = 0; i < k; ++i) {
        uint64_t span = p.size() - static_cast<uint64_t>(i);
        size_t j = static_cast<size_t>(i) + static_cast<size_t>(splitmix64(x) % span);
        std::swap(p[static_cast<size_t>(i)], p[j]);
      }
      Bitset b(inv.params().size());
      for (int64_t i = 0; i < k; ++i)
        for (uint32_t q : inv.layers[p[static_cast<size_t>(i)]].params) b.set(q);
      b &= mask;
      Bitset s = table.expand(b);
      return {std::move(b), std::move(s)};
    }
    case Op::kCycle:
      if (blocks.empty()) return {Bitset(inv.params().size()), Bitset(table.size())};
      return block(static_cast<size_t>(cycle_block(*this, period)), inv.params().size(), table);
  }
  return {leaf, slices};
}

void SliceTable::build(const Inventory& inv) {
  params.clear();
  kinds.clear();
  first.assign(1, 0);
  slot.assign(inv.params().size(), -1);
  for (size_t i = 0; i < inv.params().size(); ++i) {
    const Param& p = inv.params()[i];
    if (p.expert_part != ExpertPart::kFused || !p.shape_known || p.shape.empty() || p.shape[0] <= 0)
      continue;
    slot[i] = static_cast<int32_t>(params.size());
    params.push_back(static_cast<uint32_t>(i));
    kinds.push_back(Kind::kExperts);
    first.push_back(first.back() + static_cast<size_t>(p.shape[0]));
  }
}

void SliceTable::add_rows(uint32_t i, int64_t rows) {
  if (first.empty()) first.assign(1, 0);
  if (i >= slot.size() || slot[i] >= 0 || rows <= 0) return;
  slot[i] = static_cast<int32_t>(params.size());
  params.push_back(i);
  kinds.push_back(Kind::kRows);
  first.push_back(first.back() + static_cast<size_t>(rows));
}

Bitset SliceTable::expand(const Bitset& sel) const {
  Bitset out(size());
  for (size_t k = 0; k < params.size(); ++k)
    if (sel.test(params[k]))
      for (size_t j = first[k]; j < first[k + 1]; ++j) out.set(j);
  return out;
}

void SliceTable::normalize(Bitset& sel, const Bitset& slices) const {
  for (size_t k = 0; k < params.size(); ++k) {
    const bool all = slices.count_range(first[k], first[k + 1]) == first[k + 1] - first[k];
    if (all)
      sel.set(params[k]);
    else
      sel.reset(params[k]);
  }
}

int64_t SliceTable::count(uint32_t i, const Bitset& slices) const {
  if (i >= slot.size() || slot[i] < 0) return -1;
  const size_t k = static_cast<size_t>(slot[i]);
  return static_cast<int64_t>(slices.count_range(first[k], first[k + 1]));
}

std::vector<int32_t> SliceTable::indices_in(uint32_t i, const Bitset& slices, bool in) const {
  std::vector<int32_t> out;
  if (i >= slot.size() || slot[i] < 0) return out;
  const size_t k = static_cast<size_t>(slot[i]);
  for (size_t j = first[k]; j < first[k + 1]; ++j)
    if (slices.test(j) == in) out.push_back(static_cast<int32_t>(j - first[k]));
  return out;
}

int64_t CompiledPlan::frozen_numel(const Selection& s) const {
  int64_t n = 0;
  const Inventory& inv = *inventory;
  s.params.for_each([&](size_t i) { n += inv.params()[i].numel; });
  for (size_t k = 0; k < slices.params.size(); ++k) {
    const uint32_t i = slices.params[k];
    if (s.params.test(i)) continue;
    int64_t c = slices.count(i, s.slices);
    if (c > 0) n += inv.params()[i].numel / slices.slices_of(k) * c;
  }
  return n;
}

void CompiledPlan::place(const std::vector<Firing>& f) {
  fired = f;
  stages.erase(std::remove_if(stages.begin(), stages.end(),
                              [](const PlanStage& st) { return st.watch >= 0; }),
               stages.end());
  const auto at = watch_positions(watches, fired);
  const int64_t spe = options.steps_per_epoch.value_or(1);
  for (size_t id = 0; id < watched.size(); ++id) {
    if (at[id] < 0) continue;
    PlanStage st = watched[id];
    st.at = at[id];
    // Saturating: a run's epoch (or a restored state's) is not bounded like a written trigger.
    st.key = !uses_steps ? st.at
             : st.at > std::numeric_limits<int64_t>::max() / spe
                 ? std::numeric_limits<int64_t>::max()
                 : st.at * spe;
    stages.push_back(std::move(st));
  }
  std::stable_sort(stages.begin(), stages.end(), [](const PlanStage& a, const PlanStage& b) {
    return a.key != b.key ? a.key < b.key : a.file_order < b.file_order;
  });
}

std::string MetricStageView::placement() const {
  const std::string e = "at epoch " + std::to_string(at);
  switch (placed) {
    case Placed::kFired:
      return e + " (plateau" + (best ? ", best " + Value::real(*best).to_string() : "") + ")";
    case Placed::kBound: return e + " (not_after)";
    case Placed::kLatest: return e + " at the latest (no plateau given)";
    case Placed::kWaiting: break;
  }
  return "waits for a plateau (no not_after)";
}

std::string MetricStageView::window_text() const {
  if (window.latest < 0) return "from epoch " + std::to_string(window.earliest) + ", no bound";
  if (window.latest == window.earliest) return "epoch " + std::to_string(window.latest);
  return "epochs " + std::to_string(window.earliest) + "–" + std::to_string(window.latest);
}

std::vector<MetricStageView> CompiledPlan::metric_stages() const {
  std::vector<MetricStageView> out(watches.size());
  const auto windows = watch_windows(watches);
  const auto at = watch_positions(watches, fired);
  for (size_t id = 0; id < watches.size(); ++id) {
    MetricStageView& v = out[id];
    v.watch = &watches[id];
    v.window = windows[id];
    v.at = at[id];
    v.placed = at[id] < 0 ? MetricStageView::Placed::kWaiting : MetricStageView::Placed::kLatest;
  }
  for (const auto& f : fired)
    if (f.id < out.size()) {
      out[f.id].placed =
          f.plateau ? MetricStageView::Placed::kFired : MetricStageView::Placed::kBound;
      out[f.id].best = f.best;
    }
  return out;
}

CompiledPlan CompiledPlan::placed(const std::vector<Firing>& f) const {
  CompiledPlan out = *this;
  out.place(f);
  out.build_prefix();
  return out;
}

void CompiledPlan::finalize() {
  place({});
  build_prefix();
  // The fingerprint is the hash of the canonical plan: any difference a trainer would run
  // differently changes it, and nothing else does.
  canonical_ = canonical_text(canonical_plan(*this));
  fingerprint_ = fingerprint_of(canonical_);
}

void CompiledPlan::build_prefix() {
  const Inventory& inv = *inventory;
  if (slices.first.empty()) slices.build(inv);
  initial_state_ = {Bitset(inv.params().size()), Bitset(slices.size())};
  for (const auto& r : initial) apply(r, initial_state_, 0, inv, slices);
  prefix_.clear();
  prefix_.push_back(initial_state_);
  has_periodic_ = false;
  has_stage_lr_ = false;
  for (const auto& st : stages) {
    if (st.group_lr || st.group_lr_scale) has_stage_lr_ = true;
    Selection next = prefix_.back();
    if (st.period > 0)
      has_periodic_ = true;
    else
      for (const auto& r : st.rules) apply(r, next, 0, inv, slices);
    prefix_.push_back(std::move(next));
  }
  for (const auto& st : watched)
    if (st.group_lr || st.group_lr_scale) has_stage_lr_ = true;
}

Time CompiledPlan::last_trigger() const {
  Time last{0, 0};
  for (const auto& st : stages) {
    // A periodic stage shows ten periods; a block cycle one whole cycle and the first period of
    // the next (where the order wraps or is drawn anew), up to 64 blocks.
    int64_t periods = 10;
    if (const DynamicSet* c = st.cycle())
      periods = std::max<int64_t>(periods, std::min<int64_t>(cycle_length(*c), 64));
    int64_t end = st.at + (st.period > 0 ? periods * st.period : 0);
    int64_t& slot = st.unit == Trigger::Unit::kEpoch ? last.epoch : last.step;
    slot = std::max(slot, end);
  }
  return last;
}

Time CompiledPlan::horizon(std::optional<int64_t> epochs, std::optional<int64_t> steps) const {
  const auto spe = options.steps_per_epoch;
  const Time last = last_trigger();
  Time h{-1, -1};
  if (epochs) h.epoch = *epochs;
  if (steps) h.step = *steps;
  if (h.epoch < 0) h.epoch = steps && spe ? (*steps + *spe - 1) / *spe : last.epoch + 1;
  if (h.step < 0) {
    if (spe && epochs)
      h.step = *epochs * *spe;
    else if (spe)
      h.step = std::max(h.epoch * *spe, last.step + 1);
    else
      h.step = last.step + 1;
  }
  return h;
}

Selection CompiledPlan::state_at(const Time& t) const {
  size_t j = 0;
  while (j < stages.size() && stages[j].fires(t) && stages[j].period == 0) ++j;
  bool rest_quiet = true;
  for (size_t k = j; k < stages.size(); ++k) rest_quiet = rest_quiet && !stages[k].fires(t);
  if (rest_quiet) return prefix_[j];
  // A periodic stage is active, or triggers fired out of key order: apply in order.
  Selection state = prefix_[j];
  for (size_t k = j; k < stages.size(); ++k) {
    if (!stages[k].fires(t)) continue;
    for (const auto& r : stages[k].rules)
      apply(r, state, stages[k].period_at(t), *inventory, slices);
  }
  return state;
}

std::vector<const PlanRule*> CompiledPlan::deciders_at(const Time& t) const {
  const Inventory& inv = *inventory;
  std::vector<const PlanRule*> by(inv.params().size(), nullptr);
  auto mark = [&](const PlanRule& r, int64_t period) {
    Selection s = r.set.eval(period, inv, slices);
    s.params.for_each([&](size_t i) { by[i] = &r; });
    // A fused tensor the rule cuts through: it decides that tensor's state too.
    for (uint32_t i : slices.params)
      if (!s.params.test(i) && slices.count(i, s.slices) > 0) by[i] = &r;
  };
  for (const auto& r : initial) mark(r, 0);
  for (const auto& st : stages)
    if (st.fires(t))
      for (const auto& r : st.rules) mark(r, st.period_at(t));
  return by;
}

double CompiledPlan::lr_scale(size_t i) const {
  if (options.lr_decay == 1.0) return 1.0;
  const Param& p = inventory->params()[i];
  const int32_t L = inventory->num_layers();
  int32_t layer = p.role == Role::kLayer ? p.layer : p.role == Role::kOther ? p.anchor_layer : -2;
  // Depth below the head along the data flow: layers, embeddings, connectors, towers.
  int64_t depth = p.role == Role::kHead || p.role == Role::kMtp ? 0
                  : p.role == Role::kTower                      ? L + 3
                  : p.role == Role::kConnector                  ? L + 2
                  : p.role == Role::kEmbeddings || layer == -2  ? L + 1
                                                                : L - layer;
  return std::pow(options.lr_decay, -static_cast<double>(depth));
}

const PlanStage* CompiledPlan::stage_of(const PlanRule* rule) const {
  if (rule)
    for (const auto& st : stages)
      if (!st.rules.empty() && rule >= &st.rules.front() && rule <= &st.rules.back()) return &st;
  return nullptr;
}

double CompiledPlan::group_lr(size_t i, const PlanRule* decider, double base_lr) const {
  const PlanStage* stage = stage_of(decider);
  if (stage && stage->group_lr) return *stage->group_lr;
  const double scale =
      stage && stage->group_lr_scale ? *stage->group_lr_scale : options.unfreeze_lr_scale;
  return base_lr * scale * lr_scale(i);
}

Time CompiledPlan::next_change(const Time& t) const {
  Time next{-1, -1};
  auto consider = [&](Trigger::Unit u, int64_t v) {
    int64_t& slot = u == Trigger::Unit::kEpoch ? next.epoch : next.step;
    if (slot < 0 || v < slot) slot = v;
  };
  for (const auto& st : stages) {
    if (!st.fires(t))
      consider(st.unit, st.at);
    else if (st.period > 0)
      consider(st.unit, st.at + (st.period_at(t) + 1) * st.period);
  }
  return next;
}

std::vector<StatePoint> CompiledPlan::timeline(const Time& horizon, size_t max_points,
                                               bool* truncated) const {
  // Each point keeps its slice set: with many rows cut, fewer points (at most 256 MiB of them).
  const size_t point_bytes = slices.size() / 8 + 1;
  max_points = std::max<size_t>(1, std::min(max_points, (size_t{256} << 20) / point_bytes));
  const auto spe = options.steps_per_epoch;
  struct Cand {
    int64_t key;
    Time t;
    std::string cause;
    int64_t cycle = -1;
  };
  std::vector<Cand> cands;
  auto time_of = [&](Trigger::Unit u, int64_t v) {
    if (u == Trigger::Unit::kEpoch) return Time{v, spe ? v * *spe : -1};
    return Time{spe ? v / *spe : -1, v};
  };
  auto within = [&](Trigger::Unit u, int64_t v) {
    return u == Trigger::Unit::kEpoch ? (horizon.epoch < 0 || v < horizon.epoch)
                                      : (horizon.step < 0 || v < horizon.step);
  };
  auto key_of = [&](Trigger::Unit u, int64_t v) {
    return u == Trigger::Unit::kEpoch && spe && uses_steps ? v * *spe : v;
  };
  if (truncated) *truncated = false;
  for (const auto& st : stages) {
    if (st.period == 0) {
      if (within(st.unit, st.at))
        cands.push_back({key_of(st.unit, st.at), time_of(st.unit, st.at), st.label});
      continue;
    }
    const DynamicSet* cycle = st.cycle();
    for (int64_t p = 0;; ++p) {
      int64_t v = st.at + p * st.period;
      if (!within(st.unit, v)) break;
      if (cands.size() >= max_points) {
        if (truncated) *truncated = true;
        break;
      }
      std::string cause = st.label + " (period " + std::to_string(p);
      int64_t c = -1;
      if (cycle) {
        // "(period 33 · cycle 1 · block 1 'layer 1')": which block of which cycle trains now.
        const int64_t n = static_cast<int64_t>(cycle->blocks.size());
        const int64_t b = cycle_block(*cycle, p);
        c = p / std::max<int64_t>(1, cycle_length(*cycle));
        cause += " \u00b7 cycle " + std::to_string(c) + " \u00b7 block " + std::to_string(b) +
                 (n > 0 ? " '" + cycle->block_names[static_cast<size_t>(b)] + "'" : "");
      }
      cands.push_back({key_of(st.unit, v), time_of(st.unit, v), cause + ")", c});
    }
  }
  std::stable_sort(cands.begin(), cands.end(),
                   [](const Cand& a, const Cand& b) { return a.key < b.key; });

  std::vector<StatePoint> out;
  StatePoint first;
  first.at = Time{0, 0};
  {
    Selection s0 = state_at(first.at);
    first.frozen = std::move(s0.params);
    first.frozen_slices = std::move(s0.slices);
  }
  first.frozen.for_each([&](size_t i) { first.newly_frozen.push_back(static_cast<uint32_t>(i)); });
  for (uint32_t i : slices.params)
    if (!first.frozen.test(i) && slices.count(i, first.frozen_slices) > 0)
      first.remasked.push_back(i);
  for (const auto& c : cands)
    if (c.key == 0) {
      first.causes.push_back(c.cause);
      if (first.cycle < 0) first.cycle = c.cycle;
    }
  out.push_back(std::move(first));
  for (size_t i = 0; i < cands.size();) {
    size_t j = i;
    std::vector<std::string> causes;
    int64_t cycle = -1;
    for (; j < cands.size() && cands[j].key == cands[i].key; ++j) {
      causes.push_back(cands[j].cause);
      if (cycle < 0) cycle = cands[j].cycle;
    }
    if (cands[i].key != 0) {
      Time t = cands[i].t;
      Selection now = state_at(t);
      Bitset& s = now.params;
      const Bitset& prev = out.back().frozen;
      const Bitset& prev_slices = out.back().frozen_slices;
      if (s != prev || now.slices != prev_slices) {
        StatePoint sp;
        sp.at = t;
        sp.causes = causes;
        sp.cycle = cycle;
        for (size_t k = 0; k < s.size(); ++k) {
          if (s.test(k) && !prev.test(k)) sp.newly_frozen.push_back(static_cast<uint32_t>(k));
          if (!s.test(k) && prev.test(k)) sp.newly_unfrozen.push_back(static_cast<uint32_t>(k));
        }
        sp.remasked = remasked_between(slices, prev_slices, now);
        sp.frozen = std::move(s);
        sp.frozen_slices = std::move(now.slices);
        out.push_back(std::move(sp));
      }
    }
    i = j;
  }
  return out;
}

bool PlanCursor::seek(const Time& t) {
  if (!stale(t)) {
    last_ = t;
    return false;
  }
  Selection now = plan_->state_at(t);
  next_ = plan_->next_change(t);
  last_ = t;
  newly_frozen_.clear();
  newly_unfrozen_.clear();
  remasked_.clear();
  if (!valid_) state_ = {Bitset(now.params.size()), Bitset(now.slices.size())};
  valid_ = true;
  if (now == state_) return false;
  // Word by word: only the words that differ are walked bit by bit.
  const auto& a = state_.params.words();
  const auto& b = now.params.words();
  for (size_t w = 0; w < a.size(); ++w) {
    uint64_t diff = a[w] ^ b[w];
    while (diff) {
      size_t i = w * 64 + static_cast<size_t>(__builtin_ctzll(diff));
      (now.params.test(i) ? newly_frozen_ : newly_unfrozen_).push_back(static_cast<uint32_t>(i));
      diff &= diff - 1;
    }
  }
  if (now.slices != state_.slices) remasked_ = remasked_between(plan_->slices, state_.slices, now);
  state_ = std::move(now);
  return true;
}

}  // namespace layerfreeze
