#include "core/replay.hpp"

namespace layerfreeze {

bool at_or_before(const Time& a, const Time& b) {
  return (a.epoch < 0 || a.epoch <= b.epoch) && (a.step < 0 || a.step <= b.step);
}

void Replay::start(StateSink& sink) {
  cursor_.seek({0, 0});
  const Bitset& f = cursor_.frozen();
  const size_t n = plan_->inventory->params().size();
  try {
    for (size_t i = 0; i < n; ++i) {
      if (f.test(i))
        sink.freeze(static_cast<uint32_t>(i));
      else
        sink.unfreeze(static_cast<uint32_t>(i));
    }
    remask(cursor_.state().params, plan_->slices.params, sink);
  } catch (...) {
    sink.abort();
    throw;
  }
  now_ = {0, 0};
  sink.changed(now_, f);
}

bool Replay::apply(const Time& t, StateSink& sink) {
  const Time before = now_;
  if (!cursor_.seek(t)) return false;
  try {
    sink.freeze_all(cursor_.newly_frozen());
    sink.unfreeze_all(cursor_.newly_unfrozen());
    remask(cursor_.state().params, cursor_.remasked(), sink);
  } catch (...) {
    sink.abort();
    cursor_.seek(before);
    throw;
  }
  sink.changed(t, cursor_.frozen());
  return true;
}

void Replay::remask(const Bitset& frozen, const std::vector<uint32_t>& which, StateSink& sink) {
  const auto& slices = cursor_.state().slices;
  for (uint32_t i : which)
    if (!frozen.test(i)) sink.remask(i, plan_->slices.indices_in(i, slices));
}

bool Replay::move_to(const Time& t, StateSink& sink) {
  if (!cursor_.stale(t)) {
    now_ = t;
    return false;
  }
  bool changed = false;
  if (at_or_before(now_, t)) {
    // Forward: every change point on the way, in order.
    for (;;) {
      auto next = next_point(now_, t);
      if (!next) break;
      changed = apply(*next, sink) || changed;
      now_ = *next;
    }
  }
  changed = apply(t, sink) || changed;
  now_ = t;
  return changed;
}

std::optional<Time> Replay::next_point(const Time& cur, const Time& t) const {
  Time n = plan_->next_change(cur);
  const auto spe = plan_->options.steps_per_epoch;
  std::optional<Time> by_epoch, by_step;
  if (n.epoch >= 0 && n.epoch <= t.epoch)
    by_epoch = Time{n.epoch, spe ? std::max(cur.step, n.epoch * *spe) : cur.step};
  if (n.step >= 0 && n.step <= t.step)
    by_step = Time{spe ? std::max(cur.epoch, n.step / *spe) : cur.epoch, n.step};
  if (by_epoch && !at_or_before(*by_epoch, t)) by_epoch.reset();
  if (by_step && !at_or_before(*by_step, t)) by_step.reset();
  if (by_epoch && by_step) return (spe ? n.epoch * *spe : n.epoch) <= n.step ? by_epoch : by_step;
  return by_epoch ? by_epoch : by_step;
}

void RecordingSink::freeze(uint32_t i) {
  state_.set(i);
  masks_.erase(i);
  pending_.frozen.push_back(i);
}

void RecordingSink::unfreeze(uint32_t i) {
  state_.reset(i);
  pending_.unfrozen.push_back(i);
}

void RecordingSink::remask(uint32_t i, const std::vector<int32_t>& frozen_experts) {
  auto was = masks_.find(i);
  mask_undo_.emplace_back(
      i, was == masks_.end() ? std::nullopt : std::optional<std::vector<int32_t>>(was->second));
  pending_.masks.push_back({i, frozen_experts});
  if (frozen_experts.empty())
    masks_.erase(i);
  else
    masks_[i] = frozen_experts;
}

void RecordingSink::abort() {
  for (uint32_t i : pending_.frozen) state_.reset(i);
  for (uint32_t i : pending_.unfrozen) state_.set(i);
  for (auto it = mask_undo_.rbegin(); it != mask_undo_.rend(); ++it) {
    if (it->second)
      masks_[it->first] = *it->second;
    else
      masks_.erase(it->first);
  }
  mask_undo_.clear();
  pending_ = Change{};
}

void RecordingSink::changed(const Time& at, const Bitset& frozen) {
  (void)frozen;
  pending_.at = at;
  changes_.push_back(std::move(pending_));
  pending_ = Change{};
  mask_undo_.clear();
}

}  // namespace layerfreeze
