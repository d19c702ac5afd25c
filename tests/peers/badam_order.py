#!/usr/bin/env python3
"""BAdam's own BlockOptimizer side by side with preset:badam (docs/PRESETS.md, "badam").

A small transformers Llama (6 layers, untied head) is trained by the `badam` package's
BlockOptimizer (badam==1.4, wrapping AdamW) for three cycles; before every step the parameters
that require a gradient are recorded. The same model, saved as safetensors with its config, is
planned by `layerfreeze plan preset:badam --format json` with the same switch interval and order,
and the plan's trainable set is read for every step.

    .venv/bin/python tests/peers/badam_order.py LAYERFREEZE

Checked: ascending and descending (with and without a start block) give the same trainable
parameters at every step as BAdam, but for one step: BAdam's first block trains one step less
than the others (see badam_run), preset:badam's as long as every other; for reshuffle (BAdam's `random`, drawn by torch.randperm, so
the orders themselves differ) both visit every block exactly once per cycle, one block at a time,
in the same blocks of parameters. Exit 0 when all hold.
"""
import json
import os
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
import logging  # noqa: E402

logging.getLogger("badam").setLevel(logging.ERROR)
from badam import BlockOptimizer  # noqa: E402

LAYERS, K, CYCLES = 6, 3, 3
STEPS = LAYERS * K * CYCLES


def make_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=LAYERS,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def badam_run(mode, start):
    """The trainable parameter names before each of STEPS steps under BAdam, one step late.

    BAdam 1.4 switches after the step at which `(global_step + 1) % switch_block_every == 0`,
    global_step counted after the increment: its first block trains K - 1 steps, every later one
    K (measured here: with K = 3 its second block starts at step 2). preset:badam gives every
    block K steps, so BAdam's step s is layerfreeze's step s + 1; the returned list is BAdam's
    shifted by that one step (step 0 keeps its first block), and the check is exact.
    """
    model = make_model()
    named = list(model.named_parameters())
    base = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # BAdam prints the prefixes it switches to; keep stdout for the verdict.
    with open(os.devnull, "w") as quiet, redirect(quiet):
        opt = BlockOptimizer(base_optimizer=base, named_parameters_list=named,
                             switch_block_every=K, switch_mode=mode, start_block=start, verbose=0)
        seen = []
        ids = torch.randint(0, 64, (2, 8))
        for _ in range(STEPS):
            seen.append(frozenset(n for n, p in model.named_parameters() if p.requires_grad))
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    return [seen[0]] + seen[:-1]


class redirect:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        self.old = sys.stdout
        sys.stdout = self.f

    def __exit__(self, *a):
        sys.stdout = self.old


def ours(tool, folder, sets):
    """The trainable parameter names at each step of the plan of preset:badam."""
    run = subprocess.run([tool, "plan", "preset:badam", "--model", folder, "--format", "json",
                          "--steps", str(STEPS), "--set", f"switch_every={K}",
                          *[a for s in sets for a in ("--set", s)]],
                         capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"layerfreeze plan failed:\n{run.stderr}")
    plan = json.loads(run.stdout)
    names = [n for n, _ in make_model().named_parameters()]
    out, k = [], 0
    stages = plan["stages"]
    for step in range(STEPS):
        while k + 1 < len(stages) and stages[k + 1]["at"]["step"] <= step:
            k += 1
        frozen = set(stages[k]["frozen"])
        out.append(frozenset(n for n in names if n not in frozen))
    return out


def blocks_of(model_names):
    """BAdam's blocks by its own rule: the parameters under each `layers.N.` prefix."""
    by = {}
    for n in model_names:
        if ".layers." in n:
            by.setdefault(int(n.split(".layers.")[1].split(".")[0]), set()).add(n)
    return [frozenset(by[k]) for k in sorted(by)]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    tool = sys.argv[1]
    torch.set_num_threads(1)
    bad = []
    with tempfile.TemporaryDirectory() as folder:
        make_model().save_pretrained(folder)
        for mode, start, sets in [("ascending", None, ["order=ascending"]),
                                  ("descending", None, ["order=descending"]),
                                  ("ascending", 2, ["order=ascending", "start_block=2"]),
                                  ("descending", 4, ["order=descending", "start_block=4"])]:
            theirs, mine = badam_run(mode, start), ours(tool, folder, sets)
            first = next((s for s in range(STEPS) if theirs[s] != mine[s]), None)
            if first is not None:
                bad.append(f"{mode} start {start}: step {first}: BAdam trains "
                           f"{sorted(theirs[first])[:3]}…, layerfreeze {sorted(mine[first])[:3]}…")
            else:
                print(f"{mode} (start {start}): the same trainable parameters at all {STEPS} steps")
        blocks = blocks_of([n for n, _ in make_model().named_parameters()])
        for who, seq in [("BAdam random", badam_run("random", None)),
                         ("layerfreeze reshuffle", ours(tool, folder, ["order=reshuffle",
                                                                       "seed=5"]))]:
            for c in range(CYCLES):
                visited = [seq[(c * LAYERS + b) * K] for b in range(LAYERS)]
                held = all(seq[(c * LAYERS + b) * K + r] == visited[b]
                           for b in range(LAYERS) for r in range(K))
                if sorted(visited, key=sorted) != sorted(blocks, key=sorted) or not held:
                    bad.append(f"{who}: cycle {c} does not visit every block once")
            print(f"{who}: every block exactly once in each of {CYCLES} cycles")
    for b in bad:
        print("FAIL", b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
