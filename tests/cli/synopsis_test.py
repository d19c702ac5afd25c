#!/usr/bin/python3
"""docs/CLI.md's synopses against the binary: every option a command's `--help` lists appears in
that command's synopsis (the fenced block at the top of docs/CLI.md), and every option a synopsis
names is one `--help` lists. Exit 1 with the differences.

usage: synopsis_test.py LAYERFREEZE DOCS/CLI.md
"""
import re
import subprocess
import sys

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def synopses(text):
    block = text.split("```\n", 2)[1]
    out, command = {}, None
    for line in block.splitlines():
        m = re.match(r"layerfreeze (import fts|\w+)", line)
        if m:
            command = m.group(1)
        if command:
            out.setdefault(command, set()).update(OPTION.findall(line.split(" -- ")[0]))
    return out


def help_options(binary, command):
    text = subprocess.run([binary, *command.split(), "--help"], capture_output=True,
                          text=True).stdout
    opts = set()
    for line in text.splitlines():
        m = re.match(r"\s+(?:-\w,)?(--[a-z][a-z-]*)", line)
        if m and m.group(1) != "--help":
            opts.add(m.group(1))
    return opts


def main():
    binary, doc = sys.argv[1], sys.argv[2]
    problems = []
    documented = synopses(open(doc, encoding="utf-8").read())
    for command, names in sorted(documented.items()):
        listed = help_options(binary, command)
        for o in sorted(listed - names):
            problems.append(f"{command}: {o} is in --help, not in docs/CLI.md's synopsis")
        for o in sorted(names - listed):
            problems.append(f"{command}: {o} is in docs/CLI.md's synopsis, not in --help")
    for p in problems:
        print("FAIL:", p)
    print(f"{len(documented)} synopses checked against --help")
    return 1 if problems else 0


sys.exit(main())
