// Tensors a checkpoint stores that are not trainable parameters: quantization metadata and
// buffers. They are moved out of the parameter list into ModelFacts::non_params, and a quantized
// weight stored under another name (GPTQ `qweight`, MXFP4 `_blocks`) is renamed to its logical
// parameter. The patterns are listed in docs/FAMILIES.md ("Non-parameters").
#pragma once

#include "layerfreeze/inventory.hpp"

namespace layerfreeze {

/// Separates the non-parameters of a header-only inventory (safetensors file or index). Sets
/// `inv.quantization` when quantization metadata is found and the config did not say. Weights
/// whose stored shape is a packed form lose their shape (a config's family gives it back).
void separate_non_parameters(ModelFacts& inv);

}  // namespace layerfreeze
