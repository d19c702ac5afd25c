#!/usr/bin/python3
"""Runs every entry of docs/ERRORS.md against the layerfreeze binary: each entry's files are
written to a fresh folder, its command runs there, and the exit code and the first line of
stderr must be exactly those the entry documents. `--update` rewrites the expectations from what
the binary does (then read the diff before committing).

usage: error_catalogue.py LAYERFREEZE DOCS/ERRORS.md [--update]
"""
import os
import re
import shlex
import subprocess
import sys
import tempfile

ENTRY = re.compile(r"^### (E\d+) ", re.M)
FENCE = re.compile(r"```(\w+)(?: ([^\n`]+))?\n(.*?)```", re.S)


def parse(text):
    starts = [m.start() for m in ENTRY.finditer(text)]
    for i, s in enumerate(starts):
        body = text[s:starts[i + 1] if i + 1 < len(starts) else len(text)]
        yield s, body


def run(binary, body):
    cmd = re.search(r"^Command: `([^`]+)`", body, re.M).group(1)
    with tempfile.TemporaryDirectory() as d:
        for lang, name, content in FENCE.findall(body):
            if lang == "sh" and name == "setup":
                # $LAYERFREEZE_SOURCE: the checkout the catalogue belongs to (for its test data);
                # $LAYERFREEZE_BIN: the binary under test (a setup that writes a lock with it).
                source = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[2])))
                subprocess.run(["bash", "-c", content], cwd=d, check=True,
                               env=dict(os.environ, LAYERFREEZE_SOURCE=source,
                                        LAYERFREEZE_BIN=binary))
            elif name and lang != "text":
                with open(os.path.join(d, name), "w") as f:
                    f.write(content)
        args = shlex.split(cmd)
        assert args[0] == "layerfreeze", cmd
        env = dict(os.environ)
        if "LAYERFREEZE_TORCH_ADAPTER=" in body:
            env["LAYERFREEZE_TORCH_ADAPTER"] = re.search(r"LAYERFREEZE_TORCH_ADAPTER=(\S+)", body).group(1)
        p = subprocess.run([binary] + args[1:], cwd=d, capture_output=True, text=True, env=env)
        first = (p.stderr.splitlines() or [""])[0]
        return p.returncode, first


def main():
    binary, doc = os.path.abspath(sys.argv[1]), sys.argv[2]
    update = "--update" in sys.argv
    text = open(doc).read()
    out, last, failed, count = [], 0, 0, 0
    for start, body in parse(text):
        original_length = len(body)
        count += 1
        name = body.split("\n", 1)[0]
        code, first = run(binary, body)
        want_code = int(re.search(r"^Exit code: (\d+)", body, re.M).group(1))
        want = re.search(r"```text\n(.*?)\n```", body, re.S).group(1)
        if update:
            body = re.sub(r"^Exit code: \d+", "Exit code: %d" % code, body, flags=re.M)
            body = body.replace("```text\n" + want + "\n```", "```text\n" + first + "\n```")
        elif code != want_code or first != want:
            failed += 1
            print("FAIL %s\n  exit %d (want %d)\n  got:  %s\n  want: %s" % (name, code, want_code, first, want))
        out.append(text[last:start] + body)
        last = start + original_length
    if update:
        open(doc, "w").write("".join(out) + text[last:])
    print("%d passed, %d failed" % (count - failed, failed))
    sys.exit(1 if failed or count < 60 else 0)


if __name__ == "__main__":
    main()
