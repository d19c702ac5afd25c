#!/usr/bin/env python3
"""The SVG plan rendered by headless chromium: the picture has the size the SVG declares, and the
pixels at the centre of every cell have the colour of the state the plan gives that cell
(frozen, trainable, partial — each colour and its pattern ink).

    svg_pixels.py BUILD/layerfreeze SOURCE_DIR
"""
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import browser_util as bu  # noqa: E402
import subprocess  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
# The printer's palette (src/print/plan_svg.cpp): fill and pattern ink of each state.
PALETTE = {
    "frozen": ["#4e79a7", "#2b4a6f"],
    "trainable": ["#f28e2b"],
    "partial": ["#fbd7a8", "#5a5a5a"],
    "empty": ["#eeeeee"],
}


def segment_distance(p, a, b):
    """Distance from colour p to the blends of a and b (anti-aliased edges of a pattern)."""
    ab = [y - x for x, y in zip(a, b)]
    ap = [y - x for x, y in zip(a, p)]
    den = sum(v * v for v in ab)
    t = 0.0 if den == 0 else max(0.0, min(1.0, sum(u * v for u, v in zip(ab, ap)) / den))
    return sum((pa - (aa + t * d)) ** 2 for pa, aa, d in zip(p, a, ab)) ** 0.5


def classify(rgb):
    best, dist = None, 1e9
    for state, colours in PALETTE.items():
        fill, ink = bu.hex_rgb(colours[0]), bu.hex_rgb(colours[-1])
        d = segment_distance(rgb, fill, ink)
        if d < dist:
            best, dist = state, d
    return best, dist


def check(binary, name, args, tmp, failures):
    svg_path = tmp / f"{name}.svg"
    r = subprocess.run([binary, "plan", *args, "--format", "svg"], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"{name}: layerfreeze exited {r.returncode}: {r.stderr}")
        return 0
    svg_path.write_text(r.stdout)
    root = ET.fromstring(r.stdout)
    width, height = int(root.get("width")), int(root.get("height"))
    png = tmp / f"{name}.png"
    bu.screenshot(svg_path.as_uri(), str(png), width, height, tmp)
    w, h, rows = bu.read_png(png)
    if (w, h) != (width, height):
        failures.append(f"{name}: rendered {w}x{h}, the SVG says {width}x{height}")
        return 0
    n = 0
    for cell in root.iter(SVG + "rect"):
        if cell.get("class") != "lf-cell":
            continue
        x, y = float(cell.get("x")), float(cell.get("y"))
        cw, ch = float(cell.get("width")), float(cell.get("height"))
        want = cell.get("data-state")
        # A 5x3 block around the centre: every pixel must be the state's fill or its ink.
        cx, cy = int(x + cw / 2), int(y + ch / 2)
        for dy in (-1, 0, 1):
            for dx in (-2, -1, 0, 1, 2):
                got, dist = classify(rows[cy + dy][cx + dx])
                if got != want or dist > 30:
                    title = cell.find(SVG + "title").text
                    failures.append(f"{name}: pixel ({cx + dx}, {cy + dy}) is {rows[cy + dy][cx + dx]} "
                                    f"({got}, distance {dist:.0f}); the plan says {want} ({title})")
                    break
            else:
                continue
            break
        n += 1
    # Metric stages' windows (docs/RULES.md, "Metric triggers"): each bar in the partial fill, the
    # diamond where the plan places the stage in the frozen ink.
    for g in root.iter(SVG + "g"):
        if g.get("class") != "lf-window":
            continue
        bar = g.find(SVG + "rect")
        x, y = float(bar.get("x")), float(bar.get("y"))
        bw, bh = float(bar.get("width")), float(bar.get("height"))
        px, py = int(x + max(3, bw / 6)), int(y + bh / 2)
        if bu.distance(rows[py][px], bu.hex_rgb(PALETTE["partial"][0])) > 30:
            failures.append(f"{name}: window bar pixel ({px}, {py}) is {rows[py][px]}, not the "
                            f"window fill ({g.find(SVG + 'title').text})")
        mark = g.find(SVG + "path")
        if mark is not None:
            mx, my = (float(v) for v in re.match(r"M(\S+) (\S+)", mark.get("d")).groups())
            cx, cy = int(mx), int(my + 5)
            if bu.distance(rows[cy][cx], bu.hex_rgb(PALETTE["frozen"][1])) > 40:
                failures.append(f"{name}: the placement mark at ({cx}, {cy}) is {rows[cy][cx]}")
        n += 1
    # Block cycles (docs/RULES.md, "Block cycles"): the line where a new cycle starts is drawn
    # over the cells, dark from top to bottom; each cycle's band spans its columns.
    for bar in root.iter(SVG + "rect"):
        if bar.get("class") != "lf-cycle-start":
            continue
        x, y = float(bar.get("x")), float(bar.get("y"))
        bh = float(bar.get("height"))
        for py in (int(y + 3), int(y + bh / 2), int(y + bh - 3)):
            if bu.distance(rows[py][int(x + 1)], bu.hex_rgb("#222222")) > 40:
                failures.append(f"{name}: the cycle line at ({int(x + 1)}, {py}) is "
                                f"{rows[py][int(x + 1)]}, covered ({bar.find(SVG + 'title').text})")
        n += 1
    return n


def main():
    binary, root = sys.argv[1], Path(sys.argv[2])
    tmp = Path(tempfile.mkdtemp())
    esft = tmp / "granite-esft.json"
    esft.write_text('{"experts": {"0": [1, 2], "5": [7], "23": [31]}}\n')
    failures = []
    cases = [
        ("gradual", ["preset:gradual_unfreeze", "--set", "total_epochs=6", "--model", "builtin:llama2-7b"]),
        ("esft", ["preset:esft", "--set", f"expert_config={esft}", "--model",
                  str(root / "tests/data/real-checkpoints/granite-3.1-1b-a400m")]),
        ("vlm", ["preset:lp_lora", "--model", str(root / "tests/data/configs/qwen2.5-vl-7b.json")]),
        ("plateau", [str(root / "examples/strategies/unfreeze_on_plateau.yaml"), "--model",
                     "builtin:llama2-7b", "--assume", "val_loss: plateau at epoch 3"]),
        ("badam", ["preset:badam", "--model", "builtin:llama2-7b", "--set", "order=reshuffle",
                   "--set", "layers_per_block=4", "--set", "head=block"]),
        ("tokens", [str(tmp / "tokens.yaml"), "--model", "builtin:llama2-7b"]),
    ]
    (tmp / "tokens.yaml").write_text('rules:\n  - freeze: all\n  - unfreeze: {tokens: "31990:"}\n'
                                     'stages:\n  - at: {epoch: 2}\n    rules:\n'
                                     '      - unfreeze: {layers: "-2:"}\n')
    total = 0
    for name, args in cases:
        total += check(binary, name, args, tmp, failures)
    for f in failures[:20]:
        print("FAIL:", f)
    print(f"{total} cells sampled in chromium's rendering")
    return 1 if failures or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
