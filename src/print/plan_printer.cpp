#include "print/plan_printer.hpp"

#include <nlohmann/json.hpp>

#include <sstream>

#include "core/layer_discovery.hpp"
#include "print/format.hpp"

namespace layerfreeze {

namespace {

std::string model_line(const Inventory& inv) {
  std::ostringstream o;
  o << (inv.model_type.empty() ? "model" : inv.model_type) << " · " << describe_layers(inv) << " · "
    << with_commas(static_cast<int64_t>(inv.params.size())) << " tensors";
  if (inv.shapes_known())
    o << " · " << with_commas(inv.total_numel()) << " parameters (" << short_count(inv.total_numel()) << ")";
  else
    o << " · shapes unknown (a sharded index without its shards): counts are of tensors";
  return o.str();
}

std::string count_text(const Inventory& inv, int64_t numel, size_t tensors) {
  if (!inv.shapes_known()) return with_commas(static_cast<int64_t>(tensors)) + " tensors";
  return numel < 1000 ? with_commas(numel) : with_commas(numel) + " (" + short_count(numel) + ")";
}

std::string backward_text(const Inventory& inv, const StageSummary& s) {
  if (s.nothing_trains) return "nothing trains: no backward pass is needed";
  if (s.input_side_trainable) return "runs to the input (the embeddings train)";
  if (!s.first_trainable_layer) return "only the head trains: backward stops above the last layer";
  int32_t l = *s.first_trainable_layer;
  if (l == 0) return "runs through every layer (layer 0 trains)";
  return "stops at layer " + std::to_string(l) + " (" + inv.layers[l].name + "); " +
         (l == 1 ? std::string("layer 0 needs") : "layers 0–" + std::to_string(l - 1) + " need") + " no gradients";
}

std::string optimizer_desc(OptimizerKind k) {
  int n = optimizer_states(k);
  return std::string(optimizer_name(k)) + " (" + std::to_string(n) + (n == 1 ? " state" : " states") + " per parameter)";
}

}  // namespace

std::string params_text(const Plan& plan) {
  std::string s;
  for (const auto& [k, v] : plan.params) s += (s.empty() ? "" : ", ") + k + "=" + v.to_string();
  return s.empty() ? "(none)" : s;
}

std::string plan_text(const PlanSummary& sum) {
  const Plan& plan = *sum.plan;
  const Inventory& inv = *plan.inventory;
  std::ostringstream o;
  o << "plan: " << plan.name << " (" << plan.origin << ") on " << inv.source << "\n";
  o << "model: " << model_line(inv) << "\n";
  o << "parameters: " << params_text(plan) << "\n";
  o << "optimizer: " << optimizer_desc(sum.optimizer) << " · fingerprint " << plan.fingerprint() << "\n";
  for (const auto& n : inv.notes) o << "note: " << n << "\n";
  for (const auto& st : sum.stages) {
    o << "\n" << time_text(st.point.at, plan.uses_epochs, plan.uses_steps);
    if (&st == &sum.stages.front()) o << " (start)";
    for (size_t i = 0; i < st.point.causes.size(); ++i) o << (i ? ", " : " · ") << st.point.causes[i];
    o << "\n";
    if (&st != &sum.stages.front())
      o << "  changes: " << st.point.newly_frozen.size() << " frozen, " << st.point.newly_unfrozen.size() << " unfrozen\n";
    std::string table = layer_status_table(inv, st.point.frozen, false);
    // Indent the seed-style table under its stage.
    std::istringstream lines(table);
    for (std::string line; std::getline(lines, line);)
      if (line.find("====") == std::string::npos && line.find("LAYER STATUS") == std::string::npos &&
          line.find("----") == std::string::npos)
        o << "  " << line << "\n";
    int64_t total = st.trainable_numel + st.frozen_numel;
    o << "  trainable " << count_text(inv, st.trainable_numel, st.trainable_tensors);
    if (inv.shapes_known()) o << " = " << percent(st.trainable_numel, total);
    o << " · frozen " << count_text(inv, st.frozen_numel, st.frozen_tensors);
    if (inv.shapes_known()) o << " = " << percent(st.frozen_numel, total);
    o << "\n";
    if (inv.shapes_known()) {
      o << "  memory (" << optimizer_name(sum.optimizer) << "): gradients " << bytes_text(st.grad_bytes)
        << " + optimizer state " << bytes_text(st.optimizer_bytes) << " = " << bytes_text(st.grad_bytes + st.optimizer_bytes)
        << "; freezing saves " << bytes_text(st.saved_grad_bytes + st.saved_optimizer_bytes) << "\n";
    }
    o << "  backward: " << backward_text(inv, st) << "\n";
    if (!st.decided_by.empty()) {
      o << "  decided by:\n";
      size_t w = 0;
      for (const auto& t : st.decided_by) w = std::max(w, t.rule->prov.where().size());
      for (const auto& t : st.decided_by)
        o << "    " << t.rule->prov.where() << std::string(w - t.rule->prov.where().size() + 2, ' ')
          << t.rule->prov.text << " — " << t.tensors << (t.tensors == 1 ? " tensor" : " tensors") << "\n";
    }
  }
  if (sum.truncated) o << "\n(the periodic schedule is cut after 10,000 periods)\n";
  if (!plan.warnings.empty()) {
    o << "\nwarnings:\n";
    for (const auto& w : plan.warnings) {
      std::string t = format_diagnostic(w);
      std::istringstream lines(t);
      for (std::string line; std::getline(lines, line);) o << "  " << line << "\n";
    }
  }
  return o.str();
}

std::string plan_json(const PlanSummary& sum) {
  using nlohmann::ordered_json;
  const Plan& plan = *sum.plan;
  const Inventory& inv = *plan.inventory;
  const bool shapes = inv.shapes_known();
  ordered_json j;
  j["format"] = "layerfreeze.plan/1";
  ordered_json params_obj = ordered_json::object();
  for (const auto& [k, v] : plan.params) {
    switch (v.kind) {
      case Value::Kind::kNull: params_obj[k] = nullptr; break;
      case Value::Kind::kBool: params_obj[k] = v.b; break;
      case Value::Kind::kInt: params_obj[k] = v.i; break;
      case Value::Kind::kFloat: params_obj[k] = v.f; break;
      case Value::Kind::kString: params_obj[k] = v.s; break;
      case Value::Kind::kList: {
        ordered_json a = ordered_json::array();
        for (const auto& x : v.list) a.push_back(x.kind == Value::Kind::kString ? x.s : x.to_string());
        params_obj[k] = a;
      }
    }
  }
  j["strategy"] = {{"name", plan.name}, {"origin", plan.origin}, {"params", params_obj}};
  ordered_json stacks = ordered_json::array();
  for (const auto& st : inv.stacks)
    stacks.push_back({{"container", st.container}, {"first_layer", st.first_layer}, {"num_layers", st.num_layers}, {"pattern", st.pattern}});
  ordered_json layers = ordered_json::array();
  for (const auto& l : inv.layers)
    layers.push_back({{"name", l.name}, {"numel", shapes ? ordered_json(l.numel) : ordered_json(nullptr)}, {"tensors", l.params.size()}});
  j["model"] = {{"source", inv.source},
                {"type", inv.model_type},
                {"num_layers", inv.num_layers()},
                {"numel", shapes ? ordered_json(inv.total_numel()) : ordered_json(nullptr)},
                {"parameters", inv.params.size()},
                {"shapes_known", shapes},
                {"stacks", stacks},
                {"layers", layers}};
  const auto& opt = plan.options;
  j["options"] = {{"batchnorm", opt.batchnorm == Options::BatchNorm::kUnchanged ? "unchanged" : "eval_when_frozen"},
                  {"optimizer_state", opt.optimizer_state == Options::OptimizerState::kDrop ? "drop" : "keep"},
                  {"unfreeze_lr_scale", opt.unfreeze_lr_scale},
                  {"lr_decay", opt.lr_decay},
                  {"steps_per_epoch", opt.steps_per_epoch ? ordered_json(*opt.steps_per_epoch) : ordered_json(nullptr)}};
  j["optimizer"] = optimizer_name(sum.optimizer);
  ordered_json ps = ordered_json::array();
  for (size_t i = 0; i < inv.params.size(); ++i) {
    const Param& p = inv.params[i];
    ordered_json e;
    e["name"] = p.name;
    e["numel"] = p.shape_known ? ordered_json(p.numel) : ordered_json(nullptr);
    e["role"] = role_name(p.role);
    e["layer"] = p.layer >= 0 ? ordered_json(p.layer) : ordered_json(nullptr);
    e["aliases"] = p.aliases;
    e["shape"] = p.shape_known ? ordered_json(p.shape) : ordered_json(nullptr);
    e["dtype"] = p.dtype.empty() ? ordered_json(nullptr) : ordered_json(p.dtype);
    if (opt.lr_decay != 1.0) e["lr_scale"] = plan.lr_scale(i);
    ps.push_back(std::move(e));
  }
  j["params"] = std::move(ps);
  ordered_json stages = ordered_json::array();
  auto names = [&](const std::vector<uint32_t>& idx) {
    ordered_json a = ordered_json::array();
    for (uint32_t i : idx) a.push_back(inv.params[i].name);
    return a;
  };
  for (const auto& st : sum.stages) {
    ordered_json s;
    auto t = [](int64_t v) { return v >= 0 ? ordered_json(v) : ordered_json(nullptr); };
    s["at"] = {{"epoch", t(st.point.at.epoch)}, {"step", t(st.point.at.step)}};
    s["causes"] = st.point.causes;
    std::vector<uint32_t> frozen;
    st.point.frozen.for_each([&](size_t i) { frozen.push_back(static_cast<uint32_t>(i)); });
    s["frozen"] = names(frozen);
    s["changed"] = {{"frozen", names(st.point.newly_frozen)}, {"unfrozen", names(st.point.newly_unfrozen)}};
    s["trainable_numel"] = shapes ? ordered_json(st.trainable_numel) : ordered_json(nullptr);
    s["frozen_numel"] = shapes ? ordered_json(st.frozen_numel) : ordered_json(nullptr);
    s["trainable_tensors"] = st.trainable_tensors;
    s["frozen_tensors"] = st.frozen_tensors;
    if (shapes)
      s["memory"] = {{"optimizer", optimizer_name(sum.optimizer)},
                     {"gradient_bytes", st.grad_bytes},
                     {"optimizer_bytes", st.optimizer_bytes},
                     {"saved_gradient_bytes", st.saved_grad_bytes},
                     {"saved_optimizer_bytes", st.saved_optimizer_bytes}};
    else
      s["memory"] = nullptr;
    s["first_trainable_layer"] = st.first_trainable_layer ? ordered_json(*st.first_trainable_layer) : ordered_json(nullptr);
    s["backward_to_input"] = st.input_side_trainable;
    ordered_json by = ordered_json::array();
    for (const auto& d : st.decided_by)
      by.push_back({{"rule", d.rule->prov.text}, {"where", d.rule->prov.where()}, {"action", action_name(d.rule->action)}, {"tensors", d.tensors}});
    s["decided_by"] = by;
    stages.push_back(std::move(s));
  }
  j["stages"] = std::move(stages);
  ordered_json ws = ordered_json::array();
  for (const auto& w : plan.warnings) {
    std::string t = format_diagnostic(w);
    if (!t.empty() && t.back() == '\n') t.pop_back();
    ws.push_back(t);
  }
  j["warnings"] = ws;
  j["notes"] = inv.notes;
  j["truncated"] = sum.truncated;
  j["fingerprint"] = plan.fingerprint();
  return j.dump(2) + "\n";
}

std::string plan_markdown(const PlanSummary& sum) {
  const Plan& plan = *sum.plan;
  const Inventory& inv = *plan.inventory;
  std::ostringstream o;
  o << "### layerfreeze plan: `" << plan.name << "` on `" << inv.source << "`\n\n";
  o << "| | |\n|---|---|\n";
  o << "| strategy | `" << plan.origin << "` |\n";
  o << "| parameters | " << params_text(plan) << " |\n";
  o << "| model | " << model_line(inv) << " |\n";
  o << "| optimizer | " << optimizer_desc(sum.optimizer) << " |\n";
  o << "| fingerprint | `" << plan.fingerprint() << "` |\n\n";
  o << "| at | layers | embeddings | head | trainable | frozen | grads + optimizer | backward from | change |\n";
  o << "|---|---|---|---|---:|---:|---:|---|---|\n";
  for (const auto& st : sum.stages) {
    std::string layers;
    for (const auto& r : st.runs) {
      std::string span = r.first == r.last ? std::to_string(r.first) : std::to_string(r.first) + "–" + std::to_string(r.last);
      layers += (layers.empty() ? "" : ", ") + span + " " + group_state_name(r.state);
    }
    int64_t total = st.trainable_numel + st.frozen_numel;
    std::string backward = st.nothing_trains ? "—" : st.input_side_trainable ? "input"
                         : st.first_trainable_layer ? "layer " + std::to_string(*st.first_trainable_layer) : "head";
    std::string change = &st == &sum.stages.front() ? "start"
                       : "+" + std::to_string(st.point.newly_frozen.size()) + " frozen, +" +
                             std::to_string(st.point.newly_unfrozen.size()) + " trainable";
    o << "| " << time_text(st.point.at, plan.uses_epochs, plan.uses_steps) << " | " << (layers.empty() ? "—" : layers)
      << " | " << group_state_name(st.groups[0].state) << " | " << group_state_name(st.groups[1].state) << " | ";
    if (inv.shapes_known())
      o << short_count(st.trainable_numel) << " (" << percent(st.trainable_numel, total) << ") | " << short_count(st.frozen_numel)
        << " | " << bytes_text(st.grad_bytes + st.optimizer_bytes);
    else
      o << st.trainable_tensors << " tensors | " << st.frozen_tensors << " tensors | —";
    o << " | " << backward << " | " << change << " |\n";
  }
  if (!plan.warnings.empty()) {
    o << "\n**Warnings**\n\n";
    for (const auto& w : plan.warnings) {
      o << "- ";
      if (w.loc.known()) o << "`" << w.loc.file << ":" << w.loc.line << "` ";
      o << w.message << " (" << w.code << ")";
      for (const auto& n : w.notes) o << "; " << n;
      o << "\n";
    }
  }
  return o.str();
}

}  // namespace layerfreeze
