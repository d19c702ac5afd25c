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
  std::optional<int64_t> max_transition_epoch;
  std::optional<double> lr;
};

bool name_like(const std::string& s) {
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return false;
  return !s.empty();
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
  Importer(const std::string& file, const Inventory* model, Diagnostics& d, double base_max_lr)
      : r_(file, d), model_(model), base_max_lr_(base_max_lr) {
    if (model_)
      for (const auto& p : model_->params()) {
        names_.insert(p.name);
        for (const auto& a : p.aliases) names_.insert(a);
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
      // FTS: a parameter's name is that parameter; anything else is a regex matched at the
      // start of names (re.match), i.e. RE2's full match of `(?:p).*`.
      const bool is_name = model_ ? names_.count(*s) > 0 : name_like(*s);
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
      ph.regexes.push_back(std::move(re));
    }
  }

  FtsImport write(const std::map<int64_t, Phase>& phases) {
    FtsImport out;
    out.phases = phases.size();
    std::string y;
    y += "# Imported by `layerfreeze import fts` from " + display_text(r_.file()) +
         " (a finetuning-scheduler explicit schedule).\n"
         "# FTS thaws phase 0 at the start and phase k+1 once phase k's max_transition_epoch is\n"
         "# reached; what no phase names stays frozen. A name is matched as itself; any other\n"
         "# entry as a regex at the start of names (Python's re.match), written `(?:regex).*`.\n";
    y += "layerfreeze: 1\n";
    y += "description: " + yaml_quoted("finetuning-scheduler schedule " + r_.file()) + "\n";
    y += "rules:\n  - freeze: all\n";
    const Phase& first = phases.begin()->second;
    if (!first.regexes.empty())
      y += "  - unfreeze: {regex: " + regex_list(first.regexes) + "}   # phase 0\n";
    if (first.lr)
      notes_.push_back(fmt::format(
          "phase 0: 'lr' {} is the optimizer's own learning rate: give it to the optimizer",
          Value::real(*first.lr).to_string()));
    if (phases.size() > 1) y += "stages:\n";
    int64_t last_at = -1;
    for (auto it = std::next(phases.begin()); it != phases.end(); ++it) {
      const Phase& prev = std::prev(it)->second;
      const Phase& ph = it->second;
      if (!prev.max_transition_epoch || *prev.max_transition_epoch < 0) {
        r_.error("fts-not-importable",
                 fmt::format("phase {} ends when FTSEarlyStopping decides (it has no "
                             "max_transition_epoch): when phase {} starts is known only at run "
                             "time, so no plan can say it",
                             prev.depth, ph.depth),
                 prev.node,
                 {"give phase " + std::to_string(prev.depth) +
                  " a max_transition_epoch (FTS's epoch_transitions_only)"});
        continue;
      }
      const int64_t at = std::max(*prev.max_transition_epoch, last_at);
      if (*prev.max_transition_epoch <= last_at)
        notes_.push_back(
            fmt::format("phase {}: its max_transition_epoch {} is not after the "
                        "previous one; FTS runs it for a single epoch",
                        prev.depth, *prev.max_transition_epoch));
      last_at = at;
      y += fmt::format("  - name: phase {}\n    at: {{epoch: {}}}\n", ph.depth, at);
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
      if (ph.regexes.empty())
        y += "    rules: []\n";
      else
        y += "    rules:\n      - unfreeze: {regex: " + regex_list(ph.regexes) + "}\n";
    }
    notes_.push_back(
        "FTS also moves to the next phase early when FTSEarlyStopping triggers (unless "
        "epoch_transitions_only is set); the imported strategy follows max_transition_epoch "
        "alone");
    notes_.push_back(
        "FTS restores the best checkpoint at each transition by default (restore_best); that is "
        "the trainer's checkpointing, not freezing, and is not part of the strategy");
    out.rules_yaml = std::move(y);
    out.notes = std::move(notes_);
    return out;
  }

  YamlReader r_;
  const Inventory* model_;
  double base_max_lr_;
  std::set<std::string> names_;
  std::vector<std::string> notes_;
};

}  // namespace

std::optional<FtsImport> import_fts_schedule(const std::string& text, const std::string& file,
                                             const Inventory* model, Diagnostics& diags,
                                             double base_max_lr) {
  auto root = load_yaml(text, file, "the schedule", 64, diags);
  if (!root) return std::nullopt;
  const size_t errors_before = diags.count(Severity::kError);
  Importer im(file, model, diags, base_max_lr);
  auto out = im.run(*root);
  if (diags.count(Severity::kError) > errors_before) return std::nullopt;
  return out;
}

}  // namespace layerfreeze
