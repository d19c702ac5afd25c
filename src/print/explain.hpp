// Explain and diff: why one parameter is frozen or trainable at a time, and where two plans of
// the same model disagree over time.
#pragma once

#include <string>

#include "core/plan.hpp"

namespace layerfreeze {

/// Every rule that selects `index` at `t`, in order, the one that decides, and the parameter's
/// state over the plan's timeline up to `horizon`.
/// FROZEN, TRAINABLE, or for a partly frozen fused expert tensor "PARTIAL (experts 3, 7 of 8
/// train)".
std::string state_word(const CompiledPlan& plan, const Selection& s, uint32_t i);

std::string explain_text(const CompiledPlan& plan, uint32_t index, const Time& t,
                         const Time& horizon);

/// The times up to `horizon` at which `a` and `b` put some parameter in different states, and
/// which; "" when they agree everywhere. Both plans must be compiled on the same inventory.
std::string diff_text(const CompiledPlan& a, const CompiledPlan& b, const Time& horizon,
                      bool* differ);

}  // namespace layerfreeze
