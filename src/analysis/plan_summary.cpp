#include "analysis/plan_summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <map>
#include <sstream>

#include "core/experts.hpp"
#include "core/format.hpp"

namespace layerfreeze {

std::optional<OptimizerKind> parse_optimizer(const std::string& s) {
  if (s == "adamw") return OptimizerKind::AdamW;
  if (s == "adam") return OptimizerKind::Adam;
  if (s == "sgd") return OptimizerKind::SGD;
  if (s == "sgd-momentum") return OptimizerKind::SGDMomentum;
  return std::nullopt;
}

const char* optimizer_name(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::SGD: return "sgd";
    case OptimizerKind::SGDMomentum: return "sgd-momentum";
    case OptimizerKind::Adam: return "adam";
    case OptimizerKind::AdamW: return "adamw";
  }
  return "adamw";
}

int optimizer_states(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::SGD: return 0;
    case OptimizerKind::SGDMomentum: return 1;
    default: return 2;
  }
}

const char* group_state_name(GroupState s) {
  switch (s) {
    case GroupState::kFrozen: return "FROZEN";
    case GroupState::kActive: return "ACTIVE";
    case GroupState::kPartial: return "PARTIAL";
    case GroupState::kEmpty: return "-";
  }
  return "-";
}

namespace {

struct Acc {
  size_t frozen = 0, total = 0, partial = 0;
  int64_t numel = 0;
  void add(bool f, int64_t n, bool part = false) {
    frozen += f;
    partial += part;
    ++total;
    numel += n;
  }
  GroupState state() const {
    if (total == 0) return GroupState::kEmpty;
    if (partial > 0) return GroupState::kPartial;
    if (frozen == 0) return GroupState::kActive;
    if (frozen == total) return GroupState::kFrozen;
    return GroupState::kPartial;
  }
};

// How many of a mixture-of-experts layer's routed experts train: an expert trains when any of
// its tensors (or slices of fused ones) does. -1 for a layer without experts.
int64_t training_experts(const Inventory& inv, int32_t l, const Selection& frozen,
                         const SliceTable& slices) {
  const int64_t E = inv.num_experts;
  if (E <= 0) return -1;
  std::vector<bool> trains(static_cast<size_t>(E), false);
  bool moe = false;
  for (uint32_t q : inv.layers[static_cast<size_t>(l)].params) {
    const Param& p = inv.params()[q];
    if (p.expert_part == ExpertPart::kRouted && p.expert >= 0 && p.expert < E) {
      moe = true;
      if (!frozen.params.test(q)) trains[static_cast<size_t>(p.expert)] = true;
    } else if (p.expert_part == ExpertPart::kFused && slices.slot[q] >= 0) {
      moe = true;
      if (frozen.params.test(q)) continue;
      const size_t k = static_cast<size_t>(slices.slot[q]);
      for (int64_t e = 0; e < slices.slices_of(k) && e < E; ++e)
        if (!frozen.slices.test(slices.first[k] + static_cast<size_t>(e)))
          trains[static_cast<size_t>(e)] = true;
    }
  }
  if (!moe) return -1;
  return std::count(trains.begin(), trains.end(), true);
}

}  // namespace

std::vector<LayerRun> layer_runs(const Inventory& inv, const Selection& frozen,
                                 const SliceTable& slices, bool one_per_layer) {
  std::vector<LayerRun> runs;
  for (int32_t l = 0; l < inv.num_layers(); ++l) {
    Acc a;
    for (uint32_t q : inv.layers[l].params)
      a.add(frozen.params.test(q), inv.params()[q].numel, frozen.partial(q, slices));
    GroupState st = a.state();
    std::string detail;
    if (st == GroupState::kPartial) {
      int64_t k = training_experts(inv, l, frozen, slices);
      if (k >= 0 && k < inv.num_experts)
        detail = fmt::format("experts {}/{} train", k, inv.num_experts);
      if (slices.has_rows()) {
        std::string rows = rows_detail(inv.layers[l].params, frozen, slices);
        if (!rows.empty()) detail += (detail.empty() ? "" : ", ") + rows;
      }
    }
    if (!one_per_layer && !runs.empty() && runs.back().state == st &&
        runs.back().detail == detail && runs.back().last == l - 1) {
      runs.back().last = l;
      runs.back().numel += a.numel;
      runs.back().tensors += a.total;
    } else {
      runs.push_back({l, l, st, a.numel, a.total, detail});
    }
  }
  return runs;
}

namespace {

std::string capitalized(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

}  // namespace

std::string rows_detail(const std::vector<uint32_t>& cut, const Selection& frozen,
                        const SliceTable& slices) {
  std::vector<uint32_t> partial;
  for (uint32_t q : cut)
    if (slices.rows(q) && frozen.partial(q, slices)) partial.push_back(q);
  if (partial.empty()) return "";
  auto trainable = [&](uint32_t q) {
    return std::make_pair(slices.indices_in(q, frozen.slices, false),
                          slices.slices_of(static_cast<size_t>(slices.slot[q])));
  };
  auto one = trainable(partial[0]);
  for (size_t x = 1; x < partial.size(); ++x)
    if (trainable(partial[x]) != one)
      return std::to_string(partial.size()) + " tensors cut by rows";
  return "rows " + index_ranges(one.first) + " of " + std::to_string(one.second) + " train";
}

std::vector<GroupLine> group_lines(const Inventory& inv, const Bitset& frozen) {
  return group_lines(inv, Selection{frozen, Bitset()}, SliceTable{});
}

std::vector<GroupLine> group_lines(const Inventory& inv, const Selection& sel,
                                   const SliceTable& slices) {
  const Bitset& frozen = sel.params;
  Acc emb, head, other, connector, mtp;
  std::vector<uint32_t> emb_cut, head_cut;
  std::vector<Acc> towers(inv.towers.size());
  for (size_t i = 0; i < inv.params().size(); ++i) {
    const Param& p = inv.params()[i];
    bool f = frozen.test(i);
    bool part =
        slices.rows(static_cast<uint32_t>(i)) && sel.partial(static_cast<uint32_t>(i), slices);
    bool is_head = p.role == Role::kHead;
    for (Role r : p.alias_roles) is_head = is_head || r == Role::kHead;
    if (p.role == Role::kEmbeddings) {
      emb.add(f, p.numel, part);
      if (part) emb_cut.push_back(static_cast<uint32_t>(i));
    }
    if (is_head) {
      head.add(f, p.numel, part);
      if (part) head_cut.push_back(static_cast<uint32_t>(i));
    }
    if (p.role == Role::kOther) other.add(f, p.numel, part);
    if (p.role == Role::kConnector) connector.add(f, p.numel, part);
    if (p.role == Role::kMtp) mtp.add(f, p.numel, part);
    if (p.role == Role::kTower && p.part >= 0)
      towers[static_cast<size_t>(p.part)].add(f, p.numel, part);
  }
  std::vector<GroupLine> g;
  std::map<std::string, int> per_modality;
  for (const auto& t : inv.towers) ++per_modality[t.modality];
  for (size_t t = 0; t < towers.size(); ++t) {
    const Tower& tw = inv.towers[t];
    std::string label = capitalized(tw.modality) + " tower";
    if (per_modality[tw.modality] > 1) label += " " + tw.root;
    g.push_back({label, tw.num_layers, towers[t].state(), towers[t].numel, towers[t].total, ""});
  }
  if (connector.total)
    g.push_back({inv.connectors.size() > 1 ? "Connectors" : "Connector", 0, connector.state(),
                 connector.numel, connector.total, ""});
  g.push_back(
      {"Embeddings", 0, emb.state(), emb.numel, emb.total, rows_detail(emb_cut, sel, slices)});
  std::string head_rows = rows_detail(head_cut, sel, slices);
  // A tied head is the embedding tensor itself: one set of rows, said once more here.
  for (uint32_t q : head_cut)
    if (inv.params()[q].role == Role::kEmbeddings) {
      head_rows += ", tied to the embeddings";
      break;
    }
  g.push_back({"Head", 0, head.state(), head.numel, head.total, head_rows});
  if (other.total) g.push_back({"Other", 0, other.state(), other.numel, other.total, ""});
  if (mtp.total) g.push_back({"MTP", 0, mtp.state(), mtp.numel, mtp.total, ""});
  return g;
}

namespace {

std::string amount(bool shapes, int64_t numel, size_t tensors) {
  if (!shapes) return std::to_string(tensors) + (tensors == 1 ? " tensor" : " tensors");
  return short_count(numel) + " params";
}

// A parameter's place along the data flow: each tower (its layers in order), the connectors,
// the embeddings, the trunk's layers (an `other` parameter right after the layer it opens with),
// the head. A tower's parameters outside its layers count as its input side.
int64_t flow_key(const Inventory& inv, const Param& p) {
  constexpr int64_t kPart = int64_t{1} << 50;
  switch (p.role) {
    case Role::kTower: {
      int64_t local = 0;
      if (p.layer >= 0) {
        const Tower& t = inv.towers[static_cast<size_t>(p.part)];
        local = 1 + p.layer - inv.stacks[static_cast<size_t>(t.stacks.front())].first_layer;
      }
      return (static_cast<int64_t>(p.part) << 32) + local;
    }
    case Role::kConnector: return kPart;
    case Role::kEmbeddings: return 2 * kPart;
    case Role::kLayer: return 3 * kPart + 2 * static_cast<int64_t>(p.layer) + 1;
    case Role::kOther: return 3 * kPart + 2 * static_cast<int64_t>(p.anchor_layer) + 2;
    case Role::kHead:
    case Role::kMtp: return 4 * kPart;
  }
  return 4 * kPart;
}

// The compute figures of a stage (StageSummary::step_cost).
void step_compute(const Inventory& inv, bool shapes, const Bitset& frozen, StageSummary& s) {
  if (!shapes) return;
  std::vector<int64_t> keys(inv.params().size());
  int64_t earliest = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < inv.params().size(); ++i) {
    keys[i] = flow_key(inv, inv.params()[i]);
    if (!frozen.test(i)) earliest = std::min(earliest, keys[i]);
  }
  for (size_t i = 0; i < inv.params().size(); ++i) {
    const Param& p = inv.params()[i];
    if (p.role == Role::kEmbeddings) continue;  // a lookup, not a matrix product
    s.forward_numel += p.numel;
    if (keys[i] > earliest) s.backward_through_numel += p.numel;
    if (!frozen.test(i)) s.weight_grad_numel += p.numel;
  }
}

}  // namespace

std::string layer_status_table(const Inventory& inv, const Bitset& frozen, bool show_all) {
  return layer_status_table(inv, Selection{frozen, Bitset()}, SliceTable{}, show_all);
}

std::string layer_status_table(const Inventory& inv, const Selection& frozen,
                               const SliceTable& slices, bool show_all) {
  std::ostringstream out;
  const bool shapes = inv.shapes_known();  // one pass over the parameters, not one a line
  const std::string rule(40, '=');
  out << rule << "\nLAYER STATUS\n" << rule << "\n";
  auto runs = layer_runs(inv, frozen, slices, show_all);
  std::vector<std::string> labels;
  size_t width = 0;
  for (const auto& r : runs) {
    std::string l = r.first == r.last
                        ? "Layer " + std::to_string(r.first) + ":"
                        : "Layer " + std::to_string(r.first) + "-" + std::to_string(r.last) + ":";
    width = std::max(width, l.size());
    labels.push_back(l);
  }
  auto groups = group_lines(inv, frozen, slices);
  for (const auto& g : groups) width = std::max(width, g.label.size() + 1);
  if (runs.empty()) out << "(no layers discovered)\n";
  for (size_t i = 0; i < runs.size(); ++i)
    out << fmt::format("{:<{}} {:<7} ({}{})\n", labels[i], width, group_state_name(runs[i].state),
                       runs[i].detail.empty() ? "" : runs[i].detail + "; ",
                       amount(shapes, runs[i].numel, runs[i].tensors));
  out << std::string(40, '-') << "\n";
  for (const auto& g : groups) {
    if (!g.tensors) {
      out << fmt::format("{:<{}} {}\n", g.label + ":", width, group_state_name(g.state));
      continue;
    }
    std::string layers;
    if (g.layers) layers = fmt::format("{} {}, ", g.layers, g.layers == 1 ? "layer" : "layers");
    if (!g.detail.empty()) layers += g.detail + "; ";
    out << fmt::format("{:<{}} {:<7} ({}{})\n", g.label + ":", width, group_state_name(g.state),
                       layers, amount(shapes, g.numel, g.tensors));
  }
  out << rule << "\n";
  return out.str();
}

std::string time_text(const Time& t, bool uses_steps) {
  if (t.epoch >= 0 && t.step >= 0 && (uses_steps || t.step > 0))
    return "epoch " + std::to_string(t.epoch) + " · step " + std::to_string(t.step);
  if (t.step >= 0 && (uses_steps || t.epoch < 0)) return "step " + std::to_string(t.step);
  return "epoch " + std::to_string(t.epoch);
}

std::vector<CycleSummary::SizeGroup> CycleSummary::by_size() const {
  std::vector<SizeGroup> out;
  std::map<int64_t, size_t> at;  // numel -> index in out
  for (size_t b = 0; b < blocks.size(); ++b) {
    auto [it, added] = at.try_emplace(blocks[b].numel, out.size());
    if (added)
      out.push_back({{}, blocks[b].numel, blocks[b].grad_bytes + blocks[b].optimizer_bytes});
    out[it->second].blocks.push_back(b);
  }
  return out;
}

namespace {

// Each block cycle of the plan's periodic stages, with each block's gradient and optimizer
// bytes while it trains (a slice of a masked tensor counts its share).
std::vector<CycleSummary> cycle_summaries(const CompiledPlan& plan, int states) {
  const Inventory& inv = *plan.inventory;
  std::vector<CycleSummary> out;
  for (const auto& st : plan.stages) {
    if (st.period == 0) continue;
    for (const auto& r : st.rules) {
      const DynamicSet* c = r.set.cycle();
      if (!c) continue;
      CycleSummary cs{&st, &r, c, {}};
      for (size_t b = 0; b < c->blocks.size(); ++b) {
        BlockCost cost;
        cost.name = c->block_names[b];
        auto add = [&](const Param& p, int64_t numel) {
          cost.numel += numel;
          ++cost.tensors;
          const int64_t bytes = p.numel ? p.bytes() / p.numel * numel : 0;
          cost.grad_bytes += bytes;
          cost.optimizer_bytes += bytes * states;
        };
        const CycleBlock& block = c->blocks[b];
        for (uint32_t i : block.params) add(inv.params()[i], inv.params()[i].numel);
        if (block.cut)  // the trainable share of each tensor it cuts, and not whole
          for (size_t k = 0; k < plan.slices.params.size(); ++k) {
            const uint32_t i = plan.slices.params[k];
            const int64_t n = plan.slices.count(i, *block.cut);
            if (n > 0 && !std::binary_search(block.params.begin(), block.params.end(), i))
              add(inv.params()[i], inv.params()[i].numel / plan.slices.slices_of(k) * n);
          }
        cs.blocks.push_back(std::move(cost));
      }
      out.push_back(std::move(cs));  // each cycle of the stage (its causes name the first's block)
    }
  }
  return out;
}

}  // namespace

PlanSummary summarize(const CompiledPlan& plan, OptimizerKind optimizer, const Time& horizon) {
  PlanSummary ps;
  ps.plan = &plan;
  ps.optimizer = optimizer;
  ps.horizon = horizon;
  const Inventory& inv = *plan.inventory;
  ps.shapes_known = inv.shapes_known();
  const int states = optimizer_states(optimizer);
  std::map<const PlanRule*, size_t> rank;  // rules in the order they apply
  for (const auto& r : plan.initial) rank.emplace(&r, rank.size());
  for (const auto& st : plan.stages)
    for (const auto& r : st.rules) rank.emplace(&r, rank.size());
  for (auto& point : plan.timeline(horizon, kMaxPrintedPoints, &ps.truncated)) {
    StageSummary s;
    for (size_t i = 0; i < inv.params().size(); ++i) {
      const Param& p = inv.params()[i];
      if (point.frozen.test(i)) {
        s.frozen_numel += p.numel;
        ++s.frozen_tensors;
        s.saved_grad_bytes += p.bytes();
        s.saved_optimizer_bytes += p.bytes() * states;
      } else {
        // A masked tensor (fused experts, rows): its frozen slices hold no kept gradient and no
        // optimizer state (the executor keeps both compact); its whole gradient exists during
        // backward only.
        int64_t masked = 0;
        if (int64_t c = plan.slices.count(static_cast<uint32_t>(i), point.frozen_slices); c > 0) {
          const auto k = static_cast<size_t>(plan.slices.slot[i]);
          masked = p.numel / plan.slices.slices_of(k) * c;
          ++s.masked_tensors;
          s.masked_frozen_numel += masked;
          s.frozen_numel += masked;
          s.masked_transient_grad_bytes += p.bytes();
        }
        const int64_t masked_bytes = p.numel ? p.bytes() / p.numel * masked : 0;
        s.trainable_numel += p.numel - masked;
        ++s.trainable_tensors;
        s.grad_bytes += p.bytes() - masked_bytes;
        s.optimizer_bytes += (p.bytes() - masked_bytes) * states;
        s.saved_grad_bytes += masked_bytes;
        s.saved_optimizer_bytes += masked_bytes * states;
        if (p.role == Role::kLayer &&
            (!s.first_trainable_layer || p.layer < *s.first_trainable_layer))
          s.first_trainable_layer = p.layer;
        if (p.role == Role::kEmbeddings) s.input_side_trainable = true;
        if (p.role == Role::kConnector) s.connector_trainable = true;
        if (p.role == Role::kTower &&
            (!s.first_trainable_tower || p.part <= *s.first_trainable_tower)) {
          if (s.first_trainable_tower && p.part < *s.first_trainable_tower) {
            s.first_trainable_tower_layer.reset();
            s.tower_input_trainable = false;
          }
          s.first_trainable_tower = p.part;
          if (p.layer < 0)
            s.tower_input_trainable = true;
          else if (!s.first_trainable_tower_layer || p.layer < *s.first_trainable_tower_layer)
            s.first_trainable_tower_layer = p.layer;
        }
      }
    }
    s.nothing_trains = s.trainable_tensors == 0;
    step_compute(inv, ps.shapes_known, point.frozen, s);
    s.cache = cache_boundary(plan, {point.frozen, point.frozen_slices});
    s.runs = layer_runs(inv, {point.frozen, point.frozen_slices}, plan.slices, false);
    s.groups = group_lines(inv, {point.frozen, point.frozen_slices}, plan.slices);
    // Which rules decided the state here: at the start every rule with an effect; later, the
    // rules behind what changed.
    auto by = plan.deciders_at(point.at);
    std::map<const PlanRule*, RuleTally> tally;
    std::vector<const PlanRule*> order;
    const PlanRule* last_rule = nullptr;  // neighbours are mostly decided by the same rule
    RuleTally* last = nullptr;
    auto count = [&](size_t i) {
      const PlanRule* r = by[i];
      if (!r) return;
      if (r != last_rule) {
        auto it = tally.find(r);
        if (it == tally.end()) {
          it = tally.emplace(r, RuleTally{r, 0, 0}).first;
          order.push_back(r);
        }
        last_rule = r;
        last = &it->second;
      }
      ++last->tensors;
      last->numel += inv.params()[i].numel;
    };
    if (ps.stages.empty()) {
      for (size_t i = 0; i < inv.params().size(); ++i) count(i);
    } else {
      for (uint32_t i : point.newly_frozen) count(i);
      for (uint32_t i : point.newly_unfrozen) count(i);
      for (uint32_t i : point.remasked) count(i);
    }
    std::sort(order.begin(), order.end(),
              [&](const PlanRule* x, const PlanRule* y) { return rank.at(x) < rank.at(y); });
    for (const auto* r : order) s.decided_by.push_back(tally[r]);
    s.point = std::move(point);
    ps.stages.push_back(std::move(s));
  }
  ps.cycles = cycle_summaries(plan, states);
  // Until when each boundary holds: the first later change point whose boundary is shallower.
  for (size_t k = 0; k < ps.stages.size(); ++k) {
    CacheBoundary& c = ps.stages[k].cache;
    if (!c.cacheable() && !c.tower_only()) continue;
    for (size_t j = k + 1; j < ps.stages.size(); ++j) {
      const CacheBoundary& later = ps.stages[j].cache;
      // A trunk prefix holds while the boundary is no shallower; a towers-only cache while every
      // tower it holds (and the connectors, if it holds them) stays frozen.
      const bool towers_kept = std::all_of(c.towers.begin(), c.towers.end(), [&](const auto& t) {
        return std::find(later.towers.begin(), later.towers.end(), t) != later.towers.end();
      });
      const bool connectors_kept = !c.connectors_in || later.connectors_in;
      if (c.cacheable() ? later.layers >= c.layers : towers_kept && connectors_kept) continue;
      c.holds_until = ps.stages[j].point.at;
      c.holds_until_why = c.cacheable() ? later.stops
                          : towers_kept ? std::string("a connector trains")
                                        : std::string("a tower it holds trains");
      break;
    }
  }
  return ps;
}

void add_sequence_terms(const CompiledPlan& plan, int64_t seq_len, PlanSummary& ps) {
  ps.seq_len = std::max<int64_t>(0, seq_len);
  if (!ps.shapes_known || ps.seq_len == 0) return;
  const Inventory& inv = *plan.inventory;
  // The token embedding (the 2-D embeddings tensor with most rows): its rows are the
  // vocabulary, its width the residual stream's; a head tied to it multiplies by it again.
  int64_t vocab = 0, width = 0;
  bool tied_head = false;
  for (const auto& p : inv.params())
    if (p.role == Role::kEmbeddings && p.shape.size() == 2 && p.shape[0] > vocab) {
      vocab = p.shape[0];
      width = p.shape[1];
      tied_head =
          std::find(p.alias_roles.begin(), p.alias_roles.end(), Role::kHead) != p.alias_roles.end();
    }
  if (width == 0) return;
  ps.has_tied_head = tied_head;
  // Attention layers: a trunk layer holding a tensor named for attention (a Mamba or MLP-only
  // layer has no S × S product).
  std::vector<char> attention(static_cast<size_t>(std::max(0, inv.num_layers())), 0);
  for (const auto& p : inv.params()) {
    if (p.role != Role::kLayer || p.layer < 0 || p.layer >= inv.num_layers()) continue;
    std::string lower = p.name;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower.find("attn") != std::string::npos || lower.find("attention") != std::string::npos)
      attention[static_cast<size_t>(p.layer)] = 1;
  }
  // QKᵀ and AV: S × d multiply-adds each, a token, over the whole S × S square (what eager
  // attention computes; a causal kernel that skips the masked half does half of it).
  const int64_t per_layer = 2 * ps.seq_len * width;
  for (auto& st : ps.stages) {
    int64_t earliest = std::numeric_limits<int64_t>::max();
    bool embedding_trains = false;
    for (size_t i = 0; i < inv.params().size(); ++i)
      if (!st.point.frozen.test(i)) {
        earliest = std::min(earliest, flow_key(inv, inv.params()[i]));
        embedding_trains = embedding_trains ||
                           (inv.params()[i].role == Role::kEmbeddings &&
                            inv.params()[i].shape.size() == 2 && inv.params()[i].shape[0] == vocab);
      }
    st.extra_forward = st.extra_backward = st.extra_weight = st.prefix_extra_forward = 0;
    for (int32_t l = 0; l < static_cast<int32_t>(attention.size()); ++l) {
      if (!attention[static_cast<size_t>(l)]) continue;
      st.extra_forward += per_layer;
      Param probe;
      probe.role = Role::kLayer;
      probe.layer = l;
      if (flow_key(inv, probe) > earliest) st.extra_backward += 2 * per_layer;
      if (st.cache.cacheable() && l < st.cache.layers) st.prefix_extra_forward += per_layer;
    }
    if (tied_head) {
      const int64_t head = vocab * width;
      st.extra_forward += head;
      Param probe;
      probe.role = Role::kHead;
      if (flow_key(inv, probe) > earliest) st.extra_backward += head;
      if (embedding_trains) st.extra_weight += head;
    }
  }
}

}  // namespace layerfreeze
