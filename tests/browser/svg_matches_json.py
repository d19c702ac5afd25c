#!/usr/bin/env python3
"""The SVG plan against the JSON plan, cell by cell (docs/CLI.md, "plan --format svg").

For each case: `plan --format svg` must be well-formed XML with one cell per (row, column); every
cell's state must be what `plan --format json` (the frozen names and masked tensors of that
stage) and `inspect --format json` (which parameters a row holds) say; the bytes must be the same
on a second run; an 80-layer model over 10 stages stays under 100 KB, and the HTML report of the
101k-tensor MoE under 5 MB.

    svg_matches_json.py BUILD/layerfreeze SOURCE_DIR
"""
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

SVG = "{http://www.w3.org/2000/svg}"
failures = []


def run(binary, *args, ok=(0,)):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if r.returncode not in ok:
        raise SystemExit(f"layerfreeze {' '.join(args)} exited {r.returncode}:\n{r.stderr}")
    return r.stdout


def fail(case, msg):
    failures.append(f"{case}: {msg}")


def row_members(inspect, kind, first, last):
    """Names of the parameters a row holds (a tied head counts where its alias is the head)."""
    out = set()
    for p in inspect["params"]:
        role = p["role"]
        if kind == "layers" and role == "layer" and first <= p["layer"] <= last:
            out.add(p["name"])
        elif kind == "embeddings" and role == "embeddings":
            out.add(p["name"])
        elif kind == "head" and (role == "head" or any(a.startswith("lm_head") for a in p["aliases"])):
            out.add(p["name"])
        elif kind == "tower" and role == "tower" and p.get("tower") == first:
            out.add(p["name"])
        elif kind == "connector" and role == "connector":
            out.add(p["name"])
        elif kind == "other" and role == "other":
            out.add(p["name"])
    return out


def expected(members, frozen, masked):
    if not members:
        return "empty"
    f = len(members & frozen)
    m = len((members & masked) - frozen)
    if f == len(members):
        return "frozen"
    if f == 0 and m == 0:
        return "trainable"
    return "partial"


def check(binary, case, rules, model, extra):
    svg_text = run(binary, "plan", rules, "--model", model, *extra, "--format", "svg")
    again = run(binary, "plan", rules, "--model", model, *extra, "--format", "svg")
    if svg_text != again:
        fail(case, "two runs wrote different bytes")
    plan = json.loads(run(binary, "plan", rules, "--model", model, *extra, "--format", "json"))
    inspect = json.loads(run(binary, "inspect", model, "--format", "json"))
    try:
        root = ET.fromstring(svg_text)
    except ET.ParseError as e:
        fail(case, f"not well-formed XML: {e}")
        return None
    if root.tag != SVG + "svg":
        fail(case, f"root element is {root.tag}")
    for el in root.iter():
        for attr, value in el.attrib.items():
            if "href" in attr or "url(" in value and not value.startswith("url(#"):
                fail(case, f"an external reference: {attr}={value}")
    cells = [el for el in root.iter(SVG + "rect") if el.get("class") == "lf-cell"]
    stages = plan["stages"]
    columns = sorted({int(c.get("data-col")) for c in cells})
    # 24 columns, or a block cycle's whole cycle and the first period of the next (up to 65).
    cap = 24
    for cyc in plan.get("block_cycles", []):
        length = 1 if cyc["order"] == "fixed" else len(cyc["blocks"])
        cap = max(cap, min(length, 64) + 1)
    if columns != list(range(min(len(stages), cap))):
        fail(case, f"columns {columns} for {len(stages)} stages")
    rows = sorted({int(c.get("data-row")) for c in cells})
    if len(cells) != len(rows) * len(columns):
        fail(case, f"{len(cells)} cells for {len(rows)} rows x {len(columns)} columns")
    checked = 0
    for c in cells:
        col = int(c.get("data-col"))
        stage = stages[col]
        frozen = set(stage["frozen"])
        masked = {m["name"] for m in stage.get("masked", [])}
        members = row_members(inspect, c.get("data-kind"), int(c.get("data-first")), int(c.get("data-last")))
        want = expected(members, frozen, masked)
        if c.get("data-state") != want:
            title = c.find(SVG + "title").text
            fail(case, f"cell row {c.get('data-row')} col {col} ({title}): {c.get('data-state')}, JSON says {want}")
        checked += 1
    # Layer rows cover every layer once, in order.
    layer_rows = sorted({(int(c.get("data-first")), int(c.get("data-last"))) for c in cells if c.get("data-kind") == "layers"})
    covered = [l for a, b in layer_rows for l in range(a, b + 1)]
    if covered != list(range(plan["model"]["num_layers"])):
        fail(case, f"layer rows {layer_rows} do not cover the {plan['model']['num_layers']} layers once")
    return svg_text, checked


def check_diff(binary):
    """diff --format svg: both grids on the same rows and columns; a cell is outlined exactly when
    the two plans put its group in different states; the columns are every change point of
    either plan."""
    case = "diff gradual_unfreeze vs lp_lora"
    args = ["diff", "preset:gradual_unfreeze", "preset:lp_lora", "--set", "total_epochs=4",
            "--model", "builtin:llama2-7b"]
    # diff exits 1 when the plans differ, as these two do.
    root = ET.fromstring(run(binary, *args, "--format", "svg", ok=(1,)))
    grids = {g.get("id"): g for g in root.iter(SVG + "g") if g.get("class") == "lf-grid"}
    if set(grids) != {"lf-diff-a", "lf-diff-b"}:
        fail(case, f"grids {sorted(grids)}")
        return
    cells = {k: {(c.get("data-row"), c.get("data-col")): c for c in g.iter(SVG + "rect") if c.get("class") == "lf-cell"}
             for k, g in grids.items()}
    a, b = cells["lf-diff-a"], cells["lf-diff-b"]
    if set(a) != set(b):
        fail(case, "the two grids have different cells")
        return
    differ = 0
    for key in a:
        d = a[key].get("data-state") != b[key].get("data-state")
        differ += d
        for side in (a, b):
            if (side[key].get("data-differs") == "1") != d:
                fail(case, f"cell {key}: outlined {side[key].get('data-differs')}, states differ {d}")
    if differ == 0:
        fail(case, "no differing cell between gradual unfreezing and lp_lora")
    cols = len({k[1] for k in a})
    plan_a = json.loads(run(binary, "plan", "preset:gradual_unfreeze", "--set", "total_epochs=4", "--model", "builtin:llama2-7b", "--format", "json"))
    if cols != len(plan_a["stages"]):
        fail(case, f"{cols} columns; gradual unfreezing alone changes at {len(plan_a['stages'])} times")


def main():
    binary, root = sys.argv[1], Path(sys.argv[2])
    data = root / "tests" / "data"
    tmp = Path(tempfile.mkdtemp())
    esft = tmp / "granite-esft.json"
    esft.write_text('{"experts": {"0": [1, 2], "5": [7], "23": [31]}}\n')
    cases = [
        ("gradual_unfreeze on llama2-7b", "preset:gradual_unfreeze", "builtin:llama2-7b", ["--set", "total_epochs=6"]),
        ("lp_lora on gpt2 (tied head)", "preset:lp_lora", "builtin:gpt2", []),
        ("lisa on llama2-7b (periodic)", "preset:lisa", "builtin:llama2-7b",
         ["--set", "active_layers=4", "--set", "interval_steps=20", "--steps-per-epoch", "100", "--epochs", "3"]),
        ("esft on granite (masked experts)", "preset:esft", str(data / "real-checkpoints" / "granite-3.1-1b-a400m"),
         ["--set", f"expert_config={esft}"]),
        ("lp_lora on qwen2.5-vl (towers)", "preset:lp_lora", str(data / "configs" / "qwen2.5-vl-7b.json"), []),
        ("badam on llama2-7b (a block cycle of 32)", "preset:badam", "builtin:llama2-7b",
         ["--set", "switch_every=10"]),
        ("badam reshuffle in groups of 4 with a head block", "preset:badam", "builtin:llama2-7b",
         ["--set", "order=reshuffle", "--set", "layers_per_block=4", "--set", "head=block"]),
    ]
    total = 0
    for case, rules, model, extra in cases:
        r = check(binary, case, rules, model, extra)
        if r:
            total += r[1]
    # Size: an 80-layer model over 10 stages (gradual unfreezing opens a layer a stage).
    big = tmp / "llama80.json"
    cfg = json.loads((data / "configs" / "qwen3-0.6b.json").read_text())
    cfg["num_hidden_layers"] = 80
    big.write_text(json.dumps(cfg))
    svg = run(binary, "plan", "preset:gradual_unfreeze", "--set", "total_epochs=10", "--model", str(big), "--format", "svg")
    if len(svg.encode()) >= 100_000:
        fail("80 layers x 10 stages", f"{len(svg.encode())} bytes, not under 100 KB")
    # The 101k-tensor MoE: the report groups parameters, it does not list 101k rows.
    page = run(binary, "plan", "preset:gradual_unfreeze", "--set", "total_epochs=6", "--model", "builtin:moe-100k",
               "--format", "html")
    if len(page.encode()) >= 5_000_000:
        fail("moe-100k html", f"{len(page.encode())} bytes, not under 5 MB")
    check_diff(binary)
    for f in failures:
        print("FAIL:", f)
    print(f"{total} cells checked against the JSON plan; 80 layers x 10 stages: {len(svg.encode())} bytes; "
          f"moe-100k report: {len(page.encode())} bytes")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
