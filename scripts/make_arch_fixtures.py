#!/usr/bin/python3
"""Writes the real-architecture fixtures of issue 4 into the folder given as argument.

For each family: FAMILY.pt (TorchScript), FAMILY.safetensors (one file) and FAMILY-sharded/
(two shards + model.safetensors.index.json). Tied tensors are written once under their first
name, as Hugging Face checkpoints do.

- torchvision architectures, built by torchvision itself (small configurations for the
  transformers): resnet18, resnet50, mobilenet_v3_small, efficientnet_b0, vit, swin, convnext;
- small re-creations with Hugging Face's exact parameter names, registration order and tying:
  gpt2, llama, bert (sequence classification), t5, mixtral, gpt_neox, opt, falcon, bloom, phi,
  gemma, mpt.
Needs Debian's python3-torch and python3-torchvision (/usr/bin/python3); fails loudly without.
"""
import json
import os
import struct
import sys

import torch
import torchvision
from torch import nn
from torchvision.models.convnext import CNBlockConfig

torch.manual_seed(0)
D, FF, VOCAB, CTX = 16, 32, 64, 16


class Box(nn.Module):
    """A container: parameters and submodules, an identity forward (scriptable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Norm(nn.Module):
    def __init__(self, d, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        if bias:
            self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


# Module classes named as the real ones (the type name is what module_type selectors see).
def norm_class(name):
    return type(name, (Norm,), {})


LlamaRMSNorm, MixtralRMSNorm, GemmaRMSNorm, T5LayerNorm = (norm_class(n) for n in
                                                           ["LlamaRMSNorm", "MixtralRMSNorm", "GemmaRMSNorm", "T5LayerNorm"])


class Conv1D(nn.Module):
    def __init__(self, nx, nf):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def box(**children):
    b = Box()
    for k, v in children.items():
        b.add_module(k, v)
    return b


def lin(i, o, bias=True):
    return nn.Linear(i, o, bias=bias)


def stack(n, make):
    return nn.ModuleList([make(i) for i in range(n)])


def named_model(cls_name, **children):
    m = type(cls_name, (Box,), {})()
    for k, v in children.items():
        m.add_module(k, v)
    return m


def gpt2():
    block = lambda i: box(ln_1=nn.LayerNorm(D), attn=box(c_attn=Conv1D(D, 3 * D), c_proj=Conv1D(D, D)),
                          ln_2=nn.LayerNorm(D), mlp=box(c_fc=Conv1D(D, FF), c_proj=Conv1D(FF, D)))
    t = box(wte=nn.Embedding(VOCAB, D), wpe=nn.Embedding(CTX, D), h=stack(4, block), ln_f=nn.LayerNorm(D))
    m = named_model("GPT2LMHeadModel", transformer=t, lm_head=lin(D, VOCAB, False))
    m.lm_head.weight = t.wte.weight
    return m


def llama_like(cls, norm, moe=False, tie=False):
    def mlp():
        if not moe:
            return box(gate_proj=lin(D, FF, False), up_proj=lin(D, FF, False), down_proj=lin(FF, D, False))
        return box(gate=lin(D, 4, False), experts=stack(4, lambda e: box(w1=lin(D, FF, False), w2=lin(FF, D, False),
                                                                        w3=lin(D, FF, False))))
    def layer(i):
        attn = box(q_proj=lin(D, D, False), k_proj=lin(D, D // 2, False), v_proj=lin(D, D // 2, False),
                   o_proj=lin(D, D, False))
        parts = dict(self_attn=attn)
        parts["block_sparse_moe" if moe else "mlp"] = mlp()
        parts.update(input_layernorm=norm(D, False), post_attention_layernorm=norm(D, False))
        return box(**parts)
    model = box(embed_tokens=nn.Embedding(VOCAB, D), layers=stack(4, layer), norm=norm(D, False))
    m = named_model(cls, model=model, lm_head=lin(D, VOCAB, False))
    if tie:
        m.lm_head.weight = model.embed_tokens.weight
    return m


def bert():
    layer = lambda i: box(attention=box(self=box(query=lin(D, D), key=lin(D, D), value=lin(D, D)),
                                        output=box(dense=lin(D, D), LayerNorm=nn.LayerNorm(D))),
                          intermediate=box(dense=lin(D, FF)), output=box(dense=lin(FF, D), LayerNorm=nn.LayerNorm(D)))
    b = box(embeddings=box(word_embeddings=nn.Embedding(VOCAB, D), position_embeddings=nn.Embedding(CTX, D),
                           token_type_embeddings=nn.Embedding(2, D), LayerNorm=nn.LayerNorm(D)),
            encoder=box(layer=stack(4, layer)), pooler=box(dense=lin(D, D)))
    return named_model("BertForSequenceClassification", bert=b, classifier=lin(D, 2))


def t5():
    def attn(rel):
        a = box(q=lin(D, D, False), k=lin(D, D, False), v=lin(D, D, False), o=lin(D, D, False))
        if rel:
            a.add_module("relative_attention_bias", nn.Embedding(8, 2))
        return a
    ff = lambda: box(DenseReluDense=box(wi=lin(D, FF, False), wo=lin(FF, D, False)), layer_norm=T5LayerNorm(D, False))
    enc_block = lambda i: box(layer=nn.ModuleList([box(SelfAttention=attn(i == 0), layer_norm=T5LayerNorm(D, False)), ff()]))
    dec_block = lambda i: box(layer=nn.ModuleList([box(SelfAttention=attn(i == 0), layer_norm=T5LayerNorm(D, False)),
                                                   box(EncDecAttention=attn(False), layer_norm=T5LayerNorm(D, False)), ff()]))
    shared = nn.Embedding(VOCAB, D)
    enc = box(embed_tokens=nn.Embedding(VOCAB, D), block=stack(3, enc_block), final_layer_norm=T5LayerNorm(D, False))
    dec = box(embed_tokens=nn.Embedding(VOCAB, D), block=stack(3, dec_block), final_layer_norm=T5LayerNorm(D, False))
    m = named_model("T5ForConditionalGeneration", shared=shared, encoder=enc, decoder=dec, lm_head=lin(D, VOCAB, False))
    enc.embed_tokens.weight = shared.weight
    dec.embed_tokens.weight = shared.weight
    m.lm_head.weight = shared.weight
    return m


def gpt_neox():
    layer = lambda i: box(input_layernorm=nn.LayerNorm(D), post_attention_layernorm=nn.LayerNorm(D),
                          attention=box(query_key_value=lin(D, 3 * D), dense=lin(D, D)),
                          mlp=box(dense_h_to_4h=lin(D, FF), dense_4h_to_h=lin(FF, D)))
    g = box(embed_in=nn.Embedding(VOCAB, D), layers=stack(4, layer), final_layer_norm=nn.LayerNorm(D))
    return named_model("GPTNeoXForCausalLM", gpt_neox=g, embed_out=lin(D, VOCAB, False))


def opt():
    layer = lambda i: box(self_attn=box(k_proj=lin(D, D), v_proj=lin(D, D), q_proj=lin(D, D), out_proj=lin(D, D)),
                          self_attn_layer_norm=nn.LayerNorm(D), fc1=lin(D, FF), fc2=lin(FF, D),
                          final_layer_norm=nn.LayerNorm(D))
    # OPT registers the decoder's final_layer_norm before its layers.
    dec = box(embed_tokens=nn.Embedding(VOCAB, D), embed_positions=nn.Embedding(CTX + 2, D),
              final_layer_norm=nn.LayerNorm(D), layers=stack(4, layer))
    m = named_model("OPTForCausalLM", model=box(decoder=dec), lm_head=lin(D, VOCAB, False))
    m.lm_head.weight = dec.embed_tokens.weight
    return m


def falcon():
    layer = lambda i: box(self_attention=box(query_key_value=lin(D, 3 * D, False), dense=lin(D, D, False)),
                          mlp=box(dense_h_to_4h=lin(D, FF, False), dense_4h_to_h=lin(FF, D, False)),
                          input_layernorm=nn.LayerNorm(D))
    t = box(word_embeddings=nn.Embedding(VOCAB, D), h=stack(4, layer), ln_f=nn.LayerNorm(D))
    m = named_model("FalconForCausalLM", transformer=t, lm_head=lin(D, VOCAB, False))
    m.lm_head.weight = t.word_embeddings.weight
    return m


def bloom():
    layer = lambda i: box(input_layernorm=nn.LayerNorm(D), self_attention=box(query_key_value=lin(D, 3 * D), dense=lin(D, D)),
                          post_attention_layernorm=nn.LayerNorm(D),
                          mlp=box(dense_h_to_4h=lin(D, FF), dense_4h_to_h=lin(FF, D)))
    t = box(word_embeddings=nn.Embedding(VOCAB, D), word_embeddings_layernorm=nn.LayerNorm(D), h=stack(4, layer),
            ln_f=nn.LayerNorm(D))
    m = named_model("BloomForCausalLM", transformer=t, lm_head=lin(D, VOCAB, False))
    m.lm_head.weight = t.word_embeddings.weight
    return m


def phi():
    layer = lambda i: box(self_attn=box(q_proj=lin(D, D), k_proj=lin(D, D), v_proj=lin(D, D), dense=lin(D, D)),
                          mlp=box(fc1=lin(D, FF), fc2=lin(FF, D)), input_layernorm=nn.LayerNorm(D))
    model = box(embed_tokens=nn.Embedding(VOCAB, D), layers=stack(4, layer), final_layernorm=nn.LayerNorm(D))
    return named_model("PhiForCausalLM", model=model, lm_head=lin(D, VOCAB))


def mpt():
    layer = lambda i: box(norm_1=nn.LayerNorm(D), attn=box(Wqkv=lin(D, 3 * D, False), out_proj=lin(D, D, False)),
                          norm_2=nn.LayerNorm(D), ffn=box(up_proj=lin(D, FF, False), down_proj=lin(FF, D, False)))
    t = box(wte=nn.Embedding(VOCAB, D), blocks=stack(4, layer), norm_f=nn.LayerNorm(D))
    return named_model("MPTForCausalLM", transformer=t)  # MPT's output projection is wte itself


def torchvision_models():
    tv = torchvision.models
    from torchvision.models.swin_transformer import SwinTransformer
    from torchvision.models.vision_transformer import VisionTransformer
    from torchvision.models.convnext import ConvNeXt
    return {
        "resnet18": (tv.resnet18(num_classes=10), torch.randn(1, 3, 32, 32)),
        "resnet50": (tv.resnet50(), torch.randn(1, 3, 32, 32)),
        "mobilenet_v3_small": (tv.mobilenet_v3_small(num_classes=10), torch.randn(1, 3, 32, 32)),
        "efficientnet_b0": (tv.efficientnet_b0(num_classes=10), torch.randn(1, 3, 32, 32)),
        "vit": (VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32,
                                  num_classes=10), torch.randn(1, 3, 32, 32)),
        "swin": (SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4],
                                 num_classes=10), torch.randn(1, 3, 32, 32)),
        "convnext": (ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 2)], num_classes=10),
                     torch.randn(1, 3, 32, 32)),
    }


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def unique_params(model):
    """(name, tensor) in registration order, each tensor once under its first name."""
    return list(model.named_parameters())  # torch 1.13 lists a shared tensor once, first name


def export(out, family, model, example=None):
    model.eval()
    if example is None:
        scripted = torch.jit.script(model)
    else:
        scripted = torch.jit.trace(model, example, check_trace=False)
    scripted.save(os.path.join(out, family + ".pt"))
    params = unique_params(model)
    write_safetensors(os.path.join(out, family + ".safetensors"), params)
    shard_dir = os.path.join(out, family + "-sharded")
    os.makedirs(shard_dir, exist_ok=True)
    half = (len(params) + 1) // 2
    weight_map = {}
    for k, part in enumerate([params[:half], params[half:]]):
        shard = "model-%05d-of-00002.safetensors" % (k + 1)
        write_safetensors(os.path.join(shard_dir, shard), part)
        weight_map.update({name: shard for name, _ in part})
    with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "arch-fixtures"
    os.makedirs(out, exist_ok=True)
    families = {
        "gpt2": gpt2(), "llama": llama_like("LlamaForCausalLM", LlamaRMSNorm),
        "mixtral": llama_like("MixtralForCausalLM", MixtralRMSNorm, moe=True),
        "gemma": llama_like("GemmaForCausalLM", GemmaRMSNorm, tie=True), "bert": bert(), "t5": t5(),
        "gpt_neox": gpt_neox(), "opt": opt(), "falcon": falcon(), "bloom": bloom(), "phi": phi(), "mpt": mpt(),
    }
    for family, model in families.items():
        export(out, family, model)
    for family, (model, example) in torchvision_models().items():
        export(out, family, model, example)
    print("wrote", len(families) + 7, "families to", out)


if __name__ == "__main__":
    main()
