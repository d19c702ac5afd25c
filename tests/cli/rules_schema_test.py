#!/usr/bin/env python3
"""The rules JSON schema (rules/schema.json, `layerfreeze schema`) against the parser: every
shipped preset, every example strategy and every rules file the tests keep that `layerfreeze
validate` accepts must validate against the schema, and the schema must reject files the parser
rejects for their shape (an unknown key, a selector with a typo'd kind, a wrong type). An editor
that trusts the schema then neither flags a valid strategy nor waves an invalid one through.

    rules_schema_test.py BUILD/layerfreeze SOURCE_DIR
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml


def main():
    binary, root = sys.argv[1], Path(sys.argv[2])
    schema = json.loads(subprocess.run([binary, "schema"], capture_output=True, text=True,
                                       check=True).stdout)
    shipped = json.loads((root / "rules/schema.json").read_text())
    failures = []
    if schema != shipped:
        failures.append("`layerfreeze schema` differs from rules/schema.json")
    validator = jsonschema.Draft7Validator(schema)
    files = sorted((root / "rules").glob("*.yaml")) + sorted(
        (root / "examples/strategies").glob("*.yaml")) + sorted(
        (root / "fuzz/corpus/rules").glob("*.yaml"))
    files = [f for f in files if f.name != "discovery.yaml"]
    checked = 0
    for f in files:
        ok = subprocess.run([binary, "validate", str(f)], capture_output=True).returncode == 0
        if not ok:
            continue  # a seed or example of an error: the parser refuses it
        doc = yaml.safe_load(f.read_text())
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for e in errors[:3]:
            failures.append(f"{f.relative_to(root)}: {'/'.join(map(str, e.path))}: {e.message[:160]}")
        checked += 1
    bad = {
        "unknown rule key": "rules:\n  - freze: all\n",
        "unknown selector key": "rules:\n  - freeze: {regexp: '.*'}\n",
        "unknown block_cycle key": "rules:\n  - freeze: all\nstages:\n  - every: {steps: 5}\n"
                                   "    rules:\n      - unfreeze: {block_cycle: {blocks: layers, "
                                   "every: 3}}\n",
        "a string for a count": "rules:\n  - unfreeze: {random_layers: {count: [2]}}\n",
        "param choices not a list": "params:\n  o: {type: string, default: a, choices: a}\nrules: []\n",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in bad.items():
            path = Path(tmp) / "r.yaml"
            path.write_text(text)
            parser_rejects = subprocess.run([binary, "validate", str(path)],
                                            capture_output=True).returncode != 0
            schema_rejects = not validator.is_valid(yaml.safe_load(text))
            if not parser_rejects:
                failures.append(f"{name}: the parser accepts it")
            if not schema_rejects:
                failures.append(f"{name}: the schema accepts what the parser rejects")
    for f in failures:
        print("FAIL:", f)
    print(f"{checked} valid rules files checked against the schema, {len(bad)} invalid ones")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
