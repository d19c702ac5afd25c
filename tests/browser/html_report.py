#!/usr/bin/env python3
"""The HTML reports in headless chromium (docs/CLI.md): each page opens from file:// with no
console error, no exception and no network request; the parameter list fills; the filter (text
and /regex/) narrows it; a click on a parameter shows the rule behind it at each change point; a
click on a cell of the picture shows that cell and lists its row's parameters.

    html_report.py BUILD/layerfreeze SOURCE_DIR
"""
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import cdp  # noqa: E402

failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)
    return cond


def count_items(b):
    return b.eval("document.querySelectorAll('#params li').length")


def set_filter(b, text):
    b.eval(f"(() => {{ const f = document.getElementById('filter'); f.value = {text!r}; "
           "f.dispatchEvent(new Event('input')); })()")


def check_page(b, name, path, expect_in_provenance, filter_text, regex):
    url = path.as_uri()
    b.open(url)
    total = count_items(b)
    expect(total > 0, f"{name}: the parameter list is empty")
    set_filter(b, filter_text)
    narrowed = count_items(b)
    expect(0 < narrowed < total, f"{name}: filter {filter_text!r} shows {narrowed} of {total}")
    text = b.eval("document.getElementById('count').textContent")
    expect("tensors" in text, f"{name}: no count after filtering: {text!r}")
    set_filter(b, regex)
    expect(count_items(b) > 0, f"{name}: regex {regex!r} matches nothing")
    set_filter(b, "")
    expect(count_items(b) == total, f"{name}: clearing the filter does not restore the list")
    # Click a parameter: its provenance, change point by change point.
    b.eval("document.querySelector('#params li').click()")
    prov = b.eval("document.getElementById('provenance').innerText")
    expect(expect_in_provenance in prov, f"{name}: provenance lacks {expect_in_provenance!r}: {prov[:300]!r}")
    expect("decided by" in prov, f"{name}: provenance has no 'decided by' column: {prov[:300]!r}")
    # Click a cell of the picture: the cell's state and rule, and its row's parameters.
    cell = b.eval("(() => { const c = document.querySelectorAll('rect.lf-cell'); const x = c[c.length - 1];"
                  " x.dispatchEvent(new MouseEvent('click', {bubbles: true}));"
                  " return x.querySelector('title').textContent; })()")
    prov = b.eval("document.getElementById('provenance').innerText")
    expect(cell.split(" \u2014 ")[0] in prov, f"{name}: clicking a cell shows {prov[:200]!r}, not {cell!r}")
    expect(0 < count_items(b) < total, f"{name}: clicking a cell does not narrow the list to its row")
    for p in b.problems(url):
        failures.append(f"{name}: {p}")


def main():
    binary, root = sys.argv[1], Path(sys.argv[2])
    tmp = Path(tempfile.mkdtemp())
    pages = [
        ("plan gradual llama2-7b", ["plan", "preset:gradual_unfreeze", "--set", "total_epochs=6",
                                    "--model", "builtin:llama2-7b"], "preset:gradual_unfreeze:",
         "layers.3.", "/mlp\\.(up|down)_proj/"),
        ("diff lp_lora freeze_first_n", ["diff", "preset:lp_lora", "preset:freeze_first_n", "--set", "n=8",
                                         "--model", "builtin:gpt2"], "preset:lp_lora:", "h.1", "/\\.attn\\./"),
        ("plan lp_lora olmocr (towers)", ["plan", "preset:lp_lora", "--model",
                                          str(root / "tests/data/real-checkpoints/olmocr-qwen2-vl-7b")],
         "preset:lp_lora:", "visual.", "/^visual\\.blocks\\.1[0-9]\\./"),
        # Names that once broke the page (docs/SECURITY.md): "<!--<script>" put the parser in its
        # escaped-script state and emptied the list; a '#' was read as a number's place.
        ("plan lp_lora hostile names", ["plan", "preset:lp_lora", "--model",
                                        str(root / "tests/data/hostile/names_manifest.json")],
         "preset:lp_lora:", "<!--<script>", "/a#b/"),
    ]
    b = cdp.Browser(tmp)
    try:
        # The control: a page that logs an error, throws and fetches must be caught, or the
        # checks below prove nothing.
        bad = tmp / "control.html"
        bad.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                       '<script>console.error("boom"); undefinedFunction();</script></body></html>')
        b.open(bad.as_uri())
        b.eval("1")
        seen = " | ".join(b.problems(bad.as_uri()))
        for what in ("network request", "console.error", "exception"):
            expect(what in seen, f"control page: '{what}' not detected (saw: {seen})")
        for name, args, prov, text, regex in pages:
            out = tmp / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".html")
            r = subprocess.run([binary, *args, "--format", "html"], capture_output=True, text=True)
            # `diff` exits 1 when the plans differ (as these do); a page is written either way.
            if r.returncode != (1 if args[0] == "diff" else 0) or not r.stdout:
                failures.append(f"{name}: exit {r.returncode}: {r.stderr}")
                continue
            out.write_text(r.stdout)
            check_page(b, name, out, prov, text, regex)
    finally:
        b.close()
    for f in failures:
        print("FAIL:", f)
    print(f"{len(pages)} pages checked in chromium")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
