#include "print/plan_printer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <sstream>

#include "core/block_cycle.hpp"
#include "core/experts.hpp"
#include "core/format.hpp"
#include "core/layer_discovery.hpp"
#include "print/inventory_printer.hpp"
#include "print/json_writer.hpp"

namespace layerfreeze {

namespace {

std::string model_line(const Inventory& inv, bool shapes) {
  std::ostringstream o;
  o << (inv.facts().model_type.empty() ? "model" : inv.facts().model_type) << " · "
    << describe_layers(inv) << " · " << with_commas(static_cast<int64_t>(inv.params().size()))
    << " tensors";
  if (shapes)
    o << " · " << with_commas(inv.total_numel()) << " parameters ("
      << short_count(inv.total_numel()) << ")";
  else
    o << " · shapes unknown (a sharded index without its shards): counts are of tensors";
  return o.str();
}

// A quantized checkpoint's caveat, or "".
std::string quantized_text(const Inventory& inv) {
  if (inv.facts().quantization.empty()) return "";
  return inv.facts().quantization +
         " — its frozen base weights cannot train as stored; trainable ones need a dequantized "
         "copy or an adapter";
}

std::string count_text(bool shapes, int64_t numel, size_t tensors) {
  if (!shapes) return with_commas(static_cast<int64_t>(tensors)) + " tensors";
  return numel < 1000 ? with_commas(numel) : with_commas(numel) + " (" + short_count(numel) + ")";
}

// Where the backward pass of a multimodal model ends when a tower or connector trains: it runs
// through every trunk layer first (docs/ARCHITECTURES.md), whichever of them train.
std::string multimodal_backward_text(const Inventory& inv, const StageSummary& s) {
  std::string through = inv.num_layers() > 0 ? "runs through every layer (0–" +
                                                   std::to_string(inv.num_layers() - 1) + ") and "
                                             : "runs ";
  if (s.first_trainable_tower) {
    const Tower& t = inv.towers[static_cast<size_t>(*s.first_trainable_tower)];
    std::string into = through + "the connector into the " + t.modality + " tower '" + t.root + "'";
    if (s.first_trainable_tower_layer && !s.tower_input_trainable) {
      const Layer& l = inv.layers[static_cast<size_t>(*s.first_trainable_tower_layer)];
      return into + ", down to " + l.name + " (a trainable tower layer)";
    }
    return into + " (it trains outside its layers too)";
  }
  std::string names;
  for (const auto& c : inv.connectors) names += (names.empty() ? "" : ", ") + c.root;
  return through + "stops at the connector (" + names + " trains); the towers need no gradients";
}

}  // namespace

std::string model_summary_line(const Inventory& inv, bool shapes) {
  return model_line(inv, shapes);
}

std::string backward_short(const Inventory& inv, const StageSummary& st) {
  return st.nothing_trains ? "—"
         : st.first_trainable_tower
             ? inv.towers[static_cast<size_t>(*st.first_trainable_tower)].modality + " tower"
         : st.connector_trainable   ? "connector"
         : st.input_side_trainable  ? "input"
         : st.first_trainable_layer ? "layer " + std::to_string(*st.first_trainable_layer)
                                    : "head";
}

namespace {

std::string backward_text(const Inventory& inv, const StageSummary& s) {
  if (s.nothing_trains) return "nothing trains: no backward pass is needed";
  if (s.first_trainable_tower || s.connector_trainable) return multimodal_backward_text(inv, s);
  if (s.input_side_trainable) return "runs to the input (the embeddings train)";
  if (!s.first_trainable_layer) return "only the head trains: backward stops above the last layer";
  int32_t l = *s.first_trainable_layer;
  if (l == 0) return "runs through every layer (layer 0 trains)";
  return "stops at layer " + std::to_string(l) + " (" + inv.layers[l].name + "); " +
         (l == 1 ? std::string("layer 0 needs") : "layers 0–" + std::to_string(l - 1) + " need") +
         " no gradients";
}

std::string optimizer_desc(OptimizerKind k) {
  int n = optimizer_states(k);
  return std::string(optimizer_name(k)) + " (" + std::to_string(n) +
         (n == 1 ? " state" : " states") + " per parameter)";
}

std::string lowercase_first(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

std::string options_text(const CompiledPlan& plan) {
  const auto& o = plan.options;
  std::ostringstream t;
  t << "batchnorm "
    << (o.batchnorm == Options::BatchNorm::kUnchanged ? "unchanged" : "eval when frozen")
    << (o.frozen_prefix == Options::FrozenPrefix::kEval ? " · frozen prefix in eval mode" : "")
    << " · optimizer state of frozen parameters "
    << (o.optimizer_state == Options::OptimizerState::kDrop ? "dropped" : "kept");
  if (o.unfreeze_lr_scale != 1.0) t << " · unfrozen parameters at lr ×" << o.unfreeze_lr_scale;
  if (o.lr_decay != 1.0) {
    t << " · discriminative lr: head ×1";
    const Inventory& inv = *plan.inventory;
    if (inv.num_layers() > 0) {
      size_t last = inv.layers.back().params.front();
      size_t first = inv.layers.front().params.front();
      t << fmt::format(", layer {} ×{:.3g} … layer 0 ×{:.3g}", inv.num_layers() - 1,
                       plan.lr_scale(last), plan.lr_scale(first));
    }
  }
  if (o.steps_per_epoch) t << " · " << *o.steps_per_epoch << " steps per epoch";
  return t.str();
}

std::string params_text(const CompiledPlan& plan) {
  std::string s;
  for (const auto& [k, v] : plan.params) s += (s.empty() ? "" : ", ") + k + "=" + v.to_string();
  return s.empty() ? "(none)" : s;
}

namespace {

// A change point's frozen prefix as a cache could hold it (docs/CACHE.md): "the output of layer
// 15 (embeddings and layers 0–15 frozen; layer 16 trains) — saves the forward through 3.2B
// parameters: ≈0.43× a full step instead of ≈0.58×; holds until epoch 3 (layer 12 trains);
// 10,000 × 2,048 tokens × 4,096 × 2 B = 167.8 GB". "" when nothing is cacheable.
std::string cache_text(const PlanSummary& sum, const StageSummary& st) {
  const CacheBoundary& c = st.cache;
  if (!st.cache_shown()) return "";
  const Inventory& inv = *sum.plan->inventory;
  // "tower 'visual'", "towers 'a', 'b'" (+ "and the connector"), as the prefix names them.
  std::string towers;
  for (size_t t = 0; t < c.towers.size(); ++t) towers += (t ? ", '" : "'") + c.towers[t] + "'";
  if (!towers.empty())
    towers =
        (c.towers.size() == 1 ? "tower " : "towers ") + towers +
        (c.connectors_in ? (inv.connectors.size() == 1 ? ", the connector" : ", the connectors")
                         : "");
  std::string o = c.tower_only() ? "the output of " + towers + " (frozen whole; " + c.stops +
                                       ": the trunk has nothing cacheable)"
                  : c.layers == 0
                      ? "the embeddings' output" + (towers.empty() ? "" : " with " + towers) +
                            " (" + c.stops + ")"
                      : "the output of layer " + std::to_string(c.layers - 1) + " (embeddings" +
                            (towers.empty() ? "" : ", " + towers) + " and " +
                            (c.layers == 1 ? std::string("layer 0")
                                           : "layers 0–" + std::to_string(c.layers - 1)) +
                            " frozen; " + c.stops + ")";
  if (sum.shapes_known && st.forward_numel > 0 && c.saved_numel() > 0)
    o += " — saves the forward through " + short_count(c.saved_numel()) + " parameters: ≈" +
         fmt::format("{:.2f}", st.cached_step_cost()) + "× a full step instead of ≈" +
         fmt::format("{:.2f}", st.step_cost()) + "×";
  o += c.holds_until ? "; holds until " + time_text(*c.holds_until, sum.plan->uses_steps) + " (" +
                           c.holds_until_why + ")"
                     : "; holds to the horizon";
  if (c.holds_until) {
    // A boundary held less than one pass over the data is filled and never read.
    const auto& spe = sum.plan->options.steps_per_epoch;
    const Time& at = st.point.at;
    if (!sum.plan->uses_steps && c.holds_until->epoch - at.epoch <= 1)
      o += " — one epoch: the cache is filled in it and never read";
    else if (sum.plan->uses_steps && spe && c.holds_until->step - at.step <= *spe)
      o += " — not over one epoch: the cache is filled and never read";
  }
  if (sum.cache_samples > 0 && sum.seq_len > 0) {
    if (c.tower_only())
      o += "; size unknown (a tower's output a sample depends on its images or audio)";
    else if (c.width > 0 && c.value_bytes > 0)
      o += "; " + with_commas(sum.cache_samples) + " × " + with_commas(sum.seq_len) + " tokens × " +
           with_commas(c.width) + " × " + std::to_string(c.value_bytes) +
           " B = " + bytes_text(cache_bytes(c, sum.cache_samples, sum.seq_len));
    else
      o += "; size unknown (" + inv.facts().source + " has no token embedding to give the width)";
  }
  for (const auto& e : c.train_mode_effects) o += "; not a pure function in train mode: " + e;
  return o;
}

// Each block cycle: its blocks, the length of a cycle, the order, and what a block keeps while
// it trains, blocks of one size on one line (docs/RULES.md, "Block cycles").
std::string block_cycles_text(const PlanSummary& sum) {
  std::ostringstream o;
  for (const auto& c : sum.cycles) {
    const int64_t n = static_cast<int64_t>(c.blocks.size());
    const std::string unit =
        c.stage->unit == Trigger::Unit::kEpoch ? std::string("epoch") : std::string("step");
    const int64_t span = c.stage->period * cycle_length(*c.cycle);
    o << "block cycle: " << c.stage->label << " (" << c.rule->prov.where() << ") · "
      << with_commas(n) << (n == 1 ? " block" : " blocks") << ", a cycle is " << with_commas(span)
      << " " << unit << (span == 1 ? "" : "s") << " · " << cycle_order_text(*c.cycle) << "\n";
    for (const auto& g : c.by_size()) {
      std::string names;
      constexpr size_t kNames = 3;
      for (size_t k = 0; k < g.blocks.size() && k < kNames; ++k)
        names += (k ? ", " : "") + c.blocks[g.blocks[k]].name;
      if (g.blocks.size() > kNames)
        names += (g.blocks.size() > kNames + 1 ? ", …, " : ", ") + c.blocks[g.blocks.back()].name;
      o << "  " << g.blocks.size() << (g.blocks.size() == 1 ? " block of " : " blocks of ");
      if (sum.shapes_known)
        o << short_count(g.numel) << " parameters (" << names << "): gradients + optimizer state "
          << bytes_text(g.bytes) << (g.blocks.size() == 1 ? "" : " each") << " ("
          << optimizer_name(sum.optimizer) << ")\n";
      else
        o << c.blocks[g.blocks[0]].tensors << " tensors (" << names << ")\n";
    }
  }
  return o.str();
}

}  // namespace

// The cacheable prefix in a table cell: "layers 0–15 (0.50× a step)", "embeddings", "—".
std::string cache_short(const StageSummary& st) {
  if (!st.cache_shown()) return "—";
  const CacheBoundary& c = st.cache;
  std::string o = c.tower_only()
                      ? (c.towers.size() == 1 ? "tower " + c.towers[0]
                                              : std::to_string(c.towers.size()) + " towers")
                  : c.layers == 0 ? "embeddings"
                  : c.layers == 1 ? "layer 0"
                                  : "layers 0–" + std::to_string(c.layers - 1);
  if (st.forward_numel > 0 && c.saved_numel() > 0)
    o += fmt::format(" ({:.2f}× a step)", st.cached_step_cost());
  return o;
}

std::string plan_text(const PlanSummary& sum) {
  const CompiledPlan& plan = *sum.plan;
  const Inventory& inv = *plan.inventory;
  std::ostringstream o;
  o << "plan: " << plan.name << " (" << plan.origin << ") on " << inv.facts().source << "\n";
  o << "model: " << model_line(inv, sum.shapes_known) << "\n";
  if (!inv.facts().quantization.empty()) o << "quantized: " << quantized_text(inv) << "\n";
  o << "parameters: " << params_text(plan) << "\n";
  o << "optimizer: " << optimizer_desc(sum.optimizer) << " · fingerprint " << plan.fingerprint()
    << "\n";
  o << "executor: " << options_text(plan) << "\n";
  for (const auto& n : inv.facts().source_notes) o << "note: " << n << "\n";
  for (const auto& n : inv.notes) o << "note: " << n << "\n";
  if (!plan.watches.empty()) {
    o << "metric stages (each fires at the epoch boundary after its metric stops improving):\n";
    // A progressive stage on plateaus has a stage per group: the first few, then a count.
    constexpr size_t kShown = 8;
    const auto views = plan.metric_stages();
    for (size_t k = 0; k < views.size() && k < kShown; ++k)
      o << "  " << views[k].watch->label << ": " << views[k].watch->condition() << " · window "
        << views[k].window_text() << " · " << views[k].placement() << "\n";
    if (views.size() > kShown)
      o << "  … and " << views.size() - kShown
        << " more (plan --format json lists every one with its window)\n";
  }
  o << block_cycles_text(sum);
  if (std::any_of(sum.stages.begin(), sum.stages.end(),
                  [](const StageSummary& st) { return st.cache_shown(); }))
    o << (plan.options.frozen_prefix == Options::FrozenPrefix::kEval
              ? "cache: each stage's frozen prefix, whose output a cache could stand in for; "
                "options.frozen_prefix: eval holds its modules (dropout included) in eval mode "
                "(docs/CACHE.md)\n"
              : "cache: each stage's frozen prefix, whose output a cache could stand in for, "
                "assuming it computes the same output for a sample every epoch (no dropout "
                "active in it: a parameter inventory cannot see dropout; options.frozen_prefix: "
                "eval rules it out; docs/CACHE.md)\n");
  for (const auto& st : sum.stages) {
    o << "\n" << time_text(st.point.at, plan.uses_steps);
    if (&st == &sum.stages.front()) o << " (start)";
    for (size_t i = 0; i < st.point.causes.size(); ++i)
      o << (i ? ", " : " · ") << st.point.causes[i];
    o << "\n";
    if (&st != &sum.stages.front())
      o << "  changes: " << st.point.newly_frozen.size() << " frozen, "
        << st.point.newly_unfrozen.size() << " unfrozen"
        << (st.point.remasked.empty()
                ? ""
                : ", " + std::to_string(st.point.remasked.size()) + " masks changed")
        << "\n";
    std::string table =
        layer_status_table(inv, {st.point.frozen, st.point.frozen_slices}, plan.slices, false);
    // Indent the seed-style table under its stage.
    std::istringstream lines(table);
    for (std::string line; std::getline(lines, line);)
      if (line.find("====") == std::string::npos &&
          line.find("LAYER STATUS") == std::string::npos && line.find("----") == std::string::npos)
        o << "  " << line << "\n";
    int64_t total = st.trainable_numel + st.frozen_numel;
    o << "  trainable " << count_text(sum.shapes_known, st.trainable_numel, st.trainable_tensors);
    if (sum.shapes_known) o << " = " << percent(st.trainable_numel, total);
    o << " · frozen " << count_text(sum.shapes_known, st.frozen_numel, st.frozen_tensors);
    if (sum.shapes_known) o << " = " << percent(st.frozen_numel, total);
    o << "\n";
    if (sum.shapes_known) {
      o << "  memory (" << optimizer_name(sum.optimizer) << "): gradients "
        << bytes_text(st.grad_bytes) << " + optimizer state " << bytes_text(st.optimizer_bytes)
        << " = " << bytes_text(st.grad_bytes + st.optimizer_bytes) << "; freezing saves "
        << bytes_text(st.saved_grad_bytes + st.saved_optimizer_bytes) << "\n";
      if (st.masked_tensors)
        o << "  masked: " << st.masked_tensors << " tensor" << (st.masked_tensors == 1 ? "" : "s")
          << " frozen in part (" << short_count(st.masked_frozen_numel)
          << " frozen elements): gradient and optimizer state kept for the trainable slices "
             "only; backward makes each whole gradient ("
          << bytes_text(st.masked_transient_grad_bytes) << "), freed at the optimizer step\n";
    }
    o << "  backward: " << backward_text(inv, st) << "\n";
    if (st.forward_numel > 0 && !st.nothing_trains) {
      o << "  compute: ≈" << fmt::format("{:.2f}", st.step_cost())
        << "× a full fine-tuning step (forward " << short_count(st.forward_numel)
        << ", backward through " << short_count(st.backward_through_numel)
        << ", weight gradients for " << short_count(st.weight_grad_numel)
        << "; 6N per token, by parameter count"
        << (st.extra_forward > 0
                ? ", + " + short_count(st.extra_forward) + " a token forward for attention at " +
                      with_commas(sum.seq_len) + " tokens" +
                      (sum.has_tied_head ? " and the tied output layer" : "") +
                      "; elementwise operations and the optimizer step not counted"
                : std::string())
        << ")\n";
    }
    if (const std::string c = cache_text(sum, st); !c.empty()) o << "  cache: " << c << "\n";
    if (!st.decided_by.empty()) {
      o << "  decided by:\n";
      size_t w = 0;
      for (const auto& t : st.decided_by) w = std::max(w, t.rule->prov.where().size());
      for (const auto& t : st.decided_by)
        o << "    " << t.rule->prov.where() << std::string(w - t.rule->prov.where().size() + 2, ' ')
          << t.rule->prov.text << " — " << t.tensors << (t.tensors == 1 ? " tensor" : " tensors")
          << "\n";
    }
  }
  if (sum.truncated)
    o << "\n(the timeline is cut after " << kMaxPrintedPoints
      << " changes; pass a shorter --epochs or --steps)\n";
  if (const auto warnings = sum.warnings(); !warnings.empty()) {
    o << "\nwarnings:\n";
    for (const Diagnostic* w : warnings) {
      std::string t = format_diagnostic(*w);
      std::istringstream lines(t);
      for (std::string line; std::getline(lines, line);) o << "  " << line << "\n";
    }
  }
  return o.str();
}

namespace {

// The JSON contract of docs/CLI.md (`layerfreeze.plan/1`), one section a method.
class PlanJson {
 public:
  explicit PlanJson(const PlanSummary& sum)
      : sum(sum), plan(*sum.plan), inv(*plan.inventory), shapes(sum.shapes_known) {}

  std::string write() {
    strategy();
    model();
    options();
    params();
    if (!plan.watches.empty()) metric_stages();
    if (!sum.cycles.empty()) block_cycles();
    j.key("stages").begin_array();
    for (const auto& st : sum.stages) stage(st);
    j.end_array();
    tail();
    return j.take();
  }

 private:
  // Present only when the plan has metric-triggered stages (docs/CLI.md).
  void metric_stages() {
    j.key("metric_stages").begin_array();
    for (const auto& v : plan.metric_stages()) {
      const MetricWatch& w = *v.watch;
      j.begin_object()
          .field("label", w.label)
          .field("metric", w.metric)
          .field("mode", w.maximize ? "max" : "min")
          .field("patience", w.patience)
          .field("min_delta", w.min_delta);
      opt_int("not_before",
              w.not_before >= 0 ? std::optional<int64_t>(w.not_before) : std::nullopt);
      opt_int("not_after", w.not_after >= 0 ? std::optional<int64_t>(w.not_after) : std::nullopt);
      j.field("relative", w.relative);
      j.key("window").begin_object().field("earliest", v.window.earliest);
      opt_int("latest",
              v.window.latest >= 0 ? std::optional<int64_t>(v.window.latest) : std::nullopt);
      j.end_object();
      opt_int("at", v.at >= 0 ? std::optional<int64_t>(v.at) : std::nullopt);
      const char* placed = v.placed == MetricStageView::Placed::kFired    ? "plateau"
                           : v.placed == MetricStageView::Placed::kBound  ? "not_after"
                           : v.placed == MetricStageView::Placed::kLatest ? "latest"
                                                                          : "waiting";
      j.field("placed", placed);
      j.key("best");
      v.best ? j.value(*v.best) : j.null();
      j.end_object();
    }
    j.end_array();
  }

  // The frozen prefix a cache could hold (docs/CACHE.md); null when nothing is cacheable.
  void cache(const StageSummary& st) {
    const CacheBoundary& c = st.cache;
    j.key("cache");
    if (!st.cache_shown()) {
      j.null();
      return;
    }
    j.begin_object().field("layers", static_cast<int64_t>(c.layers)).field("stops", c.stops);
    opt_int("prefix_params", shapes ? std::optional<int64_t>(c.prefix_numel) : std::nullopt);
    // A multimodal model's frozen towers: inside the prefix, or (towers_only) cached alone.
    j.key("towers").strings(c.towers);
    j.field("towers_only", c.tower_only()).field("connectors", c.connectors_in);
    opt_int("tower_params", shapes ? std::optional<int64_t>(c.tower_numel) : std::nullopt);
    j.key("cached_step_cost");
    st.forward_numel > 0 ? j.value(st.cached_step_cost()) : j.null();
    j.key("holds_until");
    if (c.holds_until) {
      j.begin_object();
      opt_int("epoch", c.holds_until->epoch >= 0 ? std::optional<int64_t>(c.holds_until->epoch)
                                                 : std::nullopt);
      opt_int("step", c.holds_until->step >= 0 ? std::optional<int64_t>(c.holds_until->step)
                                               : std::nullopt);
      j.field("why", c.holds_until_why).end_object();
    } else {
      j.null();
    }
    opt_int("width", c.width ? std::optional<int64_t>(c.width) : std::nullopt);
    opt_int("value_bytes", c.value_bytes ? std::optional<int64_t>(c.value_bytes) : std::nullopt);
    const bool sized =
        sum.cache_samples > 0 && sum.seq_len > 0 && c.width && c.value_bytes && !c.tower_only();
    opt_int("bytes", sized ? std::optional<int64_t>(cache_bytes(c, sum.cache_samples, sum.seq_len))
                           : std::nullopt);
    j.key("train_mode_effects").strings(c.train_mode_effects);
    j.end_object();
  }

  // Present only when the plan has block cycles (docs/CLI.md): each block with its cost.
  void block_cycles() {
    j.key("block_cycles").begin_array();
    for (const auto& c : sum.cycles) {
      j.begin_object()
          .field("stage", c.stage->label)
          .field("rule", c.rule->prov.where())
          .field("every", c.stage->period)
          .field("unit", c.stage->unit == Trigger::Unit::kEpoch ? "epochs" : "steps")
          .field("order", cycle_order_name(c.cycle->order));
      opt_int("start", c.cycle->order == CycleOrder::kReshuffle
                           ? std::nullopt
                           : std::optional<int64_t>(c.cycle->start));
      j.field("seed", std::to_string(c.cycle->seed))
          .field("cycle_length", cycle_length(*c.cycle) * c.stage->period);
      j.key("blocks").begin_array();
      for (size_t b = 0; b < c.blocks.size(); ++b) {
        const BlockCost& k = c.blocks[b];
        j.begin_object().field("index", static_cast<int64_t>(b)).field("name", k.name);
        j.field("tensors", static_cast<int64_t>(k.tensors));
        opt_int("params", shapes ? std::optional<int64_t>(k.numel) : std::nullopt);
        opt_int("gradient_bytes", shapes ? std::optional<int64_t>(k.grad_bytes) : std::nullopt);
        opt_int("optimizer_bytes",
                shapes ? std::optional<int64_t>(k.optimizer_bytes) : std::nullopt);
        j.end_object();
      }
      j.end_array();
      j.end_object();
    }
    j.end_array();
  }

  void opt_int(const std::string& k, std::optional<int64_t> v) {
    j.key(k);
    v ? j.value(*v) : j.null();
  }
  void value_of(const Value& v) {
    switch (v.kind) {
      case Value::Kind::kNull: j.null(); break;
      case Value::Kind::kBool: j.value(v.b); break;
      case Value::Kind::kInt: j.value(v.i); break;
      case Value::Kind::kFloat: j.value(v.f); break;
      case Value::Kind::kString: j.value(v.s); break;
      case Value::Kind::kList:
        j.begin_array();
        for (const auto& x : v.list) j.value(x.kind == Value::Kind::kString ? x.s : x.to_string());
        j.end_array();
        break;
    }
  }
  void names(const std::vector<uint32_t>& idx) {
    j.begin_array();
    for (uint32_t i : idx) j.value(inv.params()[i].name);
    j.end_array();
  }

  void strategy() {
    j.begin_object();
    j.field("format", "layerfreeze.plan/1");
    j.key("strategy").begin_object().field("name", plan.name).field("origin", plan.origin);
    j.key("params").begin_object();
    for (const auto& [k, v] : plan.params) {
      j.key(k);
      value_of(v);
    }
    j.end_object().end_object();
  }

  void model() {
    j.key("model").begin_object();
    j.field("source", inv.facts().source)
        .field("type", inv.facts().model_type)
        .field("num_layers", inv.num_layers());
    opt_int("numel", shapes ? std::optional<int64_t>(inv.total_numel()) : std::nullopt);
    j.field("parameters", inv.params().size()).field("shapes_known", shapes);
    if (!inv.facts().quantization.empty()) j.field("quantization", inv.facts().quantization);
    if (!inv.facts().config.empty()) j.field("config", inv.facts().config);
    if (!inv.facts().family.empty()) j.field("family", inv.facts().family);
    j.field("non_parameters", inv.facts().non_params.size());
    structure_json(j, inv);
    j.key("layers").begin_array();
    for (const auto& l : inv.layers) {
      j.begin_object().field("name", l.name);
      opt_int("numel", shapes ? std::optional<int64_t>(l.numel) : std::nullopt);
      j.field("tensors", l.params.size());
      const int32_t tower = inv.stacks[static_cast<size_t>(l.stack)].tower;
      opt_int("tower", tower >= 0 ? std::optional<int64_t>(tower) : std::nullopt);
      j.end_object();
    }
    j.end_array().end_object();
  }

  void options() {
    const auto& opt = plan.options;
    j.key("options").begin_object();
    j.field("batchnorm",
            opt.batchnorm == Options::BatchNorm::kUnchanged ? "unchanged" : "eval_when_frozen");
    j.field("frozen_prefix",
            opt.frozen_prefix == Options::FrozenPrefix::kEval ? "eval" : "unchanged");
    j.field("optimizer_state",
            opt.optimizer_state == Options::OptimizerState::kDrop ? "drop" : "keep");
    j.field("unfreeze_lr_scale", opt.unfreeze_lr_scale).field("lr_decay", opt.lr_decay);
    opt_int("steps_per_epoch", opt.steps_per_epoch);
    j.end_object();
    j.field("optimizer", optimizer_name(sum.optimizer));
    if (sum.cache_samples > 0 && sum.seq_len > 0)
      j.key("cache_dataset")
          .begin_object()
          .field("samples", sum.cache_samples)
          .field("seq_len", sum.seq_len)
          .end_object();
  }

  void params() {
    const auto& opt = plan.options;
    j.key("params").begin_array();
    for (size_t i = 0; i < inv.params().size(); ++i) {
      const Param& p = inv.params()[i];
      j.begin_object().field("name", p.name);
      opt_int("numel", p.shape_known ? std::optional<int64_t>(p.numel) : std::nullopt);
      j.field("role", role_name(p.role));
      opt_int("layer", p.layer >= 0 ? std::optional<int64_t>(p.layer) : std::nullopt);
      if (p.part >= 0) j.field(p.role == Role::kTower ? "tower" : "connector", p.part);
      j.key("aliases").strings(p.aliases);
      j.key("shape");
      p.shape_known ? j.ints(p.shape) : j.null();
      j.key("dtype");
      p.dtype.empty() ? j.null() : j.value(p.dtype);
      if (opt.lr_decay != 1.0) j.field("lr_scale", plan.lr_scale(i));
      j.end_object();
    }
    j.end_array();
  }

  void stage(const StageSummary& st) {
    j.begin_object();
    j.key("at").begin_object();
    opt_int("epoch",
            st.point.at.epoch >= 0 ? std::optional<int64_t>(st.point.at.epoch) : std::nullopt);
    opt_int("step",
            st.point.at.step >= 0 ? std::optional<int64_t>(st.point.at.step) : std::nullopt);
    j.end_object();
    j.key("causes").strings(st.point.causes);
    std::vector<uint32_t> frozen;
    st.point.frozen.for_each([&](size_t i) { frozen.push_back(static_cast<uint32_t>(i)); });
    j.key("frozen");
    names(frozen);
    j.key("changed").begin_object();
    j.key("frozen");
    names(st.point.newly_frozen);
    j.key("unfrozen");
    names(st.point.newly_unfrozen);
    if (!plan.slices.empty()) {
      j.key("masks");
      names(st.point.remasked);
    }
    j.end_object();
    if (!plan.slices.empty()) {
      // Tensors frozen in part: a fused tensor's frozen experts (docs/EXPERTS.md), a row-cut
      // tensor's rows and the rows that train (docs/ROWS.md).
      j.key("masked").begin_array();
      for (uint32_t i : plan.slices.params) {
        if (st.point.frozen.test(i)) continue;
        auto frozen_slices = plan.slices.indices_in(i, st.point.frozen_slices);
        if (frozen_slices.empty()) continue;
        j.begin_object().field("name", inv.params()[i].name);
        if (plan.slices.rows(i)) {
          const auto k = static_cast<size_t>(plan.slices.slot[i]);
          j.field("rows", plan.slices.slices_of(k))
              .field("trainable_rows",
                     index_ranges(plan.slices.indices_in(i, st.point.frozen_slices, false)));
          if (!inv.params()[i].aliases.empty()) {
            j.key("aliases").begin_array();
            for (const auto& a : inv.params()[i].aliases) j.value(a);
            j.end_array();
          }
        } else {
          std::vector<int64_t> e(frozen_slices.begin(), frozen_slices.end());
          j.key("frozen_experts").ints(e);
        }
        j.end_object();
      }
      j.end_array();
    }
    opt_int("trainable_numel", shapes ? std::optional<int64_t>(st.trainable_numel) : std::nullopt);
    opt_int("frozen_numel", shapes ? std::optional<int64_t>(st.frozen_numel) : std::nullopt);
    j.field("trainable_tensors", st.trainable_tensors).field("frozen_tensors", st.frozen_tensors);
    j.key("memory");
    if (shapes) {
      j.begin_object()
          .field("optimizer", optimizer_name(sum.optimizer))
          .field("gradient_bytes", st.grad_bytes)
          .field("optimizer_bytes", st.optimizer_bytes)
          .field("saved_gradient_bytes", st.saved_grad_bytes)
          .field("saved_optimizer_bytes", st.saved_optimizer_bytes);
      if (!plan.slices.empty())
        j.field("masked_tensors", st.masked_tensors)
            .field("masked_frozen_numel", st.masked_frozen_numel)
            .field("masked_transient_gradient_bytes", st.masked_transient_grad_bytes);
      j.end_object();
    } else {
      j.null();
    }
    opt_int("first_trainable_layer", st.first_trainable_layer
                                         ? std::optional<int64_t>(*st.first_trainable_layer)
                                         : std::nullopt);
    // Through every trunk layer to its input: the embeddings, a connector or a tower trains.
    j.field("backward_to_input",
            st.input_side_trainable || st.connector_trainable || st.first_trainable_tower);
    j.field("backward", backward_text(inv, st));
    j.key("step_cost");
    st.forward_numel > 0 ? j.value(st.step_cost()) : j.null();
    // Its terms, in parameters' forward units (2 FLOPs a token); the extra_ ones need --seq-len.
    j.key("compute")
        .begin_object()
        .field("forward", st.forward_numel)
        .field("backward_through", st.backward_through_numel)
        .field("weight_gradients", st.weight_grad_numel)
        .field("extra_forward", st.extra_forward)
        .field("extra_backward", st.extra_backward)
        .field("extra_weight", st.extra_weight)
        .end_object();
    cache(st);
    j.key("decided_by").begin_array();
    for (const auto& d : st.decided_by)
      j.begin_object()
          .field("rule", d.rule->prov.text)
          .field("where", d.rule->prov.where())
          .field("action", action_name(d.rule->action))
          .field("tensors", d.tensors)
          .end_object();
    j.end_array();
    j.end_object();
  }

  void tail() {
    j.key("warnings").begin_array();
    for (const Diagnostic* w : sum.warnings()) {
      std::string t = format_diagnostic(*w);
      if (!t.empty() && t.back() == '\n') t.pop_back();
      j.value(t);
    }
    j.end_array();
    if (sum.distributed) {
      // The same warnings as above, structured, for tools that act on them.
      j.key("distributed").begin_array();
      for (const auto& w : *sum.distributed) {
        j.begin_object();
        j.field("code", w.code);
        j.field("message", w.message);
        j.key("notes").strings(w.notes);
        j.end_object();
      }
      j.end_array();
    }
    std::vector<std::string> notes = inv.facts().source_notes;
    notes.insert(notes.end(), inv.notes.begin(), inv.notes.end());
    j.key("notes").strings(notes);
    j.field("truncated", sum.truncated);
    j.field("fingerprint", plan.fingerprint());
    j.end_object();
  }

  const PlanSummary& sum;
  const CompiledPlan& plan;
  const Inventory& inv;
  const bool shapes;
  JsonWriter j;
};

}  // namespace

std::string plan_json(const PlanSummary& sum) { return PlanJson(sum).write(); }

std::string plan_markdown(const PlanSummary& sum, const std::string& svg_path) {
  const CompiledPlan& plan = *sum.plan;
  const Inventory& inv = *plan.inventory;
  std::ostringstream o;
  o << "### layerfreeze plan: `" << plan.name << "` on `" << inv.facts().source << "`\n\n";
  if (!svg_path.empty()) o << "![the plan as a picture](" << svg_path << ")\n\n";
  o << "| | |\n|---|---|\n";
  o << "| strategy | `" << plan.origin << "` |\n";
  o << "| parameters | " << params_text(plan) << " |\n";
  o << "| model | " << model_line(inv, sum.shapes_known) << " |\n";
  if (!inv.facts().quantization.empty()) o << "| quantized | " << quantized_text(inv) << " |\n";
  o << "| optimizer | " << optimizer_desc(sum.optimizer) << " |\n";
  o << "| fingerprint | `" << plan.fingerprint() << "` |\n\n";
  // A multimodal model gets a column per tower and one for the connectors, in data-flow order.
  const size_t extra = inv.towers.size() + (inv.connectors.empty() ? 0 : 1);
  o << "| at | ";
  for (size_t g = 0; g < extra && !sum.stages.empty(); ++g)
    o << lowercase_first(sum.stages[0].groups[g].label) << " | ";
  o << "layers | embeddings | head | trainable | frozen | grads + optimizer | backward from | "
       "cacheable prefix | change |\n";
  o << "|---|" << repeat("---|", extra) << "---|---|---|---:|---:|---:|---|---|---|\n";
  for (const auto& st : sum.stages) {
    std::string layers;
    for (const auto& r : st.runs) {
      std::string span = r.first == r.last ? std::to_string(r.first)
                                           : std::to_string(r.first) + "–" + std::to_string(r.last);
      layers += (layers.empty() ? "" : ", ") + span + " " + group_state_name(r.state) +
                (r.detail.empty() ? "" : " (" + r.detail + ")");
    }
    int64_t total = st.trainable_numel + st.frozen_numel;
    std::string backward = backward_short(inv, st);
    std::string change = "start";
    if (&st != &sum.stages.front()) {
      change.clear();
      if (!st.point.newly_frozen.empty())
        change = std::to_string(st.point.newly_frozen.size()) + " frozen";
      if (!st.point.newly_unfrozen.empty())
        change += (change.empty() ? "" : ", ") + std::to_string(st.point.newly_unfrozen.size()) +
                  " unfrozen";
    }
    o << "| " << time_text(st.point.at, plan.uses_steps) << " | ";
    for (size_t g = 0; g < extra; ++g) o << group_state_name(st.groups[g].state) << " | ";
    o << (layers.empty() ? "—" : layers) << " | " << group_state_name(st.groups[extra].state)
      << " | " << group_state_name(st.groups[extra + 1].state) << " | ";
    if (sum.shapes_known)
      o << short_count(st.trainable_numel) << " (" << percent(st.trainable_numel, total) << ") | "
        << short_count(st.frozen_numel) << " | " << bytes_text(st.grad_bytes + st.optimizer_bytes);
    else
      o << st.trainable_tensors << " tensors | " << st.frozen_tensors << " tensors | —";
    o << " | " << backward << " | " << cache_short(st) << " | " << change << " |\n";
  }
  if (!plan.watches.empty()) {
    o << "\n**Metric stages** (each fires at the epoch boundary after its metric stops "
         "improving)\n\n| stage | condition | window | here |\n|---|---|---|---|\n";
    for (const auto& v : plan.metric_stages())
      o << "| " << v.watch->label << " | " << v.watch->condition() << " | " << v.window_text()
        << " | " << v.placement() << " |\n";
  }
  if (!sum.cycles.empty()) {
    o << "\n**Block cycles**\n\n```text\n" << block_cycles_text(sum) << "```\n";
  }
  if (const auto warnings = sum.warnings(); !warnings.empty()) {
    o << "\n**Warnings**\n\n";
    for (const Diagnostic* w : warnings) {
      o << "- ";
      if (w->loc.known()) o << "`" << w->loc.file << ":" << w->loc.line << "` ";
      o << w->message << " (" << w->code << ")";
      for (const auto& n : w->notes) o << "; " << n;
      o << "\n";
    }
  }
  return o.str();
}

}  // namespace layerfreeze
