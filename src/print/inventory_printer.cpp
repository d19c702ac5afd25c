#include "print/inventory_printer.hpp"

#include <nlohmann/json.hpp>

#include <sstream>

#include "core/layer_discovery.hpp"
#include "print/format.hpp"

namespace layerfreeze {

std::string inventory_text(const Inventory& inv, bool all_params) {
  std::ostringstream o;
  const bool shapes = inv.shapes_known();
  o << "model: " << inv.source;
  if (!inv.model_type.empty()) o << " (" << inv.model_type << ")";
  o << "\n";
  o << "tensors: " << with_commas(static_cast<int64_t>(inv.params.size())) << " (" << inv.num_names() << " names)";
  if (shapes) o << " · parameters: " << with_commas(inv.total_numel()) << " (" << short_count(inv.total_numel()) << ") · "
                << bytes_text(inv.total_bytes());
  else o << " · shapes unknown";
  o << "\norder: " << (inv.registration_order ? "registration order" : "natural name order (header-only source)") << "\n";
  o << "layers: " << describe_layers(inv) << "\n";
  for (const auto& st : inv.stacks)
    o << "  stack " << st.container << ": layers " << st.first_layer << "–" << st.first_layer + st.num_layers - 1
      << " · key '" << st.key << "' · pattern '" << st.pattern << "'\n";
  o << "roles:\n";
  for (Role r : {Role::kEmbeddings, Role::kLayer, Role::kHead, Role::kOther}) {
    size_t n = 0;
    int64_t numel = 0;
    std::string names;
    size_t listed = 0;
    for (const auto& p : inv.params) {
      bool hit = p.role == r;
      if (!hit) continue;
      ++n;
      numel += p.numel;
      if (r != Role::kLayer && listed < 6) {
        names += (listed ? ", " : "") + p.name;
        ++listed;
      }
    }
    if (r != Role::kLayer && n > listed) names += ", …";
    char label[16];
    std::snprintf(label, sizeof label, "%-11s", role_name(r));
    o << "  " << label << with_commas(static_cast<int64_t>(n)) << (n == 1 ? " tensor" : " tensors");
    if (shapes && n) o << " · " << short_count(numel);
    if (!names.empty()) o << " · " << names;
    o << "\n";
  }
  bool any_tied = false;
  for (const auto& p : inv.params) {
    if (p.aliases.empty()) continue;
    if (!any_tied) o << "tied:\n";
    any_tied = true;
    o << "  " << p.name << " (" << role_name(p.role) << ")";
    for (size_t k = 0; k < p.aliases.size(); ++k)
      o << " = " << p.aliases[k] << " (" << role_name(k < p.alias_roles.size() ? p.alias_roles[k] : p.role) << ")";
    o << "\n";
  }
  if (!inv.layers.empty()) {
    o << "per layer:\n";
    for (size_t l = 0; l < inv.layers.size(); ++l) {
      const Layer& L = inv.layers[l];
      char idx[32];
      std::snprintf(idx, sizeof idx, "%4zu  ", l);
      o << idx << L.name << " · " << L.params.size() << " tensors";
      if (shapes) o << " · " << with_commas(L.numel);
      o << "\n";
    }
  }
  if (all_params) {
    o << "parameters:\n";
    for (const auto& p : inv.params) {
      o << "  " << p.name << "  ";
      if (p.shape_known) {
        o << "[";
        for (size_t k = 0; k < p.shape.size(); ++k) o << (k ? ", " : "") << p.shape[k];
        o << "] ";
      }
      o << (p.dtype.empty() ? "" : p.dtype + " ") << role_name(p.role);
      if (p.layer >= 0) o << " " << p.layer;
      if (!p.module_type.empty()) o << " " << p.module_type;
      o << "\n";
    }
  }
  for (const auto& n : inv.notes) o << "note: " << n << "\n";
  return o.str();
}

std::string inventory_json(const Inventory& inv) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["format"] = "layerfreeze.manifest/1";
  j["model"] = {{"source", inv.source},
                {"type", inv.model_type},
                {"registration_order", inv.registration_order},
                {"num_layers", inv.num_layers()},
                {"numel", inv.shapes_known() ? ordered_json(inv.total_numel()) : ordered_json(nullptr)},
                {"parameters", inv.params.size()}};
  ordered_json stacks = ordered_json::array();
  for (const auto& st : inv.stacks)
    stacks.push_back({{"container", st.container}, {"key", st.key}, {"pattern", st.pattern},
                      {"first_layer", st.first_layer}, {"num_layers", st.num_layers}});
  j["stacks"] = stacks;
  ordered_json ps = ordered_json::array();
  for (const auto& p : inv.params) {
    ordered_json e;
    e["name"] = p.name;
    e["shape"] = p.shape_known ? ordered_json(p.shape) : ordered_json(nullptr);
    e["dtype"] = p.dtype.empty() ? ordered_json(nullptr) : ordered_json(p.dtype);
    e["module_type"] = p.module_type.empty() ? ordered_json(nullptr) : ordered_json(p.module_type);
    e["aliases"] = p.aliases;
    e["role"] = role_name(p.role);
    e["layer"] = p.layer >= 0 ? ordered_json(p.layer) : ordered_json(nullptr);
    ps.push_back(std::move(e));
  }
  j["params"] = std::move(ps);
  j["notes"] = inv.notes;
  return j.dump(2) + "\n";
}

}  // namespace layerfreeze
