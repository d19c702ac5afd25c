// Distributed lint: what a plan means for data-parallel training, checked without any rank
// running. Three hazards, each a warning with its fix:
//  - fsdp-partial-unit: a layer (or the parameters outside the layers, FSDP's root unit) is
//    partly frozen at some time; FSDP cannot flatten mixed requires_grad without use_orig_params.
//  - ddp-trainable-set-changes: the trainable set changes during the run; DDP registers its
//    parameters once, so it must be told (re-wrapped, or find_unused_parameters).
//  - checkpoint-frozen-input: everything before the first trainable layer is frozen, so that
//    layer's input does not require grad; reentrant activation checkpointing then computes no
//    gradient for it.
#pragma once

#include "core/plan.hpp"
#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

/// Appends the warnings for `plan` over its timeline up to `horizon` to `out`.
void distributed_lint(const CompiledPlan& plan, const Time& horizon, std::vector<Diagnostic>& out);

}  // namespace layerfreeze
