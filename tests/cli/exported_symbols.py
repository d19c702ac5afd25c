#!/usr/bin/env python3
"""Every function a public header declares is exported by its shared library, and nothing else
is, beyond the internal names its version script lists (cmake/exports/*.map, docs/API.md).

usage: exported_symbols.py SOURCE_DIR LIBRARY HEADER... [--map MAP]

A namespace-scope function declared in a header (`std::string diff_text(...)`) must have an
exported symbol of that name; every exported layerfreeze symbol must belong to a name declared
in the headers (a function, or a member of a class they declare) or to the map's internal part.
"""
import re
import subprocess
import sys
from pathlib import Path


def demangled_exports(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                         capture_output=True, text=True).stdout
    names = [line.split(maxsplit=2)[2] for line in out.splitlines() if len(line.split()) == 3]
    dem = subprocess.run(["c++filt"], input="\n".join(names), check=True, capture_output=True,
                         text=True).stdout.splitlines()
    return dem


def qualified_name(symbol):
    """`layerfreeze::Plan::text[abi:cxx11](...) const` -> `layerfreeze::Plan::text`."""
    for prefix in ("typeinfo name for ", "typeinfo for ", "vtable for "):
        if symbol.startswith(prefix):
            return symbol[len(prefix):]
    depth = 0
    for i, c in enumerate(symbol):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c in "([" and depth == 0:
            return symbol[:i]
    return symbol


def declared(headers):
    """Functions at namespace scope and classes, with their namespaces."""
    functions, classes = set(), set()
    for header in headers:
        scopes = []  # what each open brace opened: ("ns", name), ("class", name) or ("other", "")
        for line in Path(header).read_text().splitlines():
            code = line.split("//")[0]
            namespaces = [n for kind, n in scopes if kind == "ns"]
            at_namespace_scope = all(kind == "ns" for kind, _ in scopes)
            opened = None
            m = re.match(r"\s*namespace ([\w:]+) \{", code)
            if m:
                opened = ("ns", m.group(1))
            elif at_namespace_scope:
                c = re.match(r"(?:class|struct) (\w+)(?: final)?(?: : [^{]*)? \{", code)
                if c:
                    opened = ("class", c.group(1))
                    if namespaces:
                        classes.add("::".join(namespaces + [c.group(1)]))
                elif namespaces and not code.startswith(
                        (" ", "#", "}", "using", "enum", "constexpr", "template")):
                    f = re.match(r"[\w:<>,*& ]+?[ *&](\w+)\(", code)
                    if f:
                        functions.add("::".join(namespaces + [f.group(1)]))
            for ch in code:
                if ch == "{":
                    scopes.append(opened or ("other", ""))
                    opened = None
                elif ch == "}" and scopes:
                    scopes.pop()
    return functions, classes


def internal_names(map_file):
    """The names after the map's "Internal" comment, as prefixes (without the pattern part)."""
    text = Path(map_file).read_text()
    part = text[text.index("Internal"):] if "Internal" in text else ""
    names = []
    for m in re.finditer(r"^\s+(layerfreeze::[\w:]+)", part, re.M):
        names.append(m.group(1).rstrip(":"))
    # C symbols the map names (the TorchScript reader the CLI loads by name).
    names += re.findall(r"^\s+(layerfreeze_\w+);", text, re.M)
    return names


def main():
    args = sys.argv[1:]
    map_file = None
    if "--map" in args:
        i = args.index("--map")
        map_file = args[i + 1]
        del args[i:i + 2]
    library, headers = args[0], args[1:]
    functions, classes = declared(headers)
    internal = internal_names(map_file) if map_file else []
    exported = [s for s in demangled_exports(library)]
    names = {qualified_name(s) for s in exported}
    failures = []
    for f in sorted(functions):
        if f not in names:
            failures.append(f"declared in a public header, not exported: {f}")
    for s in sorted(names):
        if not s.startswith("layerfreeze"):
            if s.startswith(("std::", "nlohmann::", "YAML::", "fmt::", "re2::", "c10", "at::",
                             "torch::")):
                failures.append(f"exports a dependency's symbol: {s}")
            continue
        if s in functions or any(s.startswith(c + "::") or s == c for c in classes):
            continue
        if any(s == n or s.startswith(n + "::") for n in internal):
            continue
        failures.append(f"exported but not in a public header or the map's internal part: {s}")
    print(f"{library}: {len(exported)} symbols exported; {len(functions)} public functions, "
          f"{len(classes)} classes declared")
    for line in failures:
        print("FAIL", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
