#!/usr/bin/python3
"""Writes the TorchScript fixtures of the torch tests into the folder given as argument.

Small re-creations with real parameter names, registration order and tying: a GPT-2 (Hugging
Face names, lm_head tied to transformer.wte) and a ResNet with BatchNorm (torchvision names).
Uses Debian's python3-torch (/usr/bin/python3); fails loudly when it is missing.
"""
import os
import sys

import torch
from torch import nn

torch.manual_seed(0)


class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.c_attn(x).chunk(3, dim=-1)
        w = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        return self.c_proj(w @ v)


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(torch.relu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = Attention(d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = Mlp(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, vocab, ctx, d, layers):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.h = nn.ModuleList([Block(d) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, vocab=64, ctx=16, d=16, layers=6):
        super().__init__()
        self.transformer = Transformer(vocab, ctx, d, layers)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as GPT-2

    def forward(self, idx):
        return self.lm_head(self.transformer(idx))

    # The forward in two parts, for layerfreeze::PrefixCache (docs/CACHE.md): the embeddings and
    # blocks [0, k), then blocks k.. with the final norm and the head.
    @torch.jit.export
    def forward_prefix(self, idx: torch.Tensor, k: int) -> torch.Tensor:
        t = self.transformer
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = t.wte(idx) + t.wpe(pos)
        for i, block in enumerate(t.h):
            if i < k:
                x = block(x)
        return x

    @torch.jit.export
    def forward_from(self, x: torch.Tensor, k: int) -> torch.Tensor:
        t = self.transformer
        for i, block in enumerate(t.h):
            if i >= k:
                x = block(x)
        return self.lm_head(t.ln_f(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 8, 1))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16, 1))
        self.layer3 = nn.Sequential(BasicBlock(16, 16, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
    os.makedirs(out, exist_ok=True)
    gpt = GPT2LMHeadModel().eval()
    torch.jit.script(gpt).save(os.path.join(out, "gpt2_tiny.pt"))
    resnet = ResNet().eval()
    torch.jit.script(resnet).save(os.path.join(out, "resnet_tiny.pt"))
    print("wrote", os.path.join(out, "gpt2_tiny.pt"), os.path.join(out, "resnet_tiny.pt"))


if __name__ == "__main__":
    main()
