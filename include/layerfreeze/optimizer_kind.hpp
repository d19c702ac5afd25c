// The optimizers whose memory layerfreeze estimates: state tensors per parameter are 0 (SGD),
// 1 (SGD with momentum: the momentum buffer), 2 (Adam, AdamW: first and second moments).
#pragma once

#include <optional>
#include <string>

namespace layerfreeze {

enum class OptimizerKind { SGD, SGDMomentum, Adam, AdamW };

/// "adamw", "adam", "sgd", "sgd-momentum" (the CLI's --optimizer); nullopt for anything else.
std::optional<OptimizerKind> parse_optimizer(const std::string& s);

}  // namespace layerfreeze
