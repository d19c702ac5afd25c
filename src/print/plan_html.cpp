#include "print/plan_html.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include "core/format.hpp"
#include "core/json_text.hpp"
#include "print/plan_printer.hpp"
#include "print/plan_svg.hpp"
#include "print/report_assets.hpp"

namespace layerfreeze {

namespace {

using nlohmann::json;

// A parameter name with its numeric components cut out: "model.layers.#.mlp.experts.#.w1.weight"
// and the numbers, in order; a name with a '#' of its own is its own template, without numbers.
std::string name_template(const std::string& name, std::vector<int64_t>& numbers) {
  numbers.clear();
  // '#' marks a number's place: a name that has one of its own stays whole, alone (the report
  // reads a template without numbers as the name itself).
  if (name.find('#') != std::string::npos) return name;
  std::string t;
  t.reserve(name.size());
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('.', i);
    if (j == std::string::npos) j = name.size();
    const size_t len = j - i;
    bool numeric = len > 0 && len < 12;
    int64_t v = 0;
    for (size_t k = i; numeric && k < j; ++k) {
      numeric = name[k] >= '0' && name[k] <= '9';
      v = v * 10 + (name[k] - '0');
    }
    if (numeric) {
      numbers.push_back(v);
      t += '#';
    } else {
      t.append(name, i, len);
    }
    if (j < name.size()) t += '.';
    i = j + 1;
  }
  return t;
}

// Sorted distinct values as [first, last] runs.
json runs_of(const std::set<int64_t>& v) {
  json out = json::array();
  for (auto it = v.begin(); it != v.end();) {
    int64_t a = *it, b = a;
    for (++it; it != v.end() && *it == b + 1; ++it) b = *it;
    out.push_back({a, b});
  }
  return out;
}

std::string runs_text(const json& runs) {
  std::string s;
  for (const auto& r : runs) {
    s += s.empty() ? "" : ",";
    s += r[0] == r[1]
             ? std::to_string(r[0].get<int64_t>())
             : std::to_string(r[0].get<int64_t>()) + "\u2013" + std::to_string(r[1].get<int64_t>());
  }
  return s;
}

struct Group {
  std::string tmpl;
  std::vector<std::vector<int64_t>> tuples;
  int64_t numel = 0;
  size_t row = 0;
  std::string states;
  std::vector<int> rules;
};

// Emits a group as entries whose index sets are products of ranges (a layer x expert block is
// one entry); where the tuples are not a product, split by the first number and try again.
void emit(const Group& g, size_t from, std::vector<std::vector<int64_t>> tuples, json& out) {
  const size_t k = tuples.empty() ? 0 : tuples[0].size();
  std::vector<std::set<int64_t>> per(k);
  for (const auto& t : tuples)
    for (size_t p = 0; p < k; ++p) per[p].insert(t[p]);
  size_t product = 1;
  for (const auto& s : per) product *= s.size();
  if (product == tuples.size() || from >= k) {
    json idx = json::array();
    std::string name = g.tmpl;
    for (size_t p = 0; p < k; ++p) {
      json r = runs_of(per[p]);
      std::string text = per[p].size() == 1 ? runs_text(r) : "{" + runs_text(r) + "}";
      name.replace(name.find('#'), 1, text);
      idx.push_back(std::move(r));
    }
    out.push_back({{"name", name},
                   {"template", g.tmpl},
                   {"indices", idx},
                   {"count", tuples.size()},
                   {"row", g.row},
                   {"states", g.states},
                   {"rules", g.rules}});
    return;
  }
  std::map<int64_t, std::vector<std::vector<int64_t>>> by;
  for (auto& t : tuples) by[t[from]].push_back(std::move(t));
  for (auto& [v, part] : by) emit(g, from + 1, std::move(part), out);
}

json stage_json(const PlanSummary& s, const StageSummary& st) {
  const Inventory& inv = *s.plan->inventory;
  return {{"at", time_text(st.point.at, s.plan->uses_steps)},
          {"causes", st.point.causes},
          {"trainable_numel", st.trainable_numel},
          {"frozen_numel", st.frozen_numel},
          {"trainable_tensors", st.trainable_tensors},
          {"frozen_tensors", st.frozen_tensors},
          {"grad_optimizer_bytes", st.grad_bytes + st.optimizer_bytes},
          {"masked_tensors", st.masked_tensors},
          {"backward_to", backward_short(inv, st)}};
}

}  // namespace

void report_entries(const std::vector<ReportSide>& sides, json& rules, json& entries) {
  const ScheduleGrid& g = *sides.front().grid;
  const Inventory& inv = *sides.front().plan->inventory;
  std::map<const PlanRule*, int> rule_index;
  auto rule_of = [&](const PlanRule* r) -> int {
    if (!r) return -1;
    auto it = rule_index.find(r);
    if (it != rule_index.end()) return it->second;
    rules.push_back({{"where", r->prov.where()},
                     {"text", r->prov.text},
                     {"action", r->action == Action::kFreeze ? "freeze" : "unfreeze"}});
    return rule_index[r] = static_cast<int>(rules.size()) - 1;
  };
  const size_t n = inv.params().size(), cols = g.columns.size(), width = cols * sides.size();
  auto rows = row_of_params(inv, g);
  // Parameters with the same name template, row and history (each side's state and deciding
  // rule at each column) form a group, in first-seen order.
  std::unordered_map<std::string, size_t> group_of;
  std::vector<Group> groups;
  std::vector<int64_t> numbers;
  std::string key, states(width, '-');
  std::vector<int> decided(width, -1);
  const PlanRule* last_rule = nullptr;
  int last_index = -1;
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < sides.size(); ++k) {
      const CompiledPlan& plan = *sides[k].plan;
      for (size_t c = 0; c < cols; ++c) {
        const Selection& sel = sides[k].grid->states[c];
        const PlanRule* r = sides[k].grid->deciders[c][i];
        const size_t at = k * cols + c;
        states[at] = sel.params.test(i)                                   ? 'F'
                     : sel.partial(static_cast<uint32_t>(i), plan.slices) ? 'P'
                                                                          : 'T';
        if (r != last_rule || last_index < 0) {
          last_rule = r;
          last_index = rule_of(r);
        }
        decided[at] = last_index;
      }
    }
    key = name_template(inv.params()[i].name, numbers);
    const size_t tlen = key.size();
    key += '\n';
    key += std::to_string(rows[i]);
    key += '\n';
    key += states;
    for (int r : decided) {
      key += ',';
      key += std::to_string(r);
    }
    auto [it, fresh] = group_of.try_emplace(key, groups.size());
    if (fresh)
      groups.push_back(
          Group{key.substr(0, tlen), {}, 0, rows[i] == SIZE_MAX ? 0 : rows[i], states, decided});
    Group& grp = groups[it->second];
    grp.tuples.push_back(numbers);
    grp.numel += inv.params()[i].numel;
  }
  for (Group& grp : groups) emit(grp, 0, std::move(grp.tuples), entries);
}

std::string script_safe(const json& d) {
  const std::string text = json_text(d);
  // Inside <script>, "</script" ends the element and "<!--" changes how the parser reads the
  // rest: no '<', '>' or '&' is left (they occur only inside JSON strings, where \u escapes
  // mean the same), nor U+2028/U+2029, which end a line in older JavaScript.
  std::string safe;
  safe.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '<')
      safe += "\\u003c";
    else if (c == '>')
      safe += "\\u003e";
    else if (c == '&')
      safe += "\\u0026";
    else if (c == '\xE2' && i + 2 < text.size() && text[i + 1] == '\x80' &&
             (text[i + 2] == '\xA8' || text[i + 2] == '\xA9')) {
      safe += text[i + 2] == '\xA8' ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      safe += c;
    }
  }
  return safe;
}

json grid_labels(const ScheduleGrid& g, bool rows) {
  json out = json::array();
  if (rows)
    for (const auto& r : g.rows) out.push_back(r.label);
  else
    for (const auto& c : g.columns) out.push_back(c.label);
  return out;
}

std::string report_data_json(const PlanSummary& s, const ScheduleGrid& g) {
  const CompiledPlan& plan = *s.plan;
  const Inventory& inv = *plan.inventory;
  json rules = json::array(), entries = json::array();
  report_entries({{plan.name, &plan, &g}}, rules, entries);
  json stages = json::array();
  for (const auto& col : g.columns) stages.push_back(stage_json(s, s.stages[col.stage]));
  json warnings = json::array();
  for (const Diagnostic* w : s.warnings())
    warnings.push_back({{"code", w->code},
                        {"message", w->message},
                        {"where", w->loc.known() ? w->loc.file + ":" + std::to_string(w->loc.line)
                                                 : std::string()},
                        {"notes", w->notes}});
  json d = {
      {"format", "layerfreeze.report/1"},
      {"strategy", {{"name", plan.name}, {"origin", plan.origin}, {"params", params_text(plan)}}},
      {"model",
       {{"source", inv.facts().source}, {"summary", model_summary_line(inv, s.shapes_known)}}},
      {"optimizer", optimizer_name(s.optimizer)},
      {"fingerprint", plan.fingerprint()},
      {"sides", json::array({plan.name})},
      {"columns", grid_labels(g, false)},
      {"rows", grid_labels(g, true)},
      {"stages", stages},
      {"rules", rules},
      {"entries", entries},
      {"warnings", warnings},
      {"omitted_columns", g.omitted_columns}};
  return script_safe(d);
}

std::string plan_html(const PlanSummary& s) {
  const CompiledPlan& plan = *s.plan;
  const Inventory& inv = *plan.inventory;
  ScheduleGrid g = schedule_grid(s);
  std::ostringstream o;
  o << report_head("layerfreeze plan: " + plan.name + " on " + inv.facts().source);
  o << "<h1>layerfreeze plan: " << xml_escape(plan.name) << " <small>(" << xml_escape(plan.origin)
    << ")</small></h1>\n";
  o << "<p class=\"meta\">parameters: " << xml_escape(params_text(plan))
    << "<br>model: " << xml_escape(inv.facts().source) << " \u00b7 "
    << xml_escape(model_summary_line(inv, s.shapes_known))
    << "<br>optimizer: " << optimizer_name(s.optimizer) << " \u00b7 fingerprint "
    << plan.fingerprint() << "</p>\n";
  o << "<div id=\"picture\">\n" << plan_svg(s, g) << "</div>\n";
  o << "<h2>Stages</h2>\n<table "
       "id=\"stages\"><thead><tr><th>at</th><th>cause</th><th>trainable</th>"
       "<th>grads + optimizer</th><th>backward to</th><th>cacheable prefix</th></tr></thead>"
       "<tbody>\n";
  for (const auto& st : s.stages) {
    const int64_t total = st.trainable_numel + st.frozen_numel;
    std::string causes;
    for (const auto& c : st.point.causes) causes += (causes.empty() ? "" : "; ") + c;
    o << "<tr><td>" << xml_escape(time_text(st.point.at, plan.uses_steps)) << "</td><td>"
      << xml_escape(causes.empty() ? "start" : causes) << "</td><td>"
      << (s.shapes_known
              ? with_commas(st.trainable_numel) + " (" + percent(st.trainable_numel, total) + ")"
              : std::to_string(st.trainable_tensors) + " tensors")
      << "</td><td>" << (s.shapes_known ? bytes_text(st.grad_bytes + st.optimizer_bytes) : "\u2014")
      << "</td><td>" << xml_escape(backward_short(inv, st)) << "</td><td>"
      << xml_escape(cache_short(st)) << "</td></tr>\n";
  }
  o << "</tbody></table>\n";
  o << "<h2>Warnings</h2>\n<ul id=\"warnings\">";
  const auto warnings = s.warnings();
  if (warnings.empty()) o << "<li class=\"none\">none</li>";
  for (const Diagnostic* w : warnings)
    o << "<li><code>" << xml_escape(w->code) << "</code> "
      << (w->loc.known()
              ? "<code>" + xml_escape(w->loc.file) + ":" + std::to_string(w->loc.line) + "</code> "
              : std::string())
      << xml_escape(w->message) << "</li>";
  o << "</ul>\n";
  o << report_browser();
  o << "<script type=\"application/json\" id=\"lf-data\">" << report_data_json(s, g)
    << "</script>\n";
  o << report_script() << "</body>\n</html>\n";
  return o.str();
}

}  // namespace layerfreeze
