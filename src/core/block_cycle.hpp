// Block cycles (docs/RULES.md, "Block cycles"): block-coordinate descent as a selector. A
// partition of the model into blocks — its layers, groups of layers, each module of each layer,
// or blocks listed as selectors — of which one trains per period of a periodic stage, visited in
// a fixed order (ascending, descending, one block throughout) or in a permutation drawn anew for
// each cycle of as many periods as there are blocks (reshuffle: every block exactly once per
// cycle, BAdam's `random` switch mode). The block of a period is a pure function of (order,
// start, seed, period), so a resumed run and every rank of a job see the same one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/plan.hpp"

namespace layerfreeze {

/// The words `blocks:` and `order:` take.
const std::vector<std::string>& cycle_block_words();    // layers, modules
const std::vector<std::string>& cycle_order_words();    // ascending, descending, reshuffle, fixed
CycleOrder parse_cycle_order(const std::string& word);  // a word of cycle_order_words()
const char* cycle_order_name(CycleOrder o);

/// "'order' is 'random', which is not one of ascending, descending, reshuffle, fixed (did you
/// mean ...?)" and its notes (BAdam's and LLaMA-Factory's names for the same orders).
std::string cycle_word_error(const std::string& what, const std::string& word,
                             const std::vector<std::string>& words, const std::string& or_else);
std::vector<std::string> cycle_word_notes(const std::string& what, const std::string& word);

/// The blocks of cycle `c` in the order a reshuffle visits them: a permutation of 0..n-1 drawn
/// by (seed, c) — splitmix64 and Fisher-Yates, identical on every platform.
std::vector<int32_t> cycle_permutation(int64_t n, uint64_t seed, int64_t c);

/// The block that trains in `period` (>= 0) of a cycle `d` (op kCycle).
int64_t cycle_block(const DynamicSet& d, int64_t period);

/// How a cycle visits its blocks: "ascending from block 0 ('layer 0')", "reshuffled each cycle
/// (seed 3)", "block 2 ('layer 2') throughout".
std::string cycle_order_text(const DynamicSet& d);

/// Periods in one cycle: the number of blocks (1 for a fixed order).
inline int64_t cycle_length(const DynamicSet& d) {
  return d.order == CycleOrder::kFixed ? 1 : static_cast<int64_t>(d.blocks.size());
}

}  // namespace layerfreeze
