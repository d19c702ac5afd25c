// Built-in synthetic models: the parameter names, shapes, dtypes, registration order, module
// types and tying of real architectures, without weights. Their totals equal the published
// parameter counts (tests pin them).
#include <functional>
#include <map>

#include "layerfreeze/model_source.hpp"

namespace layerfreeze {

namespace {

class Builder {
 public:
  Builder(std::string source, std::string model_type, std::string dtype) : dtype_(std::move(dtype)) {
    inv_.source = std::move(source);
    inv_.model_type = std::move(model_type);
  }
  void param(const std::string& name, std::vector<int64_t> shape, const std::string& type,
             const std::string& dtype = "") {
    Param p;
    p.name = name;
    p.numel = 1;
    for (auto d : shape) p.numel *= d;
    p.shape = std::move(shape);
    p.dtype = dtype.empty() ? dtype_ : dtype;
    p.module_type = type;
    inv_.add(std::move(p));
  }
  void linear(const std::string& m, int64_t out, int64_t in, bool bias, const std::string& type = "Linear") {
    param(m + ".weight", {out, in}, type);
    if (bias) param(m + ".bias", {out}, type);
  }
  void norm(const std::string& m, int64_t d, const std::string& type, bool bias = true) {
    param(m + ".weight", {d}, type);
    if (bias) param(m + ".bias", {d}, type);
  }
  void tie(const std::string& alias, const std::string& canonical) { inv_.add_alias(canonical, alias); }
  Inventory take() { return std::move(inv_); }

 private:
  Inventory inv_;
  std::string dtype_;
};

Inventory gpt2(const std::string& name, int64_t d, int64_t n_layer) {
  Builder b("builtin:" + name, "GPT2LMHeadModel", "float32");
  const int64_t vocab = 50257, ctx = 1024;
  b.param("transformer.wte.weight", {vocab, d}, "Embedding");
  b.param("transformer.wpe.weight", {ctx, d}, "Embedding");
  for (int64_t i = 0; i < n_layer; ++i) {
    std::string h = "transformer.h." + std::to_string(i);
    b.norm(h + ".ln_1", d, "LayerNorm");
    // GPT-2's Conv1D stores weights as (in, out).
    b.param(h + ".attn.c_attn.weight", {d, 3 * d}, "Conv1D");
    b.param(h + ".attn.c_attn.bias", {3 * d}, "Conv1D");
    b.param(h + ".attn.c_proj.weight", {d, d}, "Conv1D");
    b.param(h + ".attn.c_proj.bias", {d}, "Conv1D");
    b.norm(h + ".ln_2", d, "LayerNorm");
    b.param(h + ".mlp.c_fc.weight", {d, 4 * d}, "Conv1D");
    b.param(h + ".mlp.c_fc.bias", {4 * d}, "Conv1D");
    b.param(h + ".mlp.c_proj.weight", {4 * d, d}, "Conv1D");
    b.param(h + ".mlp.c_proj.bias", {d}, "Conv1D");
  }
  b.norm("transformer.ln_f", d, "LayerNorm");
  b.tie("lm_head.weight", "transformer.wte.weight");
  return b.take();
}

Inventory llama(const std::string& name, int64_t d, int64_t n_layer, int64_t ffn, int64_t kv_dim,
                int64_t vocab) {
  Builder b("builtin:" + name, "LlamaForCausalLM", "float16");
  b.param("model.embed_tokens.weight", {vocab, d}, "Embedding");
  for (int64_t i = 0; i < n_layer; ++i) {
    std::string l = "model.layers." + std::to_string(i);
    b.linear(l + ".self_attn.q_proj", d, d, false);
    b.linear(l + ".self_attn.k_proj", kv_dim, d, false);
    b.linear(l + ".self_attn.v_proj", kv_dim, d, false);
    b.linear(l + ".self_attn.o_proj", d, d, false);
    b.linear(l + ".mlp.gate_proj", ffn, d, false);
    b.linear(l + ".mlp.up_proj", ffn, d, false);
    b.linear(l + ".mlp.down_proj", d, ffn, false);
    b.norm(l + ".input_layernorm", d, "LlamaRMSNorm", false);
    b.norm(l + ".post_attention_layernorm", d, "LlamaRMSNorm", false);
  }
  b.norm("model.norm", d, "LlamaRMSNorm", false);
  b.linear("lm_head", vocab, d, false);
  return b.take();
}

Inventory mixtral_8x7b() {
  Builder b("builtin:mixtral-8x7b", "MixtralForCausalLM", "bfloat16");
  const int64_t d = 4096, vocab = 32000, ffn = 14336, kv = 1024, experts = 8;
  b.param("model.embed_tokens.weight", {vocab, d}, "Embedding");
  for (int i = 0; i < 32; ++i) {
    std::string l = "model.layers." + std::to_string(i);
    b.linear(l + ".self_attn.q_proj", d, d, false);
    b.linear(l + ".self_attn.k_proj", kv, d, false);
    b.linear(l + ".self_attn.v_proj", kv, d, false);
    b.linear(l + ".self_attn.o_proj", d, d, false);
    b.linear(l + ".block_sparse_moe.gate", experts, d, false);
    for (int e = 0; e < experts; ++e) {
      std::string x = l + ".block_sparse_moe.experts." + std::to_string(e);
      b.linear(x + ".w1", ffn, d, false);
      b.linear(x + ".w2", d, ffn, false);
      b.linear(x + ".w3", ffn, d, false);
    }
    b.norm(l + ".input_layernorm", d, "MixtralRMSNorm", false);
    b.norm(l + ".post_attention_layernorm", d, "MixtralRMSNorm", false);
  }
  b.norm("model.norm", d, "MixtralRMSNorm", false);
  b.linear("lm_head", vocab, d, false);
  return b.take();
}

Inventory bert_base() {
  Builder b("builtin:bert-base", "BertModel", "float32");
  const int64_t d = 768, ffn = 3072;
  b.param("embeddings.word_embeddings.weight", {30522, d}, "Embedding");
  b.param("embeddings.position_embeddings.weight", {512, d}, "Embedding");
  b.param("embeddings.token_type_embeddings.weight", {2, d}, "Embedding");
  b.norm("embeddings.LayerNorm", d, "LayerNorm");
  for (int i = 0; i < 12; ++i) {
    std::string l = "encoder.layer." + std::to_string(i);
    b.linear(l + ".attention.self.query", d, d, true);
    b.linear(l + ".attention.self.key", d, d, true);
    b.linear(l + ".attention.self.value", d, d, true);
    b.linear(l + ".attention.output.dense", d, d, true);
    b.norm(l + ".attention.output.LayerNorm", d, "LayerNorm");
    b.linear(l + ".intermediate.dense", ffn, d, true);
    b.linear(l + ".output.dense", d, ffn, true);
    b.norm(l + ".output.LayerNorm", d, "LayerNorm");
  }
  b.linear("pooler.dense", d, d, true);
  return b.take();
}

Inventory t5_small() {
  Builder b("builtin:t5-small", "T5ForConditionalGeneration", "float32");
  const int64_t d = 512, ffn = 2048, inner = 512, buckets = 32, heads = 8;
  b.param("shared.weight", {32128, d}, "Embedding");
  b.tie("encoder.embed_tokens.weight", "shared.weight");
  auto attention = [&](const std::string& m, bool relative_bias) {
    b.linear(m + ".q", inner, d, false);
    b.linear(m + ".k", inner, d, false);
    b.linear(m + ".v", inner, d, false);
    b.linear(m + ".o", d, inner, false);
    if (relative_bias) b.param(m + ".relative_attention_bias.weight", {buckets, heads}, "Embedding");
  };
  for (int i = 0; i < 6; ++i) {
    std::string l = "encoder.block." + std::to_string(i);
    attention(l + ".layer.0.SelfAttention", i == 0);
    b.norm(l + ".layer.0.layer_norm", d, "T5LayerNorm", false);
    b.linear(l + ".layer.1.DenseReluDense.wi", ffn, d, false);
    b.linear(l + ".layer.1.DenseReluDense.wo", d, ffn, false);
    b.norm(l + ".layer.1.layer_norm", d, "T5LayerNorm", false);
  }
  b.norm("encoder.final_layer_norm", d, "T5LayerNorm", false);
  b.tie("decoder.embed_tokens.weight", "shared.weight");
  for (int i = 0; i < 6; ++i) {
    std::string l = "decoder.block." + std::to_string(i);
    attention(l + ".layer.0.SelfAttention", i == 0);
    b.norm(l + ".layer.0.layer_norm", d, "T5LayerNorm", false);
    attention(l + ".layer.1.EncDecAttention", false);
    b.norm(l + ".layer.1.layer_norm", d, "T5LayerNorm", false);
    b.linear(l + ".layer.2.DenseReluDense.wi", ffn, d, false);
    b.linear(l + ".layer.2.DenseReluDense.wo", d, ffn, false);
    b.norm(l + ".layer.2.layer_norm", d, "T5LayerNorm", false);
  }
  b.norm("decoder.final_layer_norm", d, "T5LayerNorm", false);
  b.tie("lm_head.weight", "shared.weight");
  return b.take();
}

Inventory resnet50() {
  Builder b("builtin:resnet50", "ResNet", "float32");
  auto conv = [&](const std::string& m, int64_t out, int64_t in, int64_t k) {
    b.param(m + ".weight", {out, in, k, k}, "Conv2d");
  };
  auto bn = [&](const std::string& m, int64_t c) { b.norm(m, c, "BatchNorm2d"); };
  conv("conv1", 64, 3, 7);
  bn("bn1", 64);
  const int blocks[4] = {3, 4, 6, 3};
  int64_t inplanes = 64;
  for (int s = 0; s < 4; ++s) {
    int64_t planes = 64LL << s;
    for (int i = 0; i < blocks[s]; ++i) {
      std::string m = "layer" + std::to_string(s + 1) + "." + std::to_string(i);
      conv(m + ".conv1", planes, inplanes, 1);
      bn(m + ".bn1", planes);
      conv(m + ".conv2", planes, planes, 3);
      bn(m + ".bn2", planes);
      conv(m + ".conv3", planes * 4, planes, 1);
      bn(m + ".bn3", planes * 4);
      if (i == 0) {
        conv(m + ".downsample.0", planes * 4, inplanes, 1);
        bn(m + ".downsample.1", planes * 4);
      }
      inplanes = planes * 4;
    }
  }
  b.linear("fc", 1000, 2048, true);
  return b.take();
}

// DeepSeek-V3-shaped mixture of experts (fp8 weights with block scales, 256 routed experts and
// one shared expert per MoE layer): 3 dense + 65 MoE layers, 101,333 tensors. For benchmarks.
Inventory moe_100k() {
  Builder b("builtin:moe-100k", "DeepseekV3ForCausalLM", "float8_e4m3fn");
  const int64_t d = 7168, vocab = 129280, dense_ffn = 18432, moe_ffn = 2048, experts = 256;
  auto fp8 = [&](const std::string& m, int64_t out, int64_t in) {
    b.param(m + ".weight", {out, in}, "Linear");
    b.param(m + ".weight_scale_inv", {(out + 127) / 128, (in + 127) / 128}, "Linear", "float32");
  };
  auto rms = [&](const std::string& m, int64_t n) { b.param(m + ".weight", {n}, "DeepseekV3RMSNorm", "bfloat16"); };
  auto mlp = [&](const std::string& m, int64_t ffn) {
    fp8(m + ".gate_proj", ffn, d);
    fp8(m + ".up_proj", ffn, d);
    fp8(m + ".down_proj", d, ffn);
  };
  b.param("model.embed_tokens.weight", {vocab, d}, "Embedding", "bfloat16");
  for (int i = 0; i < 68; ++i) {
    std::string l = "model.layers." + std::to_string(i);
    fp8(l + ".self_attn.q_a_proj", 1536, d);
    rms(l + ".self_attn.q_a_layernorm", 1536);
    fp8(l + ".self_attn.q_b_proj", 128 * 192, 1536);
    fp8(l + ".self_attn.kv_a_proj_with_mqa", 512 + 64, d);
    rms(l + ".self_attn.kv_a_layernorm", 512);
    fp8(l + ".self_attn.kv_b_proj", 128 * 256, 512);
    fp8(l + ".self_attn.o_proj", d, 128 * 128);
    if (i < 3) {
      mlp(l + ".mlp", dense_ffn);
    } else {
      b.param(l + ".mlp.gate.weight", {experts, d}, "MoEGate", "bfloat16");
      b.param(l + ".mlp.gate.e_score_correction_bias", {experts}, "MoEGate", "float32");
      mlp(l + ".mlp.shared_experts", moe_ffn);
      for (int e = 0; e < experts; ++e) mlp(l + ".mlp.experts." + std::to_string(e), moe_ffn);
    }
    rms(l + ".input_layernorm", d);
    rms(l + ".post_attention_layernorm", d);
  }
  rms("model.norm", d);
  b.param("lm_head.weight", {vocab, d}, "Linear", "bfloat16");
  return b.take();
}

const std::map<std::string, std::function<Inventory()>>& registry() {
  static const std::map<std::string, std::function<Inventory()>> r = {
      {"gpt2", [] { return gpt2("gpt2", 768, 12); }},
      {"gpt2-medium", [] { return gpt2("gpt2-medium", 1024, 24); }},
      {"llama2-7b", [] { return llama("llama2-7b", 4096, 32, 11008, 4096, 32000); }},
      {"llama2-70b", [] { return llama("llama2-70b", 8192, 80, 28672, 1024, 32000); }},
      {"bert-base", bert_base},
      {"t5-small", t5_small},
      {"mixtral-8x7b", mixtral_8x7b},
      {"resnet50", resnet50},
      {"moe-100k", moe_100k},
  };
  return r;
}

}  // namespace

std::vector<std::string> builtin_model_names() {
  std::vector<std::string> names;
  for (const auto& [n, _] : registry()) names.push_back(n);
  return names;
}

std::optional<Inventory> builtin_model(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) return std::nullopt;
  return it->second();
}

}  // namespace layerfreeze
