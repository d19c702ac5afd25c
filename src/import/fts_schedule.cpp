#include "import/fts_schedule.hpp"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/regex.hpp"
#include "core/safe_text.hpp"
#include "core/yaml_reader.hpp"

namespace layerfreeze {

namespace {

// The keys of a phase FTS reads (finetuning_scheduler's explicit schedule format), and what the
// import does with each.
const std::vector<std::string> kPhaseKeys = {
    "params",          "max_transition_epoch", "lr",
    "new_optimizer",   "new_lr_scheduler",     "use_current_optimizer_pg_lrs",
    "initial_denom_lr"};

struct Phase {
  int64_t depth = 0;
  YAML::Node node;
  std::vector<std::string> regexes;  // RE2, full match
  std::vector<std::string> names;    // with the model: the canonical names the phase thaws
  std::optional<int64_t> max_transition_epoch;
  std::optional<double> lr;
};

// A construct RE2 accepts but reads otherwise than Python's `re` (which FTS uses), or that
// Python refuses: named, so the import never changes a pattern's meaning in silence. "" when
// none. Found by reading both engines' syntax on the same patterns (docs/PEERS.md).
std::string python_re2_difference(const std::string& p) {
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      if (std::string("pPQEzC").find(e) != std::string::npos)
        return std::string("'\\") + e +
               "' is an escape of RE2's that Python's re refuses (FTS could not run it)";
      ++i;
      continue;
    }
    if (in_class) {
      if (c == '[' && i + 1 < p.size() && p[i + 1] == ':')
        return "'[:' inside a character class is a POSIX class to RE2 ([[:alpha:]]) and plain "
               "characters to Python's re";
      if (c == ']') in_class = false;
      continue;
    }
    if (c == '[') {
      in_class = true;
      if (i + 1 < p.size() && p[i + 1] == '^') ++i;
      if (i + 1 < p.size() && p[i + 1] == ']') ++i;  // a leading ']' is a member
      continue;
    }
    if (c == '{' && i + 1 < p.size() && p[i + 1] == ',') {
      size_t j = i + 2;
      while (j < p.size() && std::isdigit(static_cast<unsigned char>(p[j]))) ++j;
      if (j > i + 2 && j < p.size() && p[j] == '}')
        return "'" + p.substr(i, j + 1 - i) + "' is a repetition of 0 to " +
               p.substr(i + 2, j - i - 2) + " to Python's re and literal text to RE2";
    }
  }
  return "";
}

// A YAML scalar that reads back as `s`: single-quoted, or double-quoted with escapes when `s`
// has control characters (a file name with a newline), which single quotes cannot carry.
std::string yaml_quoted(const std::string& s) {
  const bool plain = std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) == 0x7f;
  });
  if (plain) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  }
  std::string out = "\"";
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string regex_list(const std::vector<std::string>& regexes) {
  std::string out = "[";
  for (size_t i = 0; i < regexes.size(); ++i) out += (i ? ", " : "") + yaml_quoted(regexes[i]);
  return out + "]";
}

class Importer {
 public:
  Importer(const std::string& file, const Inventory* model, Diagnostics& d,
           const FtsImportOptions& o)
      : r_(file, d), model_(model), base_max_lr_(o.base_max_lr), es_(o.early_stopping) {
    if (model_)
      for (const auto& p : model_->facts().tensors()) {
        canonical_.insert(p.name);
        canonical_order_.push_back(p.name);
        for (const auto& a : p.aliases) aliases_.push_back(a);
      }
  }

  std::optional<FtsImport> run(const YAML::Node& root) {
    if (!root.IsMap()) {
      r_.error("fts-schedule",
               "an FTS schedule is a map of phase numbers to phases, not " + describe(root), root);
      return std::nullopt;
    }
    std::map<int64_t, Phase> phases;
    const auto entries = r_.entries(root, "the schedule", {});
    for (const auto& e : entries) {
      auto depth = r_.value(e.key_node, "a phase number");
      // FTS reads its schedule with PyYAML and int() of each key: '0' (quoted) is phase 0 too.
      if (depth && depth->kind == Value::Kind::kString && !depth->s.empty() &&
          depth->s.size() < 10 && std::all_of(depth->s.begin(), depth->s.end(), [](char c) {
            return std::isdigit(static_cast<unsigned char>(c));
          }))
        depth = Value::integer(std::stoll(depth->s));
      if (!depth || depth->kind != Value::Kind::kInt || depth->i < 0) {
        r_.error("fts-schedule", "a phase is numbered 0, 1, 2, …, not '" + e.key + "'", e.key_node);
        continue;
      }
      Phase ph;
      ph.depth = depth->i;
      ph.node = e.value;
      phase(ph);
      phases.emplace(ph.depth, std::move(ph));
    }
    int64_t expected = 0;
    for (const auto& [depth, ph] : phases) {
      if (depth != expected) {
        r_.error("fts-schedule",
                 fmt::format("phase {} follows phase {}: FTS phases are numbered without gaps",
                             depth, expected - 1),
                 ph.node);
        break;
      }
      ++expected;
    }
    if (phases.empty()) {
      if (entries.empty()) r_.error("fts-schedule", "the schedule has no phase", root);
      return std::nullopt;
    }
    return write(phases);  // more errors (untimed transitions) are found there; the caller
                           // returns nothing when any was reported
  }

 private:
  void phase(Phase& ph) {
    for (const auto& e : r_.entries(ph.node, fmt::format("phase {}", ph.depth), kPhaseKeys)) {
      if (e.key == "params") {
        params(e.value, ph);
      } else if (e.key == "max_transition_epoch") {
        auto v = r_.value(e.value, "'max_transition_epoch'");
        // FTS's -1 means "no limit"; a trigger past 2^40 epochs is out of range in rules too.
        constexpr int64_t kMaxEpoch = int64_t{1} << 40;
        if (v && v->kind == Value::Kind::kInt && v->i >= -1 && v->i <= kMaxEpoch)
          ph.max_transition_epoch = v->i;
        else if (v)
          r_.error(
              "fts-schedule",
              "'max_transition_epoch' is an epoch number from -1 to " + std::to_string(kMaxEpoch),
              e.value);
      } else if (e.key == "lr") {
        auto v = r_.value(e.value, "'lr'");
        if (v && v->is_number() && v->number() > 0 && std::isfinite(v->number()) &&
            v->number() < 1e6)
          ph.lr = v->number();
        else if (v)
          r_.error("fts-schedule", "'lr' is a positive number below 10^6", e.value);
      } else {
        notes_.push_back(
            fmt::format("phase {}: '{}' is not imported: layerfreeze leaves the optimizer and the "
                        "learning-rate "
                        "scheduler to the trainer",
                        ph.depth, e.key));
      }
    }
  }

  void params(const YAML::Node& n, Phase& ph) {
    if (!n.IsSequence()) {
      r_.error("fts-schedule", "'params' is a list of parameter names or regexes", n);
      return;
    }
    for (const auto& item : n) {
      auto s = r_.string(item, "a parameter name or regex");
      if (!s) continue;
      // FTS: an entry that names a parameter (of named_parameters(): a tied tensor's first name
      // only) is that parameter; anything else is a regex matched at the start of names
      // (re.match), i.e. RE2's full match of `(?:p).*`. Without the model every entry is read
      // as the latter: it matches an exact name too.
      const bool is_name = model_ && canonical_.count(*s) > 0;
      if (!is_name) {
        const std::string why = python_re2_difference(*s);
        if (!why.empty()) {
          r_.error("fts-regex", "'" + *s + "': " + why, item,
                   {"write the pattern so both engines read it alike (`{0,1}` for `{,1}`)"});
          continue;
        }
      }
      std::string re = is_name ? RE2::QuoteMeta(*s) : "(?:" + *s + ").*";
      // The entry alone must be a regex too: `a)|(.*` compiles only once wrapped, and would
      // then match every name.
      RE2 alone(is_name ? re : *s, re2_options());
      RE2 check(alone.ok() ? re : *s, re2_options());
      if (!check.ok()) {
        r_.error("fts-schedule", "'" + *s + "' is not a regex RE2 accepts (" + check.error() + ")",
                 item, {"Python's lookarounds and backreferences have no RE2 equivalent"});
        continue;
      }
      if (model_ && !is_name && !resolve(check, *s, item, ph)) continue;
      if (is_name) ph.names.push_back(*s);
      ph.regexes.push_back(std::move(re));
    }
  }

  // With the model: the canonical names a regex entry selects, as FTS expands it over
  // named_parameters(). An entry that selects none but an alias of a tied tensor is dropped with
  // a note (FTS warns and drops it); one that selects nothing at all is an error (FTS refuses).
  bool resolve(const RE2& re, const std::string& entry, const YAML::Node& item, Phase& ph) {
    std::vector<std::string> hit;
    for (const auto& n : canonical_order_)
      if (RE2::FullMatch(n, re)) hit.push_back(n);
    if (hit.empty()) {
      bool alias = false;
      for (const auto& a : aliases_) alias = alias || RE2::FullMatch(a, re);
      if (alias) {
        notes_.push_back(fmt::format(
            "phase {}: '{}' selects only another name of a tied tensor; FTS matches the first "
            "name of each tensor (named_parameters()) and drops the entry, and so does the import",
            ph.depth, entry));
        return false;
      }
      r_.error("fts-unmatched",
               fmt::format("phase {}: '{}' selects no parameter of the model", ph.depth, entry),
               item, {"FTS refuses a schedule entry that matches nothing"});
      return false;
    }
    ph.names.insert(ph.names.end(), hit.begin(), hit.end());
    return true;
  }

  // The selector of a phase: with the model, the exact names FTS resolved the entries to (so a
  // regex cannot reach a tied tensor through an alias FTS never sees); without it, the entries.
  std::vector<std::string> selector_of(const Phase& ph) const {
    if (!model_) return ph.regexes;
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (const auto& n : ph.names)
      if (seen.insert(n).second) out.push_back(RE2::QuoteMeta(n));
    return out;
  }

  // FTS refuses phases that share a parameter ("Phases are not disjoint").
  void check_disjoint(const std::map<int64_t, Phase>& phases) {
    std::map<std::string, int64_t> owner;
    for (const auto& [depth, ph] : phases)
      for (const auto& n : ph.names) {
        auto [it, fresh] = owner.emplace(n, depth);
        if (!fresh && it->second != depth) {
          r_.error("fts-overlap",
                   fmt::format("phase {} thaws '{}', which phase {} thaws already: FTS refuses "
                               "phases that are not disjoint",
                               depth, n, it->second),
                   ph.node);
          return;
        }
      }
  }

  FtsImport write(const std::map<int64_t, Phase>& phases) {
    FtsImport out;
    out.phases = phases.size();
    if (model_) check_disjoint(phases);
    std::string y;
    y += "# Imported by `layerfreeze import fts` from " + display_text(r_.file()) +
         " (a finetuning-scheduler explicit schedule).\n";
    if (es_)
      y += "# FTS thaws phase 0 at the start and phase k+1 at the epoch after FTSEarlyStopping\n"
           "# sees its monitor plateau, or once phase k's max_transition_epoch is reached, one\n"
           "# phase an epoch at most: metric stages on " +
           es_->monitor + ".\n";
    else
      y += "# FTS (epoch_transitions_only) thaws phase 0 at the start and phase k+1 once phase\n"
           "# k's max_transition_epoch is reached, one phase an epoch at most.\n";
    y += "# What no phase names stays frozen. A name is\n"
         "# matched as itself; any other entry as a regex at the start of names (Python's\n"
         "# re.match), written `(?:regex).*` — with --model, resolved to the names FTS thaws.\n";
    y += "layerfreeze: 1\n";
    y += "description: " + yaml_quoted("finetuning-scheduler schedule " + r_.file()) + "\n";
    y += "rules:\n  - freeze: all\n";
    const Phase& first = phases.begin()->second;
    if (!selector_of(first).empty())
      y += "  - unfreeze: {regex: " + regex_list(selector_of(first)) + "}   # phase 0\n";
    if (first.lr)
      notes_.push_back(fmt::format(
          "phase 0: 'lr' {} is the optimizer's own learning rate: give it to the optimizer",
          Value::real(*first.lr).to_string()));
    if (phases.size() > 1) y += "stages:\n";
    int64_t last_at = -1;
    for (auto it = std::next(phases.begin()); it != phases.end(); ++it) {
      const Phase& prev = std::prev(it)->second;
      const Phase& ph = it->second;
      if (es_) {
        // FTSEarlyStopping ends the phase; its max_transition_epoch (if any) bounds it. One
        // phase an epoch: the stages are one sequence on the monitor (docs/RULES.md).
        const bool bounded = prev.max_transition_epoch && *prev.max_transition_epoch >= 0;
        if (bounded && *prev.max_transition_epoch <= last_at)
          notes_.push_back(fmt::format(
              "phase {}: its max_transition_epoch {} is not after the previous one; FTS runs it "
              "for a single epoch at most, and so does the strategy",
              prev.depth, *prev.max_transition_epoch));
        if (bounded) last_at = std::max(*prev.max_transition_epoch, last_at + 1);
        y += fmt::format("  - name: phase {}\n    at: {{plateau: {}, mode: {}, patience: {}",
                         ph.depth, yaml_quoted(es_->monitor), es_->maximize ? "max" : "min",
                         es_->patience);
        if (es_->min_delta != 0) y += ", min_delta: " + Value::real(es_->min_delta).to_string();
        if (bounded) y += fmt::format(", not_after: {}", *prev.max_transition_epoch);
        y += "}\n";
        phase_body(ph, y);
        continue;
      }
      if (!prev.max_transition_epoch || *prev.max_transition_epoch < 0) {
        not_importable(prev);
        continue;
      }
      // FTS moves one phase per epoch at most: a max_transition_epoch not after the previous
      // transition still gives its phase one epoch.
      const int64_t at = std::max(*prev.max_transition_epoch, last_at + 1);
      if (*prev.max_transition_epoch <= last_at)
        notes_.push_back(
            fmt::format("phase {}: its max_transition_epoch {} is not after the "
                        "previous one; FTS runs it for a single epoch",
                        prev.depth, *prev.max_transition_epoch));
      last_at = at;
      y += fmt::format("  - name: phase {}\n    at: {{epoch: {}}}\n", ph.depth, at);
      phase_body(ph, y);
    }
    if (const Phase& last = phases.rbegin()->second;
        !es_ && (!last.max_transition_epoch || *last.max_transition_epoch < 0))
      not_importable(last);
    if (!model_)
      notes_.push_back(
          "without --model every entry is read as FTS reads one that names no parameter (a regex "
          "at the start of names); with it, entries are resolved to the names FTS would thaw, "
          "and an entry that selects nothing, phases that overlap and entries that name only an "
          "alias of a tied tensor are found");
    if (es_) {
      notes_.push_back(
          "the trainer reports " + es_->monitor +
          " after each validation (Executor::report); a stage fires at the epoch after the "
          "plateau, as FTS transitions at the next epoch's start");
      notes_.push_back(
          "in the last phase FTSEarlyStopping stops training at a plateau; stopping is the "
          "trainer's, not the strategy's");
    } else {
      notes_.push_back(
          "imported as epoch_transitions_only: each phase ends at its max_transition_epoch; "
          "without --epoch-transitions-only, FTSEarlyStopping's plateaus end phases too");
    }
    notes_.push_back(
        "FTS restores the best checkpoint at each transition by default (restore_best) and may "
        "reinitialise the optimizer (new_optimizer): do it in Executor::on_transition");
    out.rules_yaml = std::move(y);
    out.notes = std::move(notes_);
    return out;
  }

  // Under epoch_transitions_only FTS refuses a phase without max_transition_epoch (the last one
  // too: it bounds the run).
  void not_importable(const Phase& ph) {
    r_.error("fts-not-importable",
             fmt::format("phase {} has no max_transition_epoch, which FTS requires of every phase "
                         "under epoch_transitions_only",
                         ph.depth),
             ph.node,
             {"give phase " + std::to_string(ph.depth) +
              " a max_transition_epoch, or import without --epoch-transitions-only (phases then "
              "end at their monitor's plateau, FTS's default)"});
  }

  // A phase's learning rate (its own, else FTS's base_max_lr) and what it thaws.
  void phase_body(const Phase& ph, std::string& y) {
    {
      if (ph.lr) {
        y += "    lr: " + Value::real(*ph.lr).to_string() + "\n";
      } else {
        y += "    lr: " + Value::real(base_max_lr_).to_string() +
             "   # no lr in the schedule: FTS's base_max_lr\n";
        notes_.push_back(
            fmt::format("phase {}: no 'lr', so FTS gives it base_max_lr, {} (--base-max-lr if your "
                        "FinetuningScheduler sets another)",
                        ph.depth, Value::real(base_max_lr_).to_string()));
      }
      if (selector_of(ph).empty())
        y += "    rules: []\n";
      else
        y += "    rules:\n      - unfreeze: {regex: " + regex_list(selector_of(ph)) + "}\n";
    }
  }

  YamlReader r_;
  const Inventory* model_;
  double base_max_lr_;
  std::optional<FtsEarlyStopping> es_;
  std::set<std::string> canonical_;           // the model's named_parameters()
  std::vector<std::string> canonical_order_;  // the same, in the model's order
  std::vector<std::string> aliases_;          // other names of tied tensors
  std::vector<std::string> notes_;
};

}  // namespace

std::optional<FtsImportOptions> read_lightning_config(const std::string& text,
                                                      const std::string& file,
                                                      FtsImportOptions base, Diagnostics& diags) {
  auto root = load_yaml(text, file, "the Lightning config", 64, diags);
  if (!root) return std::nullopt;
  const size_t errors_before = diags.count(Severity::kError);
  YamlReader r(file, diags);
  YAML::Node callbacks;
  if (root->IsMap() && (*root)["trainer"] && (*root)["trainer"].IsMap())
    callbacks = (*root)["trainer"]["callbacks"];
  if (!callbacks || !callbacks.IsSequence()) {
    r.error("lightning-config",
            "no trainer.callbacks list: the FinetuningScheduler and FTSEarlyStopping settings "
            "are read from it",
            *root);
    return std::nullopt;
  }
  bool have_es = false, eto = !base.early_stopping;
  FtsEarlyStopping es = base.early_stopping.value_or(FtsEarlyStopping{});
  auto number = [&](const YAML::Node& n, const std::string& what) -> std::optional<double> {
    auto v = r.value(n, what);
    if (v && v->is_number() && std::isfinite(v->number())) return v->number();
    if (v) r.error("lightning-config", what + " must be a number", n);
    return std::nullopt;
  };
  for (const auto& cb : callbacks) {
    if (!cb.IsMap() || !cb["class_path"] || !cb["class_path"].IsScalar()) continue;
    const std::string cls = cb["class_path"].Scalar();
    const std::string leaf =
        cls.substr(cls.rfind('.') == std::string::npos ? 0 : cls.rfind('.') + 1);
    const YAML::Node args = cb["init_args"];
    const bool is_es = leaf == "FTSEarlyStopping" || leaf == "EarlyStopping";
    if (!is_es && leaf != "FinetuningScheduler") continue;
    if (is_es) have_es = true;
    if (!args || !args.IsMap()) continue;
    for (const auto& kv : args) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
      const YAML::Node& v = kv.second;
      if (is_es && key == "monitor") {
        if (auto m = r.string(v, "'monitor'")) es.monitor = *m;
      } else if (is_es && key == "mode") {
        if (auto m = r.choice(v, "'mode'", {"min", "max"})) es.maximize = *m == "max";
      } else if (is_es && key == "patience") {
        auto x = number(v, "'patience'");
        if (x && (*x < 1 || *x != std::floor(*x) || *x > 1e9))
          r.error("lightning-config", "'patience' must be a whole number of at least 1", v);
        else if (x)
          es.patience = static_cast<int64_t>(*x);
      } else if (is_es && key == "min_delta") {
        // Lightning takes its magnitude (the sign follows the mode).
        if (auto x = number(v, "'min_delta'")) es.min_delta = std::fabs(*x);
      } else if (!is_es && key == "epoch_transitions_only") {
        auto x = r.value(v, "'epoch_transitions_only'");
        if (x && x->kind == Value::Kind::kBool)
          eto = x->b;
        else if (x)
          r.error("lightning-config", "'epoch_transitions_only' is true or false", v);
      } else if (!is_es && key == "base_max_lr") {
        auto x = number(v, "'base_max_lr'");
        if (x && *x > 0)
          base.base_max_lr = *x;
        else if (x)
          r.error("lightning-config", "'base_max_lr' must be positive", v);
      }
    }
  }
  if (diags.count(Severity::kError) > errors_before) return std::nullopt;
  (void)have_es;  // without one FTS adds FTSEarlyStopping with its defaults: the same
  if (eto)
    base.early_stopping.reset();
  else
    base.early_stopping = es;
  return base;
}

std::optional<FtsImport> import_fts_schedule(const std::string& text, const std::string& file,
                                             const Inventory* model, Diagnostics& diags,
                                             const FtsImportOptions& options) {
  auto root = load_yaml(text, file, "the schedule", 64, diags);
  if (!root) return std::nullopt;
  const size_t errors_before = diags.count(Severity::kError);
  Importer im(file, model, diags, options);
  auto out = im.run(*root);
  if (diags.count(Severity::kError) > errors_before) return std::nullopt;
  return out;
}

}  // namespace layerfreeze
