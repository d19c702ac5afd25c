#!/usr/bin/python3
"""Draws docs/savings.png from the CSV of build/savings_bench --csv (Debian's python3-matplotlib)."""
import csv
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
out = sys.argv[2] if len(sys.argv) > 2 else "docs/savings.png"
labels = [r["preset"] for r in rows]
mem = [int(r["grad_state_bytes"]) / 1e6 for r in rows]
rss = [float(r["peak_rss_mb"]) for r in rows]
fwd = [float(r["forward_ms"]) for r in rows]
bwd = [float(r["backward_ms"]) for r in rows]
opt = [float(r["optimizer_ms"]) for r in rows]
fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
x = range(len(rows))
a.bar([i - 0.2 for i in x], mem, width=0.4, label="gradients + AdamW state (MB)")
a.bar([i + 0.2 for i in x], rss, width=0.4, label="peak RSS (MB)")
a.set_xticks(list(x), labels, rotation=30, ha="right")
a.set_title("Memory per strategy (GPT, 12 x 512, batch 4 x 128)")
a.legend()
b.bar(x, fwd, label="forward")
b.bar(x, bwd, bottom=fwd, label="backward")
b.bar(x, opt, bottom=[f + w for f, w in zip(fwd, bwd)], label="optimizer")
b.set_xticks(list(x), labels, rotation=30, ha="right")
b.set_title("Median step time (ms), 2 CPU cores, OpenBLAS")
b.legend()
fig.tight_layout()
fig.savefig(out, dpi=110)
print("wrote", out)
