#include "print/diff_picture.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "analysis/plan_summary.hpp"
#include "print/plan_html.hpp"
#include "print/plan_printer.hpp"
#include "print/plan_svg.hpp"
#include "print/report_assets.hpp"

namespace layerfreeze {

namespace {

constexpr size_t kMaxColumns = 24;

// Every time either plan changes up to the horizon, in order, at most kMaxColumns.
std::vector<Time> union_times(const CompiledPlan& a, const CompiledPlan& b, const Time& horizon,
                              size_t* omitted) {
  const bool steps = a.uses_steps || b.uses_steps;
  std::vector<std::pair<std::pair<int64_t, int64_t>, Time>> all;
  for (const CompiledPlan* p : {&a, &b})
    for (const auto& pt : p->timeline(horizon, kMaxPrintedPoints))
      all.push_back(
          {{std::max<int64_t>(pt.at.epoch, 0), steps ? std::max<int64_t>(pt.at.step, 0) : 0},
           pt.at});
  std::stable_sort(all.begin(), all.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<Time> out;
  std::set<std::pair<int64_t, int64_t>> seen;
  size_t distinct = 0;
  for (const auto& [key, t] : all) {
    if (!seen.insert(key).second) continue;
    ++distinct;
    if (out.size() < kMaxColumns) out.push_back(t);
  }
  *omitted = distinct - out.size();
  return out;
}

}  // namespace

DiffGrids diff_grids(const CompiledPlan& a, const CompiledPlan& b, const Time& horizon) {
  DiffGrids d;
  std::vector<Time> times = union_times(a, b, horizon, &d.omitted);
  std::vector<std::string> labels;
  const bool steps = a.uses_steps || b.uses_steps;
  for (const auto& t : times) labels.push_back(time_text(t, steps));
  d.a = schedule_grid(a, times, labels, false);
  d.b = schedule_grid(b, times, labels, false);
  group_layer_rows({&d.a, &d.b});
  return d;
}

std::string diff_svg(const DiffGrids& d, const CompiledPlan& a, const CompiledPlan& b,
                     const std::string& name_a, const std::string& name_b, size_t* differing,
                     const std::vector<std::string>& also) {
  const Inventory& inv = *a.inventory;
  std::ostringstream body;
  int y = 16;
  std::vector<std::string> head = {
      "layerfreeze diff on " + inv.facts().source,
      "A: " + name_a + " \u00b7 " + a.name + " \u00b7 fingerprint " + a.fingerprint(),
      "B: " + name_b + " \u00b7 " + b.name + " \u00b7 fingerprint " + b.fingerprint()};
  int width = 0;
  for (size_t i = 0; i < head.size(); ++i) {
    y += i == 0 ? 14 : 18;
    body << fmt::format("<text x=\"16\" y=\"{}\"{}>{}</text>\n", y,
                        i == 0 ? " font-size=\"14\" font-weight=\"bold\"" : "",
                        xml_escape(head[i]));
    width = std::max(width, 32 + static_cast<int>(head[i].size() * 7.3));
  }
  y += 28;
  SvgGrid ga = draw_grid(d.a, 16, y, "lf-diff-a", &d.b);
  const int xb = 16 + ga.width + 40;
  SvgGrid gb = draw_grid(d.b, xb, y, "lf-diff-b", &d.a);
  body << fmt::format("<text x=\"16\" y=\"{}\" font-weight=\"bold\">A</text>\n", y - 4);
  body << fmt::format("<text x=\"{}\" y=\"{}\" font-weight=\"bold\">B</text>\n", xb, y - 4);
  body << ga.body << gb.body;
  y += std::max(ga.height, gb.height) + 22;
  const size_t n = ga.differing;
  std::string note = n == 0
                         ? "the two plans put every group in the same state at every time shown"
                         : std::to_string(n) + " cell" + (n == 1 ? "" : "s") + " differ (outlined)";
  if (d.omitted) note += "; the first " + std::to_string(kMaxColumns) + " change points shown";
  body << fmt::format("<text x=\"16\" y=\"{}\">{}</text>\n", y, xml_escape(note));
  // What the cells cannot show: learning rates, policies, parameters, the model.
  if (!also.empty()) {
    y += 18;
    body << fmt::format("<text x=\"16\" y=\"{}\">they also differ in what a trainer runs:</text>\n",
                        y);
    for (const auto& line : also) {
      y += 16;
      body << fmt::format("<text class=\"lf-also\" x=\"28\" y=\"{}\">{}</text>\n", y,
                          xml_escape(line));
      width = std::max(width, 44 + static_cast<int>(line.size() * 7.3));
    }
  }
  y += 14;
  body << svg_legend(16, y, true);
  y += 28;
  width = std::max({width, xb + gb.width + 16, 860});
  if (differing) *differing = n;
  return svg_open(width, y, "layerfreeze diff: " + name_a + " vs " + name_b) + svg_defs() +
         body.str() + "</svg>\n";
}

std::string diff_html(const DiffGrids& d, const CompiledPlan& a, const CompiledPlan& b,
                      const std::string& name_a, const std::string& name_b,
                      const std::string& text) {
  const Inventory& inv = *a.inventory;
  std::ostringstream o;
  o << report_head("layerfreeze diff: " + name_a + " vs " + name_b);
  o << "<h1>layerfreeze diff</h1>\n<p class=\"meta\">A: " << xml_escape(name_a) << " ("
    << xml_escape(params_text(a)) << ") \u00b7 fingerprint " << a.fingerprint()
    << "<br>B: " << xml_escape(name_b) << " (" << xml_escape(params_text(b))
    << ") \u00b7 fingerprint " << b.fingerprint() << "<br>model: " << xml_escape(inv.facts().source)
    << "</p>\n";
  o << "<div id=\"picture\">\n" << diff_svg(d, a, b, name_a, name_b, nullptr) << "</div>\n";
  o << "<h2>What differs</h2>\n<pre id=\"difftext\">" << xml_escape(text) << "</pre>\n";
  o << report_browser();
  nlohmann::json rules = nlohmann::json::array(), entries = nlohmann::json::array();
  report_entries({{"A", &a, &d.a}, {"B", &b, &d.b}}, rules, entries);
  nlohmann::json data = {{"format", "layerfreeze.report/1"},
                         {"sides", {"A", "B"}},
                         {"strategies", {name_a, name_b}},
                         {"fingerprints", {a.fingerprint(), b.fingerprint()}},
                         {"model", inv.facts().source},
                         {"columns", grid_labels(d.a, false)},
                         {"rows", grid_labels(d.a, true)},
                         {"rules", rules},
                         {"entries", entries},
                         {"omitted_columns", d.omitted}};
  o << "<script type=\"application/json\" id=\"lf-data\">" << script_safe(data) << "</script>\n";
  o << report_script() << "</body>\n</html>\n";
  return o.str();
}

}  // namespace layerfreeze
