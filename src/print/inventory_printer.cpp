#include "print/inventory_printer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "core/experts.hpp"
#include "core/format.hpp"
#include "core/layer_discovery.hpp"
#include "print/json_writer.hpp"

namespace layerfreeze {

namespace {

// The sections of `inspect`'s text, in order.
void header_text(std::ostream& o, const Inventory& inv) {
  const bool shapes = inv.shapes_known();
  o << "model: " << inv.facts().source;
  if (!inv.facts().model_type.empty()) o << " (" << inv.facts().model_type << ")";
  o << "\n";
  o << "tensors: " << with_commas(static_cast<int64_t>(inv.params().size())) << " ("
    << inv.num_names() << " names)";
  if (shapes)
    o << " · parameters: " << with_commas(inv.total_numel()) << " ("
      << short_count(inv.total_numel()) << ") · " << bytes_text(inv.total_bytes());
  else
    o << " · shapes unknown";
  if (!inv.facts().config.empty())
    o << "\nconfig: " << inv.facts().config
      << (inv.facts().family.empty() ? " (no model family)" : " · family " + inv.facts().family);
  if (!inv.facts().quantization.empty())
    o << "\nquantized: " << inv.facts().quantization
      << " (frozen base weights cannot train as stored; counts are of the logical parameters)";
  o << "\norder: "
    << (inv.facts().registration_order ? "registration order"
        : inv.multimodal()
            ? "data-flow order (header-only source: towers, connectors, then the trunk)"
            : "natural name order (header-only source)")
    << "\n";
}

void structure_text(std::ostream& o, const Inventory& inv) {
  o << "layers: " << describe_layers(inv) << "\n";
  // Stacks in data-flow order; a tower's layers are numbered inside the tower (what
  // `{stack: vision, layers: …}` counts), the trunk's from 0.
  for (const auto& st : inv.stacks) {
    int32_t first = st.first_layer;
    std::string whose;
    if (st.tower >= 0) {
      const Tower& t = inv.towers[static_cast<size_t>(st.tower)];
      first = st.first_layer - inv.stacks[static_cast<size_t>(t.stacks.front())].first_layer;
      whose = " (" + t.modality + " tower '" + t.root + "')";
    }
    o << "  stack " << st.container << whose << ": layers " << first << "–"
      << first + st.num_layers - 1 << " · key '" << st.key << "' · pattern '" << st.pattern
      << "'\n";
  }
  for (const auto& t : inv.towers)
    o << "  tower '" << t.root << "': " << t.modality << ", " << t.num_layers
      << (t.num_layers == 1 ? " layer" : " layers") << " · found by " << t.found_by << "\n";
  // Connectors, grouped by the pattern that found them (usually one long shipped pattern).
  for (size_t c = 0; c < inv.connectors.size(); ++c) {
    bool seen = false;
    for (size_t k = 0; k < c; ++k)
      seen = seen || inv.connectors[k].pattern == inv.connectors[c].pattern;
    if (seen) continue;
    std::string roots;
    size_t n = 0;
    for (size_t k = c; k < inv.connectors.size(); ++k)
      if (inv.connectors[k].pattern == inv.connectors[c].pattern) {
        roots += (roots.empty() ? "'" : ", '") + inv.connectors[k].root + "'";
        ++n;
      }
    o << "  connector" << (n > 1 ? "s " : " ") << roots << " · pattern '"
      << inv.connectors[c].pattern << "'\n";
  }
}

// "experts: 56 of 56 layers hold a mixture of 8 experts (one module each) · router"
void experts_text(std::ostream& o, const Inventory& inv) {
  if (inv.num_experts <= 0) return;
  size_t moe = 0, routed = 0, fused = 0, shared = 0, routers = 0;
  for (size_t l = 0; l < static_cast<size_t>(inv.num_layers()); ++l)
    if (!describe_layer_experts(inv, l).empty()) ++moe;
  for (const auto& p : inv.params()) {
    routed += p.expert_part == ExpertPart::kRouted;
    fused += p.expert_part == ExpertPart::kFused;
    shared += p.expert_part == ExpertPart::kShared;
    routers += p.expert_part == ExpertPart::kRouter;
  }
  o << "experts: " << moe << " of " << inv.num_layers() << " layers hold a mixture of "
    << inv.num_experts << " experts (";
  auto n = [](size_t k) { return with_commas(static_cast<int64_t>(k)); };
  if (routed) o << n(routed) << " per-expert tensors";
  if (routed && fused) o << ", ";
  if (fused) o << n(fused) << " fused tensors, experts along the first dimension";
  o << ")";
  if (shared) o << " · " << n(shared) << " shared-expert tensors";
  if (routers) o << " · " << n(routers) << " router tensors";
  o << (inv.facts().config_experts > 0 ? " · count from the config" : " · count from the tensors")
    << "\n";
}

void roles_text(std::ostream& o, const Inventory& inv) {
  const bool shapes = inv.shapes_known();
  o << "roles:\n";
  std::vector<Role> roles = {Role::kEmbeddings, Role::kLayer, Role::kHead, Role::kOther};
  if (inv.multimodal()) roles.insert(roles.begin(), {Role::kTower, Role::kConnector});
  bool mtp = false;
  for (const auto& p : inv.params()) mtp = mtp || p.role == Role::kMtp;
  if (mtp) roles.push_back(Role::kMtp);
  for (Role r : roles) {
    size_t n = 0;
    int64_t numel = 0;
    std::string names;
    size_t listed = 0;
    for (const auto& p : inv.params()) {
      bool hit = p.role == r;
      if (!hit) continue;
      ++n;
      numel += p.numel;
      if (r != Role::kLayer && r != Role::kTower && listed < 6) {
        names += (listed ? ", " : "") + p.name;
        ++listed;
      }
    }
    if (r != Role::kLayer && r != Role::kTower && n > listed) names += ", …";
    o << "  " << fmt::format("{:<11}", role_name(r)) << with_commas(static_cast<int64_t>(n))
      << (n == 1 ? " tensor" : " tensors");
    if (shapes && n) o << " · " << short_count(numel);
    if (!names.empty()) o << " · " << names;
    o << "\n";
  }
}

void ties_and_non_parameters_text(std::ostream& o, const Inventory& inv) {
  bool any_tied = false;
  for (const auto& p : inv.params()) {
    if (p.aliases.empty()) continue;
    if (!any_tied) o << "tied:\n";
    any_tied = true;
    o << "  " << p.name << " (" << role_name(p.role) << ")";
    for (size_t k = 0; k < p.aliases.size(); ++k)
      o << " = " << p.aliases[k] << " ("
        << role_name(k < p.alias_roles.size() ? p.alias_roles[k] : p.role) << ")";
    o << "\n";
  }
  if (!inv.facts().non_params.empty()) {
    // Grouped by kind, in order of first appearance: count, then the first names.
    std::vector<std::pair<std::string, std::vector<std::string>>> kinds;
    for (const auto& np : inv.facts().non_params) {
      auto it = std::find_if(kinds.begin(), kinds.end(),
                             [&](const auto& k) { return k.first == np.kind; });
      if (it == kinds.end()) it = kinds.insert(kinds.end(), {np.kind, {}});
      it->second.push_back(np.name);
    }
    o << "not parameters: " << with_commas(static_cast<int64_t>(inv.facts().non_params.size()))
      << " stored tensors (not counted, not selectable)\n";
    for (const auto& [kind, names] : kinds) {
      o << "  " << kind << ": " << with_commas(static_cast<int64_t>(names.size())) << " · ";
      for (size_t k = 0; k < names.size() && k < 3; ++k) o << (k ? ", " : "") << names[k];
      if (names.size() > 3) o << ", …";
      o << "\n";
    }
  }
}

void per_layer_text(std::ostream& o, const Inventory& inv) {
  const bool shapes = inv.shapes_known();
  if (!inv.layers.empty()) {
    o << "per layer:\n";
    for (const auto& st : inv.stacks) {
      for (int32_t l = st.first_layer; l < st.first_layer + st.num_layers; ++l) {
        const Layer& L = inv.layers[static_cast<size_t>(l)];
        std::string idx;
        if (st.tower >= 0) {
          const Tower& t = inv.towers[static_cast<size_t>(st.tower)];
          int32_t local = l - inv.stacks[static_cast<size_t>(t.stacks.front())].first_layer;
          idx = fmt::format("{:>10}  ", t.modality + " " + std::to_string(local));
        } else {
          idx = fmt::format("{:>{}}  ", l, inv.multimodal() ? 10 : 4);
        }
        o << idx << L.name << " · " << L.params.size() << " tensors";
        if (shapes) o << " · " << with_commas(L.numel);
        const std::string experts = describe_layer_experts(inv, static_cast<size_t>(l));
        if (!experts.empty()) o << " · " << experts;
        o << "\n";
      }
    }
  }
}

void parameters_text(std::ostream& o, const Inventory& inv) {
  o << "parameters:\n";
  for (const auto& p : inv.params()) {
    o << "  " << p.name << "  ";
    if (p.shape_known) {
      o << "[";
      for (size_t k = 0; k < p.shape.size(); ++k) o << (k ? ", " : "") << p.shape[k];
      o << "] ";
    }
    o << (p.dtype.empty() ? "" : p.dtype + " ") << role_name(p.role);
    if (p.role == Role::kLayer) o << " " << p.layer;
    if (p.role == Role::kTower) o << " '" << inv.towers[static_cast<size_t>(p.part)].root << "'";
    if (!p.module_type.empty()) o << " " << p.module_type;
    o << "\n";
  }
}

}  // namespace

std::string inventory_text(const Inventory& inv, bool all_params) {
  std::ostringstream o;
  header_text(o, inv);
  structure_text(o, inv);
  experts_text(o, inv);
  roles_text(o, inv);
  ties_and_non_parameters_text(o, inv);
  per_layer_text(o, inv);
  if (all_params) parameters_text(o, inv);
  for (const auto& n : inv.facts().source_notes) o << "note: " << n << "\n";
  for (const auto& n : inv.notes) o << "note: " << n << "\n";
  return o.str();
}

void structure_json(JsonWriter& j, const Inventory& inv) {
  j.key("stacks").begin_array();
  for (const auto& st : inv.stacks) {
    j.begin_object()
        .field("container", st.container)
        .field("key", st.key)
        .field("pattern", st.pattern)
        .field("first_layer", st.first_layer)
        .field("num_layers", st.num_layers)
        .key("tower");
    st.tower >= 0 ? j.value(st.tower) : j.null();
    j.end_object();
  }
  j.end_array();
  j.key("towers").begin_array();
  for (const auto& t : inv.towers)
    j.begin_object()
        .field("root", t.root)
        .field("modality", t.modality)
        .field("num_layers", t.num_layers)
        .field("found_by", t.found_by)
        .end_object();
  j.end_array();
  j.key("connectors").begin_array();
  for (const auto& c : inv.connectors)
    j.begin_object().field("root", c.root).field("pattern", c.pattern).end_object();
  j.end_array();
}

std::string inventory_json(const Inventory& inv) {
  JsonWriter j;
  j.begin_object();
  j.field("format", "layerfreeze.manifest/1");
  j.key("model").begin_object();
  j.field("source", inv.facts().source)
      .field("type", inv.facts().model_type)
      .field("registration_order", inv.facts().registration_order);
  j.field("num_layers", inv.num_layers()).key("numel");
  inv.shapes_known() ? j.value(inv.total_numel()) : j.null();
  j.field("parameters", inv.params().size());
  if (!inv.facts().config.empty()) j.field("config", inv.facts().config);
  if (!inv.facts().family.empty()) j.field("family", inv.facts().family);
  if (!inv.facts().quantization.empty()) j.field("quantization", inv.facts().quantization);
  if (!inv.facts().config_modalities.empty())
    j.key("config_modalities").strings(inv.facts().config_modalities);
  if (inv.num_experts > 0) j.field("num_experts", inv.num_experts);
  if (inv.facts().config_mtp_layers > 0)
    j.field("config_mtp_layers", inv.facts().config_mtp_layers);
  if (!inv.facts().config_dropout.empty()) {
    j.key("config_dropout").begin_object();
    for (const auto& [k, v] : inv.facts().config_dropout) j.field(k, v);
    j.end_object();
  }
  if (!inv.facts().family_structure.empty()) {
    j.key("family_structure").begin_array();
    for (const auto& h : inv.facts().family_structure) {
      j.begin_object().field("kind", h.kind).field("pattern", h.pattern);
      if (!h.modality.empty()) j.field("modality", h.modality);
      j.end_object();
    }
    j.end_array();
  }
  if (!inv.facts().config_layers.empty()) {
    j.key("config_layers").begin_object();
    for (const auto& [k, v] : inv.facts().config_layers) j.field(k, v);
    j.end_object();
  }
  j.end_object();
  structure_json(j, inv);
  j.key("params").begin_array();
  for (const auto& p : inv.params()) {
    j.begin_object().field("name", p.name).key("shape");
    p.shape_known ? j.ints(p.shape) : j.null();
    j.key("dtype");
    p.dtype.empty() ? j.null() : j.value(p.dtype);
    j.key("module_type");
    p.module_type.empty() ? j.null() : j.value(p.module_type);
    j.key("aliases").strings(p.aliases);
    j.field("role", role_name(p.role)).key("layer");
    p.layer >= 0 ? j.value(p.layer) : j.null();
    if (p.part >= 0) j.field(p.role == Role::kTower ? "tower" : "connector", p.part);
    if (p.expert_part != ExpertPart::kNone) j.field("expert_part", expert_part_name(p.expert_part));
    if (p.expert >= 0) j.field("expert", p.expert);
    j.end_object();
  }
  j.end_array();
  j.key("non_parameters").begin_array();
  for (const auto& np : inv.facts().non_params) {
    j.begin_object().field("name", np.name).field("kind", np.kind).key("shape");
    np.shape_known ? j.ints(np.shape) : j.null();
    j.end_object();
  }
  j.end_array();
  std::vector<std::string> notes = inv.facts().source_notes;
  notes.insert(notes.end(), inv.notes.begin(), inv.notes.end());
  j.key("notes").strings(notes);
  j.end_object();
  return j.take();
}

}  // namespace layerfreeze
