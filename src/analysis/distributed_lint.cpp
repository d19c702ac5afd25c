#include "analysis/distributed_lint.hpp"

#include <algorithm>

#include "analysis/plan_summary.hpp"

namespace layerfreeze {

namespace {

struct Mixed {
  std::string unit;  // "transformer.h.3" or "(outside the layers)"
  size_t frozen = 0, total = 0;
};

// Layers (and the rest, FSDP's root unit) whose parameters are partly frozen under `f`.
std::vector<Mixed> mixed_units(const Inventory& inv, const Bitset& f) {
  std::vector<Mixed> out;
  for (const auto& layer : inv.layers) {
    size_t frozen = 0;
    for (uint32_t i : layer.params) frozen += f.test(i);
    if (frozen > 0 && frozen < layer.params.size())
      out.push_back({layer.name, frozen, layer.params.size()});
  }
  size_t frozen = 0, total = 0;
  for (size_t i = 0; i < inv.params().size(); ++i) {
    if (inv.params()[i].layer >= 0) continue;
    ++total;
    frozen += f.test(i);
  }
  if (frozen > 0 && frozen < total)
    out.push_back({"the root unit (the parameters outside the layers)", frozen, total});
  return out;
}

// The first layer with a trainable parameter when everything feeding it is frozen, or -1.
int32_t first_trainable_layer_with_frozen_input(const Inventory& inv, const Bitset& f) {
  int32_t first = -1;
  for (int32_t l = 0; l < inv.num_layers() && first < 0; ++l) {  // the trunk's layers
    const auto& ps = inv.layers[static_cast<size_t>(l)].params;
    if (std::any_of(ps.begin(), ps.end(), [&](uint32_t i) { return !f.test(i); })) first = l;
  }
  if (first < 0) return -1;
  bool has_prefix = first > 0;
  for (size_t i = 0; i < inv.params().size(); ++i) {
    const Param& p = inv.params()[i];
    // Towers and connectors feed the trunk's input: they are before every trunk layer.
    bool before = p.role == Role::kEmbeddings || p.role == Role::kTower ||
                  p.role == Role::kConnector || (p.role == Role::kLayer && p.layer < first) ||
                  (p.role == Role::kOther && p.anchor_layer >= 0 && p.anchor_layer < first);
    if (!before) continue;
    has_prefix = true;
    if (!f.test(i)) return -1;
  }
  return has_prefix ? first : -1;
}

std::string unit_list(const std::vector<Mixed>& m) {
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(m.size(), 3); ++i)
    s += (i ? "; " : "") + m[i].unit + ": " + std::to_string(m[i].frozen) + " of " +
         std::to_string(m[i].total) + " tensors frozen";
  if (m.size() > 3) s += "; and " + std::to_string(m.size() - 3) + " more";
  return s;
}

std::string times_list(const std::vector<Time>& ts, bool steps) {
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(ts.size(), 4); ++i)
    s += (i ? ", " : "") + time_text(ts[i], steps);
  if (ts.size() > 4) s += " and " + std::to_string(ts.size() - 4) + " more";
  return s;
}

Diagnostic warning(std::string code, std::string message, std::vector<std::string> notes) {
  Diagnostic d;
  d.severity = Severity::kWarning;
  d.code = std::move(code);
  d.message = std::move(message);
  d.notes = std::move(notes);
  return d;
}

}  // namespace

void distributed_lint(const CompiledPlan& plan, const Time& horizon, std::vector<Diagnostic>& out) {
  const Inventory& inv = *plan.inventory;
  const bool steps = plan.uses_steps;
  auto points = plan.timeline(horizon);

  // FSDP: partly frozen units, at the first time they appear; the other times listed.
  std::vector<Time> partial_times;
  std::vector<Mixed> first_mixed;
  for (const auto& pt : points) {
    auto m = mixed_units(inv, pt.frozen);
    if (m.empty()) continue;
    if (partial_times.empty()) first_mixed = m;
    partial_times.push_back(pt.at);
  }
  if (!partial_times.empty()) {
    std::vector<std::string> notes = {
        "FSDP flattens each wrapped unit into one parameter and cannot mix requires_grad in it: "
        "construct it with "
        "use_orig_params=True, or wrap the frozen and the trainable parameters in separate units"};
    if (partial_times.size() > 1)
      notes.push_back("partly frozen units also at " +
                      times_list({partial_times.begin() + 1, partial_times.end()}, steps));
    out.push_back(warning("fsdp-partial-unit",
                          "at " + time_text(partial_times[0], steps) + ", " +
                              std::to_string(first_mixed.size()) +
                              (first_mixed.size() == 1 ? " unit is" : " units are") +
                              " partly frozen: " + unit_list(first_mixed),
                          notes));
  }

  // DDP: the trainable set changes after the start.
  if (points.size() > 1) {
    size_t unfrozen = 0, frozen = 0;
    std::vector<Time> changes;
    for (size_t k = 1; k < points.size(); ++k) {
      changes.push_back(points[k].at);
      unfrozen += points[k].newly_unfrozen.size();
      frozen += points[k].newly_frozen.size();
    }
    std::vector<std::string> notes;
    if (unfrozen > 0)
      notes.push_back(
          "parameters frozen when DDP is constructed are never registered: the ones unfrozen later "
          "would train on each rank's own gradients and silently diverge; re-wrap the model at "
          "each change");
    if (frozen > 0)
      notes.push_back(
          "parameters frozen after construction stop producing gradients: DDP then fails its "
          "reduction "
          "unless constructed with find_unused_parameters=True (and static_graph=False), and still "
          "communicates their buckets");
    notes.push_back(
        "layerfreeze::distributed::GradientSync rebuilds its buckets at each change and sends only "
        "trainable gradients");
    out.push_back(warning("ddp-trainable-set-changes",
                          "the trainable set changes " + std::to_string(changes.size()) +
                              (changes.size() == 1 ? " time" : " times") + " during the run, at " +
                              times_list(changes, steps),
                          notes));
  }

  // Activation checkpointing: the first trainable layer's input does not require grad.
  for (const auto& pt : points) {
    int32_t l = first_trainable_layer_with_frozen_input(inv, pt.frozen);
    if (l < 0) continue;
    out.push_back(
        warning("checkpoint-frozen-input",
                "at " + time_text(pt.at, steps) + ", everything before " +
                    inv.layers[static_cast<size_t>(l)].name +
                    " (the first trainable layer) is frozen, so its input does not require grad",
                {"with reentrant activation checkpointing (torch.utils.checkpoint "
                 "use_reentrant=True, the default before "
                 "PyTorch 2.4) a checkpointed segment whose inputs need no grad computes no "
                 "gradient for its parameters: "
                 "use use_reentrant=False, or make the input require grad (Hugging Face: "
                 "enable_input_require_grads())"}));
    break;
  }
}

}  // namespace layerfreeze
