#include "print/plan_svg.hpp"

#include "core/safe_text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "core/format.hpp"
#include "print/plan_printer.hpp"

namespace layerfreeze {

namespace {

// Geometry (px). Monospace text is ~0.6 em wide a character.
constexpr int kMargin = 16, kRowH = 18, kColW = 92, kFont = 12, kSmall = 10;
constexpr double kCharW = 7.3;  // at kFont

// Colours and patterns: blue and orange are told apart with every common colour-vision
// deficiency; in greyscale frozen is dark and hatched, trainable mid and solid, partial light
// and dotted. Tests sample them (tests/browser).
constexpr const char* kFrozenFill = "#4e79a7";
constexpr const char* kFrozenInk = "#2b4a6f";
constexpr const char* kTrainFill = "#f28e2b";
constexpr const char* kPartialFill = "#fbd7a8";
constexpr const char* kPartialInk = "#5a5a5a";
constexpr const char* kEmptyFill = "#eeeeee";

std::string fill_of(GroupState s) {
  switch (s) {
    case GroupState::kFrozen: return "url(#lf-frozen)";
    case GroupState::kActive: return kTrainFill;
    case GroupState::kPartial: return "url(#lf-partial)";
    case GroupState::kEmpty: return kEmptyFill;
  }
  return kEmptyFill;
}

const char* kind_word(GridRow::Kind k) {
  switch (k) {
    case GridRow::Kind::kTower: return "tower";
    case GridRow::Kind::kConnector: return "connector";
    case GridRow::Kind::kEmbeddings: return "embeddings";
    case GridRow::Kind::kLayers: return "layers";
    case GridRow::Kind::kHead: return "head";
    case GridRow::Kind::kOther: return "other";
    case GridRow::Kind::kMtp: return "mtp";
  }
  return "other";
}

int text_width(const std::string& s, double char_w = kCharW) {
  size_t n = 0;  // UTF-8 code points
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return static_cast<int>(static_cast<double>(n) * char_w + 0.999);
}

std::string cell_title(const GridRow& row, const GridColumn& col, const GridCell& cell) {
  std::string t = row.label + " \u00b7 " + col.label + ": " + grid_state_word(cell.state);
  if (!cell.detail.empty()) t += " (" + cell.detail + ")";
  if (cell.decider)
    t += " \u2014 " + cell.decider->prov.where() + " " + cell.decider->prov.text;
  else if (cell.state != GroupState::kEmpty)
    t += " \u2014 no rule (the default: trainable)";
  return t;
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    switch (c) {
      case '&':
        o += "&amp;";
        ++i;
        continue;
      case '<':
        o += "&lt;";
        ++i;
        continue;
      case '>':
        o += "&gt;";
        ++i;
        continue;
      case '"':
        o += "&quot;";
        ++i;
        continue;
      case '\t':
      case '\n':
      case '\r':
        o += c;
        ++i;
        continue;
      default: break;
    }
    // XML 1.0 has no other control characters, no U+FFFE/U+FFFF and only well-formed UTF-8:
    // anything else becomes U+FFFD, so the picture always parses.
    const Utf8Scan u = utf8_scan(s, i);
    const bool control = static_cast<unsigned char>(c) < 0x20;
    const bool nonchar = u.well_formed && u.bytes == 3 && c == '\xEF' && s[i + 1] == '\xBF' &&
                         (s[i + 2] == '\xBE' || s[i + 2] == '\xBF');
    if (!u.well_formed || control || nonchar)
      o += "\xEF\xBF\xBD";
    else
      o.append(s, i, u.bytes);
    i += u.bytes;
  }
  return o;
}

std::string svg_defs() {
  return fmt::format(
      "<defs>\n"
      "<pattern id=\"lf-frozen\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
      "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"{0}\"/>"
      "<rect width=\"1.5\" height=\"6\" fill=\"{1}\"/></pattern>\n"
      "<pattern id=\"lf-partial\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\">"
      "<rect width=\"6\" height=\"6\" fill=\"{2}\"/><circle cx=\"1.5\" cy=\"1.5\" r=\"1.2\" "
      "fill=\"{3}\"/></pattern>\n"
      "</defs>\n",
      kFrozenFill, kFrozenInk, kPartialFill, kPartialInk);
}

SvgGrid draw_grid(const ScheduleGrid& g, int x0, int y0, const std::string& id,
                  const ScheduleGrid* other) {
  SvgGrid out;
  int label_w = 0;
  for (const auto& r : g.rows) label_w = std::max(label_w, text_width(r.label));
  label_w += 12;
  std::ostringstream o;
  o << "<g id=\"" << id << "\" class=\"lf-grid\">\n";
  // A block cycle: a band over the columns of each cycle, "cycle 0", "cycle 1", and a line
  // through the grid where a new cycle starts.
  const bool cycles = std::any_of(g.columns.begin(), g.columns.end(),
                                  [](const GridColumn& c) { return c.cycle >= 0; });
  std::string cycle_lines;  // drawn over the cells
  if (cycles) {
    for (size_t c = 0; c < g.columns.size();) {
      size_t e = c + 1;
      while (e < g.columns.size() && g.columns[e].cycle == g.columns[c].cycle) ++e;
      if (g.columns[c].cycle >= 0) {
        const int xa = x0 + label_w + static_cast<int>(c) * kColW + 3;
        const int xb = x0 + label_w + static_cast<int>(e) * kColW - 3;
        o << fmt::format(
            "<g class=\"lf-cycle\" data-cycle=\"{0}\" data-first-col=\"{1}\" "
            "data-last-col=\"{2}\"><path d=\"M{3} {5} V{4} H{6} V{5}\" fill=\"none\" "
            "stroke=\"#555555\"/><text x=\"{7}\" y=\"{8}\">cycle {0}</text></g>\n",
            g.columns[c].cycle, c, e - 1, xa, y0 + 4, y0 + kRowH - 4, xb, xa + 4, y0 + kRowH - 8);
        if (c > 0)
          cycle_lines += fmt::format(
              "<rect class=\"lf-cycle-start\" x=\"{}\" y=\"{}\" width=\"3\" height=\"{}\" "
              "fill=\"#222222\"><title>cycle {} starts</title></rect>\n",
              xa - 5, y0 + 3 * kRowH, static_cast<int>(g.rows.size()) * kRowH, g.columns[c].cycle);
      }
      c = e;
    }
    y0 += kRowH;
  }
  // Column headers: the time, on two lines when it has an epoch and a step.
  for (size_t c = 0; c < g.columns.size(); ++c) {
    const int cx = x0 + label_w + static_cast<int>(c) * kColW + kColW / 2;
    std::string label = g.columns[c].label + (g.columns[c].periodic ? " \u21bb" : "");
    auto dot = label.find(" \u00b7 ");
    if (dot == std::string::npos) {
      o << fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", cx,
                       y0 + 2 * kRowH - 6, xml_escape(label));
    } else {
      o << fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", cx,
                       y0 + kRowH - 6, xml_escape(label.substr(0, dot)));
      o << fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", cx,
                       y0 + 2 * kRowH - 6, xml_escape(label.substr(dot + 4)));
    }
  }
  const int top = y0 + 2 * kRowH;
  for (size_t r = 0; r < g.rows.size(); ++r) {
    const GridRow& row = g.rows[r];
    const int y = top + static_cast<int>(r) * kRowH;
    o << fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", x0, y + kRowH - 5,
                     xml_escape(row.label));
    for (size_t c = 0; c < g.columns.size(); ++c) {
      const GridCell& cell = g.cells[r][c];
      const int x = x0 + label_w + static_cast<int>(c) * kColW;
      bool differs = other && r < other->rows.size() && c < other->columns.size() &&
                     other->cells[r][c].state != cell.state;
      o << fmt::format(
          "<rect class=\"lf-cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" "
          "stroke=\"#ffffff\" data-row=\"{}\" data-kind=\"{}\" data-first=\"{}\" data-last=\"{}\" "
          "data-col=\"{}\" data-state=\"{}\"{}><title>{}</title></rect>\n",
          x, y, kColW, kRowH, fill_of(cell.state), r, kind_word(row.kind), row.first, row.last, c,
          grid_state_word(cell.state), differs ? " data-differs=\"1\"" : "",
          xml_escape(cell_title(row, g.columns[c], cell)));
      if (differs) ++out.differing;
      if (differs)
        o << fmt::format(
            "<rect class=\"lf-differs\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
            "fill=\"none\" stroke=\"#d62728\" stroke-width=\"2.5\"/>\n",
            x + 1.5, y + 1.5, kColW - 3, kRowH - 3);
    }
  }
  // Where backward stops: a bar on top of the first row (in data-flow order) that trains.
  for (size_t c = 0; c < g.columns.size(); ++c)
    for (size_t r = 0; r < g.rows.size(); ++r) {
      GroupState s = g.cells[r][c].state;
      if (s != GroupState::kActive && s != GroupState::kPartial) continue;
      const int x = x0 + label_w + static_cast<int>(c) * kColW;
      o << fmt::format(
          "<rect class=\"lf-backstop\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"3\" "
          "fill=\"#111111\"><title>backward stops here ({})</title></rect>\n",
          x, top + static_cast<int>(r) * kRowH - 1, kColW, xml_escape(g.rows[r].label));
      break;
    }
  o << cycle_lines << "</g>\n";
  out.body = o.str();
  out.width = label_w + static_cast<int>(g.columns.size()) * kColW;
  out.height = (cycles ? 3 : 2) * kRowH + static_cast<int>(g.rows.size()) * kRowH;
  out.label_w = label_w;
  return out;
}

std::string svg_legend(int x, int y, bool with_differs) {
  std::ostringstream o;
  const char* names[] = {"frozen", "trainable", "partial (mixed group or masked experts)"};
  const GroupState states[] = {GroupState::kFrozen, GroupState::kActive, GroupState::kPartial};
  int cx = x;
  for (int k = 0; k < 3; ++k) {
    o << fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"24\" height=\"12\" fill=\"{}\" stroke=\"#888888\"/>"
        "<text x=\"{}\" y=\"{}\">{}</text>\n",
        cx, y, fill_of(states[k]), cx + 30, y + 10, names[k]);
    cx += 30 + text_width(names[k]) + 20;
  }
  o << fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"24\" height=\"3\" fill=\"#111111\"/>"
      "<text x=\"{}\" y=\"{}\">backward stops</text>\n",
      cx, y + 5, cx + 30, y + 10);
  cx += 30 + text_width("backward stops") + 20;
  if (with_differs)
    o << fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"24\" height=\"12\" fill=\"none\" stroke=\"#d62728\" "
        "stroke-width=\"2.5\"/><text x=\"{}\" y=\"{}\">differs</text>\n",
        cx, y, cx + 30, y + 10);
  return o.str();
}

std::string svg_open(int width, int height, const std::string& title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"monospace\" font-size=\"{2}\" fill=\"#222222\">\n"
      "<title>{3}</title>\n<rect width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n",
      width, height, kFont, xml_escape(title));
}

// Metric-triggered stages as windows on an epoch axis (issue 28): a bar from the earliest to the
// latest epoch a stage may fire (open to the right when it has no not_after), a diamond where this
// plan places it. Returns the new bottom.
int draw_windows(const CompiledPlan& plan, int x0, int y, int grid_width, std::ostringstream& o,
                 std::vector<std::string>& lines) {
  const auto views = plan.metric_stages();
  int64_t end = 1;
  for (const auto& v : views)
    end = std::max({end, v.window.earliest + 2, v.window.latest + 2, v.at + 2});
  int label_w = 0;
  for (const auto& v : views) label_w = std::max(label_w, text_width(v.watch->label, 6.1));
  label_w = std::min(label_w, 360) + 12;
  const int axis_w = std::max(grid_width - label_w, 320);
  auto x_of = [&](int64_t e) {
    return x0 + label_w +
           static_cast<int>(static_cast<double>(e) * axis_w / static_cast<double>(end));
  };
  y += kRowH;
  lines.push_back(
      "metric stages: window from the earliest to the latest epoch each may fire; "
      "\u25c6 where this plan places it");
  o << fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\">{}</text>\n", x0, y - 5, kSmall,
                   xml_escape(lines.back()));
  for (const auto& v : views) {
    y += kRowH;
    const int top = y - kRowH + 4, h = kRowH - 8;
    const int a = x_of(v.window.earliest);
    const bool open = v.window.latest < 0;
    const int b = open ? x0 + label_w + axis_w : x_of(v.window.latest + 1);
    o << fmt::format(
        "<g class=\"lf-window\"><title>{}: {} \u00b7 window {} \u00b7 {}</title>\n"
        "<text x=\"{}\" y=\"{}\" font-size=\"{}\">{}</text>\n"
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"{}\"{}/>\n",
        xml_escape(v.watch->label), xml_escape(v.watch->condition()), xml_escape(v.window_text()),
        xml_escape(v.placement()), x0, y - 5, kSmall, xml_escape(v.watch->label), a, top,
        std::max(b - a, 2), h, kPartialFill, kPartialInk, open ? " stroke-dasharray=\"4 3\"" : "");
    if (v.at >= 0) {
      const int cx = x_of(v.at) + std::max(axis_w / static_cast<int>(end) / 2, 3), cy = top + h / 2;
      o << fmt::format(
          "<path class=\"lf-window-at\" d=\"M{} {} l5 5 l-5 5 l-5 -5 z\" fill=\"{}\"/>\n", cx,
          cy - 5, kFrozenInk);
    }
    o << "</g>\n";
  }
  // The axis: every epoch's tick, labelled where there is room.
  y += kRowH;
  const int step = std::max<int64_t>(1, end / 12);
  for (int64_t e = 0; e <= end; e += step)
    o << fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"middle\">{}</text>\n",
                     x_of(e), y - 5, kSmall, e);
  o << fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\">epoch</text>\n", x0, y - 5, kSmall);
  return y;
}

std::string plan_svg(const PlanSummary& s) { return plan_svg(s, schedule_grid(s)); }

std::string plan_svg(const PlanSummary& s, const ScheduleGrid& g) {
  const CompiledPlan& plan = *s.plan;
  const Inventory& inv = *plan.inventory;
  std::vector<std::string> head = {
      "layerfreeze plan: " + plan.name + " (" + plan.origin + ")",
      "parameters: " + (params_text(plan).empty() ? std::string("none") : params_text(plan)),
      "model: " + inv.facts().source + " \u00b7 " + model_summary_line(inv, s.shapes_known),
      std::string("optimizer: ") + optimizer_name(s.optimizer) + " \u00b7 fingerprint " +
          plan.fingerprint()};
  int y = kMargin;
  std::ostringstream body;
  for (size_t i = 0; i < head.size(); ++i) {
    y += i == 0 ? 14 : kRowH;
    body << fmt::format("<text x=\"{}\" y=\"{}\"{}>{}</text>\n", kMargin, y,
                        i == 0 ? " font-size=\"14\" font-weight=\"bold\"" : "",
                        xml_escape(head[i]));
  }
  y += 10;
  SvgGrid grid = draw_grid(g, kMargin, y, "lf-plan", nullptr);
  body << grid.body;
  y += grid.height + 6;
  // Per column: trainable share, gradient + optimizer memory, where backward stops.
  const char* rows[] = {"trainable", "grads+optim", "backward to", "cached step"};
  for (int k = 0; k < 4; ++k) {
    y += kRowH;
    body << fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\">{}</text>\n", kMargin, y - 5,
                        kSmall, rows[k]);
    for (size_t c = 0; c < g.columns.size(); ++c) {
      const StageSummary& st = s.stages[g.columns[c].stage];
      const int64_t total = st.trainable_numel + st.frozen_numel;
      std::string v =
          k == 0   ? (s.shapes_known ? percent(st.trainable_numel, total)
                                     : std::to_string(st.trainable_tensors) + " t")
          : k == 1 ? (s.shapes_known ? bytes_text(st.grad_bytes + st.optimizer_bytes) : "\u2014")
          : k == 2 ? backward_short(inv, st)
          // The step with the frozen prefix's output read from a cache (docs/CACHE.md).
          : st.cache_shown() && st.cached_step_cost() > 0
              ? fmt::format("{:.2f}\u00d7", st.cached_step_cost())
              : "\u2014";
      body << fmt::format(
          "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"middle\">{}</text>\n",
          kMargin + grid.label_w + static_cast<int>(c) * kColW + kColW / 2, y - 5, kSmall,
          xml_escape(v));
    }
  }
  if (g.omitted_columns || g.period) {
    y += kRowH;
    std::string note;
    if (g.period)
      note = "\u21bb periodic: every " + std::to_string(g.period) + " " + g.period_unit + "; ";
    for (const auto& c : s.cycles)
      note += "a cycle of " + std::to_string(c.blocks.size()) +
              " blocks (a dark line where the next begins); ";
    if (g.omitted_columns)
      note += "the first " + std::to_string(g.columns.size()) + " of " +
              std::to_string(g.columns.size() + g.omitted_columns) + " change points shown";
    else
      note += "every change point up to the horizon shown";
    body << fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"{}\">{}</text>\n", kMargin, y - 5,
                        kSmall, xml_escape(note));
  }
  if (!plan.watches.empty()) y = draw_windows(plan, kMargin, y, grid.width, body, head);
  y += 12;
  body << svg_legend(kMargin, y, false);
  y += 12;
  // The plan's warnings, as in every other view (a picture in a pull request is often the only
  // view a reviewer opens): the first 20, then how many more.
  const auto warnings = s.warnings();
  constexpr size_t kShownWarnings = 20;
  for (size_t i = 0; i < warnings.size() && i <= kShownWarnings; ++i) {
    const Diagnostic& w = *warnings[i];
    head.push_back(i == kShownWarnings
                       ? "⚠ and " + std::to_string(warnings.size() - i) + " more warnings"
                       : "⚠ warning: " + w.message + " [" + w.code + "]");
    y += kRowH;
    body << fmt::format(
        "<text class=\"lf-warning\" x=\"{}\" y=\"{}\" font-size=\"{}\" "
        "fill=\"#8a4b00\">{}</text>\n",
        kMargin, y - 5, kSmall, xml_escape(head.back()));
  }
  y += kMargin;
  int width = kMargin * 2 + grid.width;
  for (const auto& h : head) width = std::max(width, kMargin * 2 + text_width(h));
  width = std::max(width, kMargin * 2 + 720);  // the legend
  return svg_open(width, y, "layerfreeze plan: " + plan.name + " on " + inv.facts().source) +
         svg_defs() + body.str() + "</svg>\n";
}

}  // namespace layerfreeze
