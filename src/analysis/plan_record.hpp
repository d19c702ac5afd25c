// PlanRecord: what the ranks of a distributed job exchange to agree on one plan. Agreeing costs
// one fixed-size digest per rank (the plan and inventory fingerprints); only when the digests
// differ do the ranks exchange full records — the bound rules parameters, the inventory and the
// timeline of frozen sets — so that every rank can print the same precise explanation: which
// ranks differ, and the first parameter, rules parameter or stage where they part.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "core/plan.hpp"

namespace layerfreeze {

/// Fixed-size summary a rank sends first: the two fingerprints, zero-padded ASCII.
constexpr size_t kPlanDigestBytes = 64;
using PlanDigest = std::array<char, kPlanDigestBytes>;
PlanDigest plan_digest(const CompiledPlan& plan);
/// "plan 1a2b… · inventory 3c4d…" for messages.
std::string digest_text(const PlanDigest& d);

/// The full record (JSON text) of `plan` over its timeline up to `horizon`.
std::string plan_record(const CompiledPlan& plan, const Time& horizon);

/// Given one digest per rank: the ranks whose digest differs from rank 0's (empty: all agree).
std::vector<int> disagreeing_ranks(const std::vector<PlanDigest>& digests);

/// Given every rank's record, the explanation of how they differ: a one-line message and notes,
/// the same text on every rank. `records[r]` is rank r's record.
struct Disagreement {
  std::string message;
  std::vector<std::string> notes;
};
Disagreement explain_disagreement(const std::vector<PlanDigest>& digests,
                                  const std::vector<std::string>& records);

}  // namespace layerfreeze
