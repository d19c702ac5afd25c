#!/usr/bin/python3
"""Hostile inputs (docs/SECURITY.md): every case runs the CLI on files a pull request could carry
and checks the promise it tests — the exit code, a bounded time and memory, a bounded output,
that a secret it tries to leak is absent, and that the output is well-formed (JSON parsed, SVG
parsed as XML, HTML's data script without '<', the terminal without control characters).

usage: hostile_inputs.py LAYERFREEZE SOURCE_DIR
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

BIN = os.path.abspath(sys.argv[1])
SOURCE = os.path.abspath(sys.argv[2])
DATA = os.path.join(SOURCE, "tests", "data", "hostile")
SECRET = "canary-5f0c2a"  # in the environment of every run: /proc/self/environ holds it
# Under AddressSanitizer (scripts/sanitize.sh sets ASAN_OPTIONS) every run is slower and larger.
SANITIZED = "ASAN_OPTIONS" in os.environ
MAX_SECONDS = 15.0 if SANITIZED else 5.0
MAX_RSS_MB = 1200 if SANITIZED else 400
failures = []
passed = 0
slowest = (0.0, "")
largest = (0.0, "")


def run(args, cwd, stdin=None):
    """Runs the CLI; returns (code, stdout bytes, stderr bytes, seconds, peak RSS in MB)."""
    env = dict(os.environ, LAYERFREEZE_CANARY=SECRET)
    env.pop("LAYERFREEZE_EXTENDS_PATH", None)
    start = time.monotonic()
    p = subprocess.Popen([BIN] + args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    # Both pipes drained by threads, then the child reaped with wait4: its own peak memory.
    chunks = {"out": [], "err": []}

    def drain(stream, key):
        for block in iter(lambda: stream.read(65536), b""):
            chunks[key].append(block)

    readers = [threading.Thread(target=drain, args=(p.stdout, "out")),
               threading.Thread(target=drain, args=(p.stderr, "err"))]
    for t in readers:
        t.start()
    timer = threading.Timer(30, p.kill)
    timer.start()
    _, status, usage = os.wait4(p.pid, 0)
    timer.cancel()
    for t in readers:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    out, err = b"".join(chunks["out"]), b"".join(chunks["err"])
    secs = time.monotonic() - start
    if secs >= 30:
        return None, out, err, secs, 0
    return p.returncode, out, err, secs, usage.ru_maxrss / 1024


def case(name, args, cwd, code=1, stderr_has=(), stdout_has=(), max_output=1 << 20,
         well_formed=None, files_unchanged=()):
    global passed
    before = {f: open(os.path.join(cwd, f), "rb").read() for f in files_unchanged}
    global slowest, largest
    got, out, err, secs, rss = run(args, cwd)
    slowest = max(slowest, (secs, name))
    largest = max(largest, (rss, name))
    problems = []
    if got is None:
        problems.append("did not end within 30 s")
    elif got != code:
        problems.append(f"exit {got}, expected {code}")
    if secs > MAX_SECONDS:
        problems.append(f"took {secs:.1f} s (limit {MAX_SECONDS})")
    if rss > MAX_RSS_MB:
        problems.append(f"peak memory {rss:.0f} MB (limit {MAX_RSS_MB})")
    if len(out) + len(err) > max_output:
        problems.append(f"{len(out) + len(err)} bytes of output (limit {max_output})")
    for blob, label in ((out, "stdout"), (err, "stderr")):
        if SECRET.encode() in blob:
            problems.append(f"the secret leaked to {label}")
        if b"root:x:0:0" in blob:
            problems.append(f"/etc/passwd quoted on {label}")
        # A terminal sees no control character but newline and tab (docs/SECURITY.md).
        bad = [c for c in set(blob) if (c < 0x20 and c not in (0x0a, 0x09)) or c == 0x7f]
        if bad:
            problems.append(f"raw control characters {sorted(bad)} on {label}")
        if b"internal error" in blob:
            problems.append(f"'internal error' on {label}")
    text_err = err.decode("utf-8", "replace")
    text_out = out.decode("utf-8", "replace")
    for s in stderr_has:
        if s not in text_err:
            problems.append(f"stderr lacks {s!r}")
    for s in stdout_has:
        if s not in text_out:
            problems.append(f"stdout lacks {s!r}")
    if well_formed and got == 0:
        try:
            well_formed(out)
        except Exception as e:  # noqa: BLE001 - any parse error is the failure
            problems.append(f"output not well-formed: {e}")
    for f, content in before.items():
        if open(os.path.join(cwd, f), "rb").read() != content:
            problems.append(f"{f} changed")
    if problems:
        failures.append(name)
        print(f"FAIL {name}: " + "; ".join(problems))
        print("  stderr: " + text_err[:600].replace("\n", "\n          "))
    else:
        passed += 1


def json_ok(out):
    json.loads(out.decode("utf-8"))


def svg_ok(out):
    ET.fromstring(out)


def html_ok(out):
    html = out.decode("utf-8")
    m = re.search(r'<script type="application/json" id="lf-data">(.*?)</script>', html, re.S)
    assert m, "no data script"
    data = m.group(1)
    assert "<" not in data and ">" not in data, "a '<' or '>' inside the data script"
    json.loads(data)


def write(d, name, text, mode="w"):
    path = os.path.join(d, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)
    return path


def lock_of(d, name, edit):
    subprocess.run([BIN, "plan", "preset:lp_lora", "--model", "builtin:gpt2", "--lock", name],
                   cwd=d, check=True, stdout=subprocess.DEVNULL)
    lock = json.load(open(os.path.join(d, name)))
    edit(lock)
    json.dump(lock, open(os.path.join(d, name), "w"))


def main():
    d = tempfile.mkdtemp(prefix="layerfreeze-hostile-")
    try:
        subprocess.run(["git", "init", "-q", d], check=True)
        for f in os.listdir(DATA):
            shutil.copy(os.path.join(DATA, f), d)

        # 1. Confinement: files outside the allowed folders are never read, whatever leads there.
        os.makedirs(os.path.join(d, "x/x/x/x"))
        os.makedirs(os.path.join(d, "rules"))
        os.symlink("../x/x/x/x", os.path.join(d, "rules/link"))
        write(d, "rules/dotdot.yaml", "extends: \"link/" + "../" * 12 + "etc/passwd\"\n")
        case("extends: a deep symlink and ..", ["validate", "rules/dotdot.yaml"], d,
             stderr_has=["[extends-outside]"])
        os.symlink("/etc/passwd", os.path.join(d, "rules/pw.yaml"))
        write(d, "rules/via_link.yaml", "extends: pw.yaml\n")
        case("extends: a symlink to /etc/passwd", ["validate", "rules/via_link.yaml"], d,
             stderr_has=["[extends-outside]"])
        write(d, "experts.yaml", "rules:\n  - freeze: {experts: {from: /etc/passwd}}\n")
        case("experts: {from: /etc/passwd}",
             ["plan", "experts.yaml", "--model", "builtin:moe-100k"], d,
             stderr_has=["[file-outside]"])
        case("validate: experts: {from: /etc/passwd} without a model", ["validate", "experts.yaml"],
             d, stderr_has=["[file-outside]"])
        write(d, "experts_param.yaml",
              "extends: preset:esft\nwith: {expert_config: /proc/self/environ}\n")
        case("experts: a parameter the rules file binds",
             ["plan", "experts_param.yaml", "--model", "builtin:moe-100k"], d,
             stderr_has=["[file-outside]"])
        lock_of(d, "environ.lock", lambda l: l["strategy"].update(source="/proc/self/environ"))
        case("check: a lock naming /proc/self/environ", ["check", "environ.lock"], d,
             stderr_has=["[lock-outside]"])
        lock_of(d, "model.lock", lambda l: l["model"].update(source="/etc"))
        case("check: a lock naming a model outside", ["check", "model.lock"], d,
             stderr_has=["[lock-outside]"])
        os.makedirs(os.path.join(d, "ckpt"))
        os.symlink("/proc/self/environ", os.path.join(d, "ckpt/config.json"))
        case("a checkpoint whose config.json links to /proc/self/environ", ["inspect", "ckpt"], d,
             stderr_has=["[model-outside]"])
        os.makedirs(os.path.join(d, "sharded"))
        write(d, "sharded/model.safetensors.index.json",
              json.dumps({"weight_map": {"a.weight": "model-00001.safetensors"}}))
        os.symlink("/etc/passwd", os.path.join(d, "sharded/model-00001.safetensors"))
        case("an index whose shard links to /etc/passwd",
             ["inspect", "sharded/model.safetensors.index.json"], d,
             stderr_has=["[model-outside]"])

        # 2. Files that are not files: nothing blocks, nothing reads forever.
        os.mkfifo(os.path.join(d, "fifo"))
        os.mkfifo(os.path.join(d, "fifo.pt"))
        case("check FIFO", ["check", "fifo"], d, stderr_has=["[file-not-regular]"])
        case("--family FIFO", ["plan", "preset:lp_lora", "--model", "builtin:gpt2", "--family",
                               "fifo"], d, stderr_has=["[file-not-regular]"])
        case("--model fifo.pt", ["plan", "preset:lp_lora", "--model", "fifo.pt"], d,
             stderr_has=["[file-not-regular]"])
        case("--family /dev/zero", ["plan", "preset:lp_lora", "--model", "builtin:gpt2",
                                    "--family", "/dev/zero"], d, stderr_has=["[file-not-regular]"])
        case("check DIRECTORY", ["check", "rules"], d, stderr_has=["[file-not-regular]"])
        os.symlink("loop.yaml", os.path.join(d, "loop.yaml"))
        case("a rules file that is a symlink loop", ["validate", "loop.yaml"], d,
             stderr_has=["symlink loop", "[file-unreadable]"])

        # 3. Crashes and exhaustion.
        write(d, "neg.yaml", "params: {n: {type: int, default: 1}}\nrules:\n"
                             "  - freeze: {layers: \"${" + "-" * 30000 + "n}\"}\n")
        case("30,000 unary minus", ["plan", "neg.yaml", "--model", "builtin:gpt2"], d,
             stderr_has=["[bad-expression]"])
        write(d, "plus.yaml", "params: {n: {type: int, default: 1}}\nrules:\n"
                              "  - freeze: {layers: \"${" + "+".join(["n"] * 30000) + "}\"}\n")
        case("a 30,000-term n+n+…", ["plan", "plus.yaml", "--model", "builtin:gpt2"], d,
             stderr_has=["[bad-expression]"])
        write(d, "not.yaml", "params: {n: {type: bool, default: true}}\nrules:\n"
                             "  - freeze: embeddings\n    when: \"${" + "not " * 60000 + "n}\"\n")
        case("not ×60,000", ["validate", "not.yaml"], d, stderr_has=["[bad-expression]"])
        case("an alias bomb in with: patterns",
             ["plan", "alias_bomb_rules.yaml", "--model", "builtin:gpt2"], d,
             stderr_has=["[yaml-too-large]"])
        case("an alias bomb in an FTS schedule's lr",
             ["import", "fts", "alias_bomb_schedule.yaml"], d, stderr_has=["[yaml-too-large]"])
        write(d, "esft_bomb.yaml", "extends: preset:esft\n")
        case("an alias bomb in an expert config",
             ["plan", "preset:esft", "--model", "builtin:moe-100k", "--set",
              "expert_config=alias_bomb_expert_config.json"], d,
             stderr_has=["[yaml-too-large]"])
        write(d, "bomb/config.json", json.dumps({"model_type": "bomb", "n": 1}))
        case("a family of nested repeats conditioned out",
             ["inspect", "bomb/config.json", "--family", "nested_repeats_family.yaml"], d,
             stderr_has=["steps"])
        write(d, "nameless.json", json.dumps({"params": [{}] * 1000000}))
        case("a manifest of a million nameless entries",
             ["plan", "preset:lp_lora", "--model", "nameless.json"], d,
             stderr_has=["not shown"], max_output=400 * 1024)
        with open(os.path.join(d, "huge.safetensors.index.json"), "w") as f:
            f.write('{"weight_map": {')
            f.write(",".join(f'"t{i}": "s.safetensors"' for i in range(1100000)))
            f.write("}}")
        case("an index of 1.1 million names",
             ["inspect", "huge.safetensors.index.json"], d, stderr_has=["[model-too-large]"])

        # 4. Well-formed output for any name.
        for fmt, check in (("json", json_ok), ("svg", svg_ok), ("html", html_ok)):
            case(f"hostile names: plan --format {fmt}",
                 ["plan", "preset:lp_lora", "--model", "names_manifest.json", "--format", fmt], d,
                 code=0, well_formed=check)
        case("hostile names: inspect --all (the terminal)",
             ["inspect", "names_manifest.json", "--all"], d, code=0, stdout_has=["\\x1b"])
        case("hostile names: explain", ["explain", "preset:lp_lora", "--model",
                                        "names_manifest.json", "--param",
                                        "model.layers.2.\x1b]0;pwned\x07.weight"], d, code=0)
        bad_name = os.path.join(d.encode(), b"r\xff.yaml")
        with open(bad_name, "w") as f:
            f.write("rules:\n  - freeze: embeddings\n")
        for fmt, check in (("json", json_ok), ("svg", svg_ok), ("html", html_ok)):
            case(f"a rules file name that is not UTF-8: --format {fmt}",
                 [os.fsdecode(b"plan"), os.fsdecode(b"r\xff.yaml"), "--model", "builtin:gpt2",
                  "--format", fmt], d, code=0, well_formed=check)

        # 5. Writes: atomic, checked.
        lock_of(d, "keep.lock", lambda l: None)
        case("plan --lock: a failing run keeps the old lock",
             ["plan", "preset:nope", "--model", "builtin:gpt2", "--lock", "keep.lock"], d,
             files_unchanged=["keep.lock"])
        case("plan --lock /dev/full", ["plan", "preset:lp_lora", "--model", "builtin:gpt2",
                                       "--lock", "/dev/full"], d, stderr_has=["cannot write"])
        if os.path.exists("/dev/full"):
            with open("/dev/full", "wb") as full:
                p = subprocess.run([BIN, "inspect", "builtin:gpt2", "--format", "json"], cwd=d,
                                   stdout=full, stderr=subprocess.PIPE)
            if p.returncode != 1 or b"cannot write" not in p.stderr:
                failures.append("inspect > /dev/full")
                print(f"FAIL inspect > /dev/full: exit {p.returncode}, {p.stderr[:200]!r}")
        write(d, "s.yaml", "0:\n  params: [transformer.ln_f.weight]\n  max_transition_epoch: 1\n"
                           "1:\n  params: [transformer.ln_f.bias]\n")
        case("import -o into a missing folder",
             ["import", "fts", "s.yaml", "-o", "missing/dir/x.yaml"], d,
             stderr_has=["cannot write"])

        # 6. Locks validated before use.
        lock_of(d, "mangled.lock",
                lambda l: (l["stages"][0].pop("frozen_tensors"), l.update(optimizer="lion")))
        case("a lock without a stage's frozen_tensors and an unknown optimizer",
             ["check", "mangled.lock"], d,
             stderr_has=['no "stages[0].frozen_tensors"', "not 'lion'"])

        # Locks a fuzzer found (tests/data/fuzz-regressions/lock-*): `check` ends, in bounded time.
        regressions = os.path.join(SOURCE, "tests", "data", "fuzz-regressions")
        for f in sorted(os.listdir(regressions)):
            if f.startswith("lock-"):
                shutil.copy(os.path.join(regressions, f), d)
                case(f"check the fuzz regression {f}", ["check", f], d)

        # 7. Imports that used to escape their wrapper or break the generated YAML.
        write(d, "paren.yaml", "0:\n  params: ['a)|(.*']\n  max_transition_epoch: 1\n"
                               "1:\n  params: [b]\n")
        case("an FTS entry with an unbalanced ')'", ["import", "fts", "paren.yaml"], d,
             stderr_has=["[fts-schedule]"])
        nl = write(d, "new\nline.yaml", "0:\n  params: [a]\n  max_transition_epoch: 1\n"
                                        "1:\n  params: [b]\n")
        case("an FTS schedule whose name has a newline",
             ["import", "fts", os.path.basename(nl)], d, code=0,
             stdout_has=['description: "finetuning-scheduler schedule new\\x0aline.yaml"'])

        # 8. launch: a rank's output without newlines is forwarded in bounded pieces; `\r` (a
        # progress bar) ends a line; a duration is bounded.
        case("launch: 20 MB without a newline",
             ["launch", "--nproc", "1", "--", sys.executable, "-c",
              "import sys; sys.stdout.write('x' * (20 << 20))"], d, code=0,
             max_output=22 << 20, stdout_has=["[rank 0] xxxx"])
        case("launch: 200,000 progress redraws",
             ["launch", "--nproc", "1", "--", sys.executable, "-c",
              "import sys; sys.stdout.write('\\r'.join(['progress 50%'] * 200000))"], d, code=0,
             max_output=8 << 20, stdout_has=["[rank 0] progress 50%\n[rank 0] progress 50%"])
        case("launch --timeout past what a duration holds",
             ["launch", "--nproc", "1", "--timeout", "9223372037", "--", "true"], d, code=2)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"{passed} passed, {len(failures)} failed; slowest: {slowest[1]} ({slowest[0]:.2f} s); "
          f"largest: {largest[1]} ({largest[0]:.0f} MB)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
