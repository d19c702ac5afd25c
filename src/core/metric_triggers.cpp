#include "core/metric_triggers.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <sstream>

#include <re2/re2.h>

#include "core/format.hpp"
#include "core/value.hpp"

namespace layerfreeze {

bool is_metric_name(const std::string& name) {
  static const RE2 form("[A-Za-z_][A-Za-z0-9_./:-]{0,127}");
  return RE2::FullMatch(name, form);
}

std::string MetricWatch::condition() const {
  std::string s =
      metric + " plateau (" + (maximize ? "max" : "min") + ", patience " + std::to_string(patience);
  if (min_delta != 0) s += ", min_delta " + Value::real(min_delta).to_string();
  s += ")";
  const std::string since = relative ? " after the previous group" : "";
  if (not_before >= 0)
    s += ", not before " + std::string(relative ? "" : "epoch ") + std::to_string(not_before) +
         (relative ? " epochs" : "") + since;
  if (not_after >= 0)
    s += ", not after " + std::string(relative ? "" : "epoch ") + std::to_string(not_after) +
         (relative ? " epochs" : "") + since;
  return s;
}

FireWindow fire_window(const MetricWatch& w, int64_t previous) {
  // A plateau needs reports, which come during an epoch: it fires at the earliest at the
  // boundary after the sequence's previous firing (or after epoch 0, or the anchor).
  FireWindow f;
  if (w.relative) {
    const int64_t base = previous >= 0 ? previous : w.anchor;
    f.earliest = base + std::max<int64_t>(w.not_before, 1);
    if (w.not_after >= 0) f.latest = base + std::max<int64_t>(w.not_after, 1);
  } else {
    f.earliest = std::max<int64_t>(w.not_before, std::max<int64_t>(previous, 0) + 1);
    if (w.not_after >= 0) f.latest = std::max<int64_t>(w.not_after, previous + 1);
  }
  if (f.latest >= 0 && f.latest < f.earliest) f.earliest = f.latest;
  return f;
}

namespace {

// The watches of each sequence, in id order.
std::vector<std::vector<uint32_t>> sequences_of(const std::vector<MetricWatch>& watches) {
  std::vector<std::vector<uint32_t>> out;
  for (const auto& w : watches) {
    if (out.size() <= w.sequence) out.resize(w.sequence + 1);
    out[w.sequence].push_back(w.id);
  }
  return out;
}

}  // namespace

std::vector<int64_t> watch_positions(const std::vector<MetricWatch>& watches,
                                     const std::vector<Firing>& fired) {
  std::vector<int64_t> at(watches.size(), -1);
  std::vector<bool> done(watches.size(), false);
  for (const auto& f : fired)
    if (f.id < watches.size()) {
      at[f.id] = f.epoch;
      done[f.id] = true;
    }
  for (const auto& seq : sequences_of(watches)) {
    int64_t previous = -1;
    for (uint32_t id : seq) {
      if (!done[id]) {
        if (previous == -2) break;  // an earlier stage waits for a plateau: so does this one
        at[id] = fire_window(watches[id], previous).latest;
      }
      previous = at[id] >= 0 ? at[id] : -2;
    }
  }
  return at;
}

std::vector<FireWindow> watch_windows(const std::vector<MetricWatch>& watches) {
  std::vector<FireWindow> out(watches.size());
  for (const auto& seq : sequences_of(watches)) {
    int64_t earliest_prev = -1, latest_prev = -1;
    bool open = false;
    for (uint32_t id : seq) {
      FireWindow lo = fire_window(watches[id], earliest_prev);
      FireWindow hi = fire_window(watches[id], latest_prev);
      out[id].earliest = lo.earliest;
      out[id].latest = open ? -1 : hi.latest;
      open = open || hi.latest < 0;
      earliest_prev = lo.earliest;
      latest_prev = hi.latest;
    }
  }
  return out;
}

TriggerMonitor::TriggerMonitor(std::vector<MetricWatch> watches) : watches_(std::move(watches)) {
  auto seqs = sequences_of(watches_);
  for (auto& ids : seqs) {
    Sequence s;
    if (!ids.empty()) s.metric = watches_[ids.front()].metric;
    s.watches = std::move(ids);
    sequences_.push_back(std::move(s));
  }
}

std::vector<std::string> TriggerMonitor::metrics() const {
  std::vector<std::string> out;
  for (const auto& s : sequences_) out.push_back(s.metric);
  std::sort(out.begin(), out.end());
  return out;
}

// Lightning's EarlyStopping: better than the best by more than min_delta (a NaN never is).
bool TriggerMonitor::improved(const Sequence& s, const MetricWatch& w, double v) const {
  if (!s.has_best) return std::isfinite(v) || (w.maximize ? v > 0 : v < 0);
  return w.maximize ? v - w.min_delta > s.best : v + w.min_delta < s.best;
}

TriggerMonitor::Report TriggerMonitor::report(const std::string& metric, double value) {
  Sequence* s = nullptr;
  for (auto& q : sequences_)
    if (q.metric == metric) s = &q;
  if (!s) return Report::kUnwatched;
  // A sequence that fired every stage keeps its best (a later report of it changes nothing).
  const MetricWatch& w = watches_[s->watches[std::min(s->next, s->watches.size() - 1)]];
  if (s->next < s->watches.size() && !std::isnan(value) && improved(*s, w, value)) {
    s->best = value;
    s->has_best = true;
    s->wait = 0;
  } else if (s->next < s->watches.size()) {
    if (++s->wait >= w.patience) {
      s->pending = true;
      s->wait = 0;
    }
  }
  return std::isfinite(value) ? Report::kCounted : Report::kNotFinite;
}

bool TriggerMonitor::pending_any() const {
  for (const auto& s : sequences_)
    if (s.pending && s.next < s.watches.size()) return true;
  return false;
}

bool TriggerMonitor::plateau(const std::string& metric) {
  for (auto& s : sequences_)
    if (s.metric == metric && s.next < s.watches.size()) {
      s.pending = true;
      s.wait = 0;
      return true;
    }
  return false;
}

std::vector<Firing> TriggerMonitor::boundary(int64_t epoch) {
  std::vector<Firing> out;
  if (epoch <= last_boundary_) return out;
  // Every boundary from `first` to `epoch` is evaluated at once, as one at a time would: a
  // plateau reported before fires at the first of them its window allows, a bound at its own
  // epoch — so a jump of time (seek, a history with gaps) costs no loop over the epochs between.
  const int64_t first = last_boundary_ + 1;
  last_boundary_ = epoch;
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  for (auto& s : sequences_) {
    while (s.next < s.watches.size()) {
      const MetricWatch& w = watches_[s.watches[s.next]];
      const FireWindow win = fire_window(w, s.last_fire);
      const int64_t by_plateau = s.pending ? std::max(win.earliest, first) : kNever;
      const int64_t by_bound = win.latest >= 0 ? std::max(win.latest, first) : kNever;
      const int64_t at = std::min(by_plateau, by_bound);
      if (at > epoch) break;
      Firing f{w.id, at, by_plateau <= by_bound, std::nullopt};
      if (s.has_best) f.best = s.best;
      out.push_back(f);
      fired_.push_back(f);
      s.last_fire = f.epoch;
      s.wait = 0;
      ++s.next;
      if (f.plateau) s.pending = false;
      if (f.epoch == epoch) break;  // one stage of a sequence per boundary
    }
  }
  return out;
}

int64_t TriggerMonitor::next_pending() const {
  int64_t next = -1;
  for (const auto& s : sequences_) {
    if (!s.pending || s.next >= s.watches.size()) continue;
    const int64_t at = std::max(fire_window(watches_[s.watches[s.next]], s.last_fire).earliest,
                                last_boundary_ + 1);
    if (next < 0 || at < next) next = at;
  }
  return next;
}

namespace {

// A double as hexadecimal floating point: exact, and read back by strtod.
std::string hex_double(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%a", v);
  return text;
}

// The inverse; false unless all of `s` is one number.
bool parse_double(const std::string& s, double& v) {
  if (s.empty() || s.size() > 40) return false;
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

}  // namespace

std::string TriggerMonitor::to_string() const {
  std::string out;
  auto sep = [&] {
    if (!out.empty()) out += ' ';
  };
  out = "b=" + std::to_string(last_boundary_);
  for (const auto& f : fired_) {
    sep();
    out += "f=" + std::to_string(f.id) + "@" + std::to_string(f.epoch) + (f.plateau ? "p" : "b");
    if (f.best) out += ":" + hex_double(*f.best);
  }
  for (size_t k = 0; k < sequences_.size(); ++k) {
    const Sequence& s = sequences_[k];
    sep();
    out += "s=" + std::to_string(k) + ":" + (s.has_best ? hex_double(s.best) : "none") + ":" +
           std::to_string(s.wait) + ":" + (s.pending ? "1" : "0");
  }
  return out;
}

namespace {

bool parse_int(const std::string& s, int64_t& v) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  v = std::strtoll(s.c_str(), nullptr, 10);
  return true;
}

std::vector<std::string> split(const std::string& s, char c) {
  std::vector<std::string> out(1);
  for (char x : s) {
    if (x == c)
      out.emplace_back();
    else
      out.back() += x;
  }
  return out;
}

}  // namespace

std::string TriggerMonitor::restore(const std::string& text) {
  TriggerMonitor fresh(watches_);
  std::istringstream in(text);
  std::string tok;
  std::vector<bool> seen_seq(sequences_.size(), false);
  bool seen_boundary = false;
  while (in >> tok) {
    if (tok.rfind("b=", 0) == 0 && !seen_boundary) {
      int64_t b = 0;
      const std::string v = tok.substr(2);
      if (v == "-1")
        b = -1;
      else if (!parse_int(v, b))
        return "bad boundary '" + tok + "'";
      fresh.last_boundary_ = b;
      seen_boundary = true;
    } else if (tok.rfind("f=", 0) == 0) {
      // f=ID@EPOCH[p|b][:BEST]
      std::string head = tok;
      std::optional<double> best;
      if (auto colon = tok.find(':'); colon != std::string::npos) {
        double v = 0;
        if (!parse_double(tok.substr(colon + 1), v)) return "bad firing '" + tok + "'";
        best = v;
        head = tok.substr(0, colon);
      }
      auto at = head.find('@');
      int64_t id = 0, epoch = 0;
      if (at == std::string::npos || head.size() < at + 3) return "bad firing '" + tok + "'";
      const char kind = head.back();
      if (!parse_int(head.substr(2, at - 2), id) ||
          !parse_int(head.substr(at + 1, head.size() - at - 2), epoch) ||
          (kind != 'p' && kind != 'b') || id >= static_cast<int64_t>(watches_.size()))
        return "bad firing '" + tok + "'";
      Sequence& s = fresh.sequences_[watches_[id].sequence];
      if (s.next >= s.watches.size() || s.watches[s.next] != id || epoch <= s.last_fire)
        return "firing '" + tok + "' is out of its sequence's order";
      Firing f{static_cast<uint32_t>(id), epoch, kind == 'p', best};
      fresh.fired_.push_back(f);
      s.last_fire = epoch;
      ++s.next;
    } else if (tok.rfind("s=", 0) == 0) {
      auto parts = split(tok.substr(2), ':');
      int64_t k = 0, wait = 0;
      if (parts.size() != 4 || !parse_int(parts[0], k) ||
          k >= static_cast<int64_t>(sequences_.size()) || seen_seq[k] ||
          !parse_int(parts[2], wait) || (parts[3] != "0" && parts[3] != "1"))
        return "bad sequence state '" + tok + "'";
      seen_seq[k] = true;
      Sequence& s = fresh.sequences_[k];
      if (parts[1] != "none") {
        if (!parse_double(parts[1], s.best)) return "bad best value in '" + tok + "'";
        s.has_best = true;
      }
      s.wait = wait;
      s.pending = parts[3] == "1";
    } else {
      return "unknown token '" + tok + "'";
    }
  }
  if (!seen_boundary) return "no last boundary (b=EPOCH)";
  for (size_t k = 0; k < seen_seq.size(); ++k)
    if (!seen_seq[k]) return "no state for the sequence of '" + sequences_[k].metric + "'";
  for (const auto& f : fresh.fired_)
    if (f.epoch > fresh.last_boundary_) return "a firing after the last boundary";
  *this = std::move(fresh);
  return "";
}

std::optional<std::vector<MetricRecord>> parse_metric_history(const std::string& text,
                                                              const std::string& file,
                                                              Diagnostics& diags) {
  constexpr size_t kMaxRecords = 1000000;
  std::vector<MetricRecord> out;
  const size_t errors_before = diags.count(Severity::kError);
  int line_no = 0;
  int64_t last_epoch = -1;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::string e, m, v, extra;
    if (!(ls >> e)) continue;
    const SourceLoc loc{file, line_no, static_cast<int>(line.find(e)) + 1};
    MetricRecord r;
    char* end = nullptr;
    if (!(ls >> m >> v) || (ls >> extra) || !parse_int(e, r.epoch)) {
      diags.error("bad-metrics", "expected 'EPOCH METRIC VALUE' (EPOCH a 0-based integer)", loc);
      continue;
    }
    r.value = std::strtod(v.c_str(), &end);
    if (end != v.c_str() + v.size() || v.empty()) {
      const size_t at = line.find(v, line.find(m, line.find(e) + e.size()) + m.size());
      diags.error("bad-metrics", "'" + v.substr(0, 40) + "' is not a number",
                  {file, line_no, static_cast<int>(at) + 1});
      continue;
    }
    if (r.epoch > (int64_t{1} << 40)) {
      diags.error("bad-metrics", "epoch " + std::to_string(r.epoch) + " is larger than 2^40", loc);
      continue;
    }
    if (r.epoch < last_epoch) {
      diags.error("bad-metrics",
                  "epoch " + std::to_string(r.epoch) + " after epoch " +
                      std::to_string(last_epoch) + ": list the records in the order reported",
                  loc);
      continue;
    }
    if (out.size() >= kMaxRecords) {
      diags.error("bad-metrics", "more than 1,000,000 records", loc);
      break;
    }
    last_epoch = r.epoch;
    r.metric = std::move(m);
    out.push_back(std::move(r));
  }
  if (diags.count(Severity::kError) > errors_before) return std::nullopt;
  return out;
}

std::optional<PlateauAssumption> parse_assumption(const std::string& text, Diagnostics& diags) {
  std::string metric, kind, epochs;
  static const RE2 form(
      R"(\s*([A-Za-z_][A-Za-z0-9_./:-]{0,127})\s*:\s*(plateaus?)\s+at\s+epochs?\s+([0-9][0-9,\s]*))");
  if (text.size() > 4096 || !RE2::FullMatch(text, form, &metric, &kind, &epochs)) {
    diags.error("bad-assumption",
                "--assume '" + text.substr(0, 200) +
                    "': expected 'METRIC: plateau at epoch N' (or 'plateaus at epochs N, M')",
                {});
    return std::nullopt;
  }
  PlateauAssumption a;
  a.metric = metric;
  for (const auto& part : split(epochs, ',')) {
    std::string t;
    for (char c : part)
      if (c != ' ' && c != '\t') t += c;
    int64_t e = 0;
    if (t.empty() || !parse_int(t, e) || e > (int64_t{1} << 40)) {
      diags.error(
          "bad-assumption",
          "--assume '" + text.substr(0, 200) + "': '" + t.substr(0, 40) + "' is not an epoch", {});
      return std::nullopt;
    }
    a.epochs.push_back(e);
  }
  std::sort(a.epochs.begin(), a.epochs.end());
  a.epochs.erase(std::unique(a.epochs.begin(), a.epochs.end()), a.epochs.end());
  return a;
}

std::vector<Firing> assume_plateaus(const std::vector<MetricWatch>& watches,
                                    const std::vector<PlateauAssumption>& assumed,
                                    Diagnostics& diags) {
  TriggerMonitor m(watches);
  const auto metrics = m.metrics();
  std::map<int64_t, std::vector<std::string>> at;  // epoch -> metrics assumed to plateau there
  for (const auto& a : assumed) {
    if (!std::binary_search(metrics.begin(), metrics.end(), a.metric)) {
      std::vector<std::string> notes;
      if (auto near = closest_match(a.metric, metrics); !near.empty())
        notes.push_back("did you mean '" + near + "'?");
      notes.push_back(metrics.empty() ? "no stage of this strategy waits for a metric"
                                      : "the strategy's stages watch: " + join(metrics));
      diags.error("unknown-metric", "--assume names '" + a.metric + "', which no stage watches", {},
                  notes);
      continue;
    }
    for (int64_t e : a.epochs) at[e].push_back(a.metric);
  }
  for (const auto& [e, names] : at) {
    if (e > 0) m.boundary(e - 1);  // a plateau at epoch e was seen before its boundary
    for (const auto& name : names)
      if (!m.plateau(name))
        diags.warning("assumption-unused",
                      "--assume: the plateau of '" + name + "' at epoch " + std::to_string(e) +
                          " finds no stage waiting for it (every stage on it fired before)",
                      {});
  }
  // Every assumed plateau fires: at its epoch, or when its window opens.
  if (!at.empty()) m.boundary(at.rbegin()->first);
  while (m.pending_any()) m.boundary(m.next_pending());
  return m.fired();
}

std::vector<Firing> replay_history(const std::vector<MetricWatch>& watches,
                                   const std::vector<MetricRecord>& history) {
  TriggerMonitor m(watches);
  int64_t epoch = -1;
  for (const auto& r : history) {
    if (r.epoch > epoch) m.boundary(epoch = r.epoch);  // the boundaries up to it, at once
    m.report(r.metric, r.value);
  }
  m.boundary(epoch + 1);  // what the last epoch's reports decide
  return m.fired();
}

}  // namespace layerfreeze
