// Metric triggers: stages that fire when a reported metric stops improving (docs/RULES.md,
// "Metric triggers"). The compiled definition of each (MetricWatch), the window it may fire in,
// and the monitor that decides, at each epoch boundary, from the values a trainer reports — the
// same arithmetic as Lightning's EarlyStopping, which the finetuning-scheduler's phases use.
//
// Stages that watch the same metric form one sequence, in file order (a progressive stage's
// groups in their order): the second fires at the metric's next plateau after the first fired,
// never in the same epoch. A sequence keeps one best value across its stages; the count of
// reports without improvement starts again at each firing. A stage fires at the first epoch
// boundary at or after `not_before` at which a plateau was seen, and at `not_after` at the latest.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

/// A name a trainer reports: a letter or '_', then up to 127 letters, digits, '_', '.', '/', ':'
/// or '-' ("val_loss", "val/acc").
bool is_metric_name(const std::string& name);

/// A metric-triggered stage, evaluated.
struct MetricWatch {
  uint32_t id = 0;  // its place among the plan's metric stages, in file order
  std::string metric;
  std::string label;  // the stage's label ("stage 'thaw'", "progressive group 2/12")
  bool maximize = false;
  int64_t patience = 3;
  double min_delta = 0;
  // Epochs; -1: none. `relative`: counted from the previous firing of the sequence, else from
  // `anchor` (a progressive stage's start).
  int64_t not_before = -1, not_after = -1;
  bool relative = false;
  int64_t anchor = 0;
  uint32_t sequence = 0;  // index of its metric's sequence
  SourceLoc loc;

  /// "val_loss plateau (min, patience 2, min_delta 0.01), not after epoch 6".
  std::string condition() const;
};

/// A metric stage that fired: at the start of `epoch`, because a plateau was seen (or its
/// `not_after` bound came).
struct Firing {
  uint32_t id = 0;
  int64_t epoch = 0;
  bool plateau = true;
  std::optional<double> best;  // the metric's best value when it fired (none: nothing reported)
};

/// When a watch may fire given the previous firing of its sequence (-1: none): from `earliest`
/// to `latest` (-1: no bound).
struct FireWindow {
  int64_t earliest = 0;
  int64_t latest = -1;
};
FireWindow fire_window(const MetricWatch& w, int64_t previous);

/// Where each watch (by id) sits on the timeline given what fired: its firing epoch, else the
/// latest it may fire (its sequence's earlier stages placed first), else -1 (it waits for a
/// plateau that may never come).
std::vector<int64_t> watch_positions(const std::vector<MetricWatch>& watches,
                                     const std::vector<Firing>& fired);

/// Each watch's window as a dry run shows it, with nothing fired: earliest and latest firing.
std::vector<FireWindow> watch_windows(const std::vector<MetricWatch>& watches);

/// The monitor: the values reported, the plateau each sequence is waiting for, and what fired.
/// Deterministic: the same reports in the same epochs give the same firings, on any machine
/// (the decision is IEEE double comparisons only), so every rank that reports the same value
/// decides the same, and a state saved and restored continues exactly.
class TriggerMonitor {
 public:
  TriggerMonitor() = default;
  explicit TriggerMonitor(std::vector<MetricWatch> watches);

  enum class Report { kCounted, kUnwatched, kNotFinite };
  /// One evaluation of `metric` (a validation's result). A non-finite value counts as no
  /// improvement and is reported as kNotFinite; a metric no stage watches changes nothing.
  Report report(const std::string& metric, double value);
  /// The start of `epoch`: what fires now — at most one stage per sequence at `epoch` itself;
  /// after a jump of time, what the boundaries skipped would have fired, at their epochs (a
  /// plateau reported before at the first boundary its window allowed, a `not_after` at its
  /// bound). Each boundary is evaluated once: an epoch at or before the last one evaluated fires
  /// nothing (an epoch begun again after a restore).
  std::vector<Firing> boundary(int64_t epoch);
  int64_t last_boundary() const { return last_boundary_; }

  /// Takes a plateau of `metric` as seen now (a dry run's assumption); false when no stage on it
  /// waits.
  bool plateau(const std::string& metric);
  /// Whether a plateau was seen that has not fired its stage yet.
  bool pending_any() const;
  /// The first boundary at which such a plateau fires its stage (-1: none).
  int64_t next_pending() const;

  const std::vector<Firing>& fired() const { return fired_; }
  const std::vector<MetricWatch>& watches() const { return watches_; }
  bool empty() const { return watches_.empty(); }
  /// The metrics watched, sorted.
  std::vector<std::string> metrics() const;

  /// The state as text without spaces inside a token: "b=EPOCH" (the last boundary), then
  /// "f=ID@EPOCH[p|b][:BEST]" per firing (plateau or bound, and the best value it fired on),
  /// then "s=SEQ:BEST:WAIT:PENDING" per sequence (BEST in hexadecimal floating point, exact).
  std::string to_string() const;
  /// Restores a state written by to_string for the same watches; returns an error message
  /// (empty when it restored).
  std::string restore(const std::string& text);

 private:
  struct Sequence {
    std::string metric;
    std::vector<uint32_t> watches;  // ids, in order
    size_t next = 0;                // the armed one
    double best = 0;                // set on the first report
    bool has_best = false;
    int64_t wait = 0;
    bool pending = false;  // a plateau seen, to fire at the next boundary its window allows
    int64_t last_fire = -1;
  };
  bool improved(const Sequence& s, const MetricWatch& w, double v) const;

  std::vector<MetricWatch> watches_;
  std::vector<Sequence> sequences_;
  std::vector<Firing> fired_;
  int64_t last_boundary_ = -1;
};

/// A recorded metric history: "EPOCH METRIC VALUE" per line ('#' comments), the values a run
/// reported in each epoch, in order — what `layerfreeze plan --metrics` replays.
struct MetricRecord {
  int64_t epoch = 0;
  std::string metric;
  double value = 0;
};
/// Parses a history (bounded: at most 1,000,000 records); adds errors to `diags` (file:line:col)
/// and returns nullopt on any.
std::optional<std::vector<MetricRecord>> parse_metric_history(const std::string& text,
                                                              const std::string& file,
                                                              Diagnostics& diags);
/// What a dry run assumes: "val_loss: plateau at epoch 3" or "val_loss: plateaus at epochs 3, 7"
/// — the boundaries at which the metric is taken to have stopped improving.
struct PlateauAssumption {
  std::string metric;
  std::vector<int64_t> epochs;  // ascending
};
std::optional<PlateauAssumption> parse_assumption(const std::string& text, Diagnostics& diags);
/// What those plateaus fire (a stage whose window has not opened yet fires when it opens).
/// Adds a warning for an assumed plateau no stage waits for, an error for an unwatched metric.
std::vector<Firing> assume_plateaus(const std::vector<MetricWatch>& watches,
                                    const std::vector<PlateauAssumption>& assumed,
                                    Diagnostics& diags);

/// What a run that reported `history` would fire: each epoch's boundary, then its reports.
std::vector<Firing> replay_history(const std::vector<MetricWatch>& watches,
                                   const std::vector<MetricRecord>& history);

}  // namespace layerfreeze
