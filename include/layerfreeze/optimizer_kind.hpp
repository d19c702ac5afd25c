// The optimizers whose memory layerfreeze estimates: state tensors per parameter are 0 (SGD),
// 1 (SGD with momentum: the momentum buffer), 2 (Adam, AdamW: first and second moments).
#pragma once

namespace layerfreeze {

enum class OptimizerKind { SGD, SGDMomentum, Adam, AdamW };

}  // namespace layerfreeze
