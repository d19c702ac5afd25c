#!/usr/bin/env python3
"""The whole-process number of docs/PERFORMANCE.md: `layerfreeze plan preset:freeze_by_name`
with 20 patterns on builtin:moe-100k (101,333 tensors), against the loop the Python peers run
(re.fullmatch of the same 20 patterns over the same names, already in a list), in one run.

    python3 bench/vs_python.py build/layerfreeze [--runs 7]

Prints both medians, the ratio, and checks both select the same tensors.
"""
import json
import re
import statistics
import subprocess
import sys
import time

PATTERNS = [
    r".*self_attn\.q_a_proj.*", r".*self_attn\.q_b_proj.*", r".*self_attn\.kv_a_proj.*",
    r".*self_attn\.kv_b_proj.*", r".*self_attn\.o_proj.*", r".*_layernorm\.weight",
    r".*experts\.[0-9]\..*", r".*experts\.1[0-9]\..*", r".*experts\.2[0-9]\..*",
    r".*experts\.3[0-9]\..*", r".*experts\.4[0-9]\..*", r".*experts\.5[0-9]\..*",
    r".*shared_experts\..*", r".*mlp\.gate\..*", r"model\.layers\.[0-2]\..*",
    r".*weight_scale_inv", r"model\.embed_tokens\..*", r"lm_head\..*", r"model\.norm\..*",
    r".*\.down_proj\.weight",
]


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/layerfreeze"
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 7
    inspect = subprocess.run([binary, "inspect", "builtin:moe-100k", "--format", "json"],
                             check=True, capture_output=True, text=True)
    names = [p["name"] for p in json.loads(inspect.stdout)["params"]]

    py_times, selected = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        compiled = [re.compile(p) for p in PATTERNS]
        frozen = [n for n in names if any(r.fullmatch(n) for r in compiled)]
        py_times.append(time.perf_counter() - t0)
        selected = len(frozen)

    quoted = "[" + ", ".join("'" + p + "'" for p in PATTERNS) + "]"
    cmd = [binary, "plan", "preset:freeze_by_name", "--set", "patterns=" + quoted, "--model",
           "builtin:moe-100k"]
    lf_times = []
    for _ in range(runs):  # the plan as a reviewer reads it (text)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        lf_times.append(time.perf_counter() - t0)
    # The selection, checked once through the JSON (which lists every frozen name).
    out = subprocess.run(cmd + ["--format", "json"], check=True, capture_output=True, text=True)
    lf_selected = len(json.loads(out.stdout)["stages"][0]["frozen"])

    py, lf = statistics.median(py_times), statistics.median(lf_times)
    print(f"tensors: {len(names)}, patterns: {len(PATTERNS)}, selected: {selected} (python) "
          f"{lf_selected} (layerfreeze)")
    print(f"python loop (names in a list): {py * 1000:.1f} ms (median of {runs})")
    print(f"layerfreeze plan (text), whole process: {lf * 1000:.1f} ms (median of {runs})")
    print(f"ratio: {py / lf:.2f}x")
    if selected != lf_selected:
        print("MISMATCH: the two select different tensors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
