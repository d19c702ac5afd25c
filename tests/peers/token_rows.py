#!/usr/bin/env python3
"""PEFT's trainable tokens side by side with layerfreeze's `{tokens: ...}` (docs/ROWS.md).

One small transformers model (a Llama with a 64-token vocabulary, tied and untied head), the same
initial weights, the same batches, AdamW with weight decay: PEFT trains the rows of four new
tokens (TrainableTokensConfig, the mechanism behind LoraConfig's trainable_token_indices); the
Executor trains the same rows through `{tokens: "60:"}`, its optimizer holding compact tensors.

    .venv/bin/python tests/peers/token_rows.py TOKEN_ROWS

TOKEN_ROWS is layerfreeze_token_rows (tests/peers/token_rows_replay.cpp). Checked: the rows that
change are the same in both runs and close in value (two implementations of one computation:
summation orders differ), every other row of every tensor is bit-identical to the initial
weights in both, and layerfreeze keeps no more optimizer state than PEFT. Exit 0 when all hold.
"""
import copy
import json
import os
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import TrainableTokensConfig, get_peft_model  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()

VOCAB, NEW = 64, [60, 61, 62, 63]
LR, WD, STEPS = 1e-2, 0.1, 8


class Tiny(LlamaForCausalLM):
    """logits = model(ids): a forward TorchScript can trace and the Executor can drive."""

    def forward(self, ids):  # noqa: D401
        return super().forward(input_ids=ids, use_cache=False).logits


def make_model(tied):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                      tie_word_embeddings=tied)
    cfg._attn_implementation = "eager"
    return Tiny(cfg).float()


def batches():
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS):
        ids = torch.randint(0, VOCAB, (4, 12), generator=g)
        ids[:, ::3] = torch.tensor(NEW)[torch.randint(0, 4, (4, 4), generator=g)]  # new tokens
        out.append(ids)
    return out


def loss_of(logits, ids):
    v = logits.size(-1)
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))


def run_peft(model, tied):
    targets = ["embed_tokens"] if tied else ["embed_tokens", "lm_head"]
    peft = get_peft_model(model, TrainableTokensConfig(target_modules=targets, token_indices=NEW))
    params = [p for p in peft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD)
    peft.train()
    for ids in batches():
        opt.zero_grad()
        loss_of(peft.base_model.model(ids), ids).backward()
        opt.step()
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                if torch.is_tensor(t) and t.dim() > 0)
    merged = peft.merge_and_unload()
    return {n: p.detach().clone() for n, p in merged.named_parameters()}, state


def run_ours(tool, model, tied, tmp):
    path = os.path.join(tmp, f"tiny_{tied}.pt")
    torch.jit.trace(model.eval(), (batches()[0],), strict=False).save(path)
    rules = os.path.join(tmp, "rows.yaml")
    with open(rules, "w") as f:
        f.write('rules:\n  - freeze: all\n  - unfreeze: {tokens: "60:"}\n')
    data = os.path.join(tmp, "batches.txt")
    with open(data, "w") as f:
        for ids in batches():
            f.write(f"{ids.size(0)} {ids.size(1)} " + " ".join(map(str, ids.flatten().tolist())))
            f.write("\n")
    out = os.path.join(tmp, "ours.bin")
    run = subprocess.run([tool, path, rules, data, str(LR), str(WD), out], capture_output=True,
                         text=True)
    if run.returncode != 0:
        sys.exit(f"layerfreeze_token_rows failed:\n{run.stderr}")
    weights = {}
    with open(out, "rb") as f:
        while True:
            head = f.readline()
            if not head:
                break
            name, n = head.decode().split()
            weights[name] = torch.from_numpy(np.frombuffer(f.read(int(n) * 4), dtype="<f4").copy())
    return weights, json.loads(run.stdout)


def compare(tied, tool, tmp):
    model = make_model(tied)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    theirs, their_state = run_peft(copy.deepcopy(model), tied)
    ours, kept = run_ours(tool, copy.deepcopy(model), tied, tmp)
    label = "tied" if tied else "untied"
    bad = []
    worst = 0.0
    for name, w0 in init.items():
        a, b = theirs[name].reshape(w0.shape), ours[name].reshape(w0.shape)
        rows = w0.shape[0]
        moved_a = [r for r in range(rows) if not torch.equal(a[r], w0[r])]
        moved_b = [r for r in range(rows) if not torch.equal(b[r], w0[r])]
        token_tensor = name in ("model.embed_tokens.weight", "lm_head.weight")
        want = NEW if token_tensor else []
        if moved_a != want:
            bad.append(f"{label}: PEFT moved rows {moved_a} of {name}, expected {want}")
        if moved_b != want:
            bad.append(f"{label}: layerfreeze moved rows {moved_b} of {name}, expected {want}")
        if want:
            diff = (a[want] - b[want]).abs().max().item()
            worst = max(worst, diff)
            if not torch.allclose(a[want], b[want], rtol=1e-4, atol=1e-6):
                bad.append(f"{label}: the new rows of {name} differ by up to {diff:.3g}")
    ours_state = kept["optimizer_state_bytes"]
    if ours_state > their_state:
        bad.append(f"{label}: layerfreeze keeps {ours_state} B of optimizer state, PEFT {their_state} B")
    rows_state = (1 if tied else 2) * len(NEW) * 16 * 4 * 2  # rows × width × float32 × 2 moments
    print(f"{label}: rows {NEW} moved in both (largest difference {worst:.2g}), every other row "
          f"bit-identical; optimizer state "
          f"PEFT {their_state} B, layerfreeze {ours_state} B (rows × 16 × 4 B × 2 = {rows_state}); "
          f"layerfreeze kept gradients {kept['kept_gradient_bytes']} B")
    if ours_state != rows_state:
        bad.append(f"{label}: layerfreeze keeps {ours_state} B, not the rows' {rows_state} B")
    return bad


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for tied in (True, False):
            bad += compare(tied, sys.argv[1], tmp)
    for b in bad:
        print("FAIL", b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
