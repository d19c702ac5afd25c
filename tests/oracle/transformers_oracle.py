#!/usr/bin/env python3
"""transformers as the oracle for layerfreeze's model families.

For every config the project ships (rules/models/*.json, tests/data/configs/*.json,
tests/data/real-checkpoints/*/config.json), builds the model transformers builds from it — on the
`meta` device, so no memory and no weights — and compares it with what `layerfreeze inspect
CONFIG --format json` says:

- the parameter count;
- every name and shape, after the renamings and fusions transformers itself applies when it
  loads a checkpoint (its own `rename_source_key` over its own conversion mapping): a checkpoint
  name must load into a parameter of the model with the same shape, or, where transformers fuses
  tensors (the experts of Mixtral, Qwen-MoE, DeepSeek, Granite), the tensors that fuse into one
  parameter must hold as many numbers as it does; every parameter of the model must be loaded;
- ties: the names layerfreeze calls aliases of one tensor are one tensor in the model, and no
  other tensors are;
- the ends: transformers' input embeddings are role embeddings, its output layer (when a tensor of
  its own) role head;
- for vision-language models, the module tree: what discovery calls a tower lives in the model's
  vision (or audio) sub-model, a connector in its merger/projector, trunk layer i in the language
  model's layer i.

Every shipped family must be covered by at least one config transformers implements. Architectures
transformers does not implement (remote code) are listed as such, not compared.

    .venv/bin/python tests/oracle/transformers_oracle.py build/layerfreeze . \
        [--only CONFIG ...] [--family FAMILY.yaml]

Exit 0 when everything agrees, 1 on any difference (the first differing names are printed), 2 on
a usage error. No network: transformers builds models from the configs on disk.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel  # noqa: E402
from transformers.conversion_mapping import get_model_conversion_mapping  # noqa: E402
from transformers.core_model_loading import (  # noqa: E402
    WeightConverter,
    WeightRenaming,
    rename_source_key,
)

transformers.logging.set_verbosity_error()

SHOWN = 5  # differences printed per kind
CONNECTOR_CLASS = re.compile(r"Merger|Projector|Projection|Connector|Resampler|Adapter", re.I)
# A tower is a sub-model with a config of its own for another modality: its config class says
# so (SiglipVisionConfig, Qwen2AudioEncoderConfig), or it is a composite's encoder config
# (VoxtralEncoderConfig: the audio encoder of Voxtral).
TOWER_CONFIG = re.compile(r"Vision|Audio|Visual|EncoderConfig$", re.I)


def natural(s):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def few(names, shown=3):
    """The first names of a list and how many more."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" (and {more} more)" if more > 0 else "")


def configs(root):
    found = glob.glob(os.path.join(root, "rules/models/*.json"))
    found += glob.glob(os.path.join(root, "tests/data/configs/*.json"))
    found += glob.glob(os.path.join(root, "tests/data/real-checkpoints/*/config.json"))
    return sorted(found)


def shipped_families(root):
    families = {}
    for path in sorted(glob.glob(os.path.join(root, "rules/families/*.yaml"))):
        text = open(path).read()
        m = re.search(r"^family:\s*(\S+)", text, re.M)
        families[m.group(1) if m else os.path.basename(path)[:-5]] = path
    return families


def build_transformers_model(cfg):
    """(model, how) or (None, reason): the model transformers builds from this config."""
    model_type = cfg.get("model_type")
    try:
        config = AutoConfig.for_model(**cfg)
    except ValueError as e:
        if "Unrecognized model identifier" in str(e) or model_type not in str(e):
            return None, f"model type '{model_type}' is not implemented by transformers " \
                         f"{transformers.__version__} (remote code)"
        raise
    arch = (cfg.get("architectures") or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    with torch.device("meta"):
        if cls is not None:
            try:
                return cls(config), arch
            except (AttributeError, TypeError, ValueError):
                pass  # e.g. a VL architecture named in a text-only (pruned) config
        model = AutoModelForCausalLM.from_config(config)
    how = type(model).__name__
    if arch and cls is None:
        how += f" (architecture {arch} is remote code; model_type {model_type})"
    elif arch:
        how += f" ({arch} cannot be built from this config)"
    return model, how


class NoFamily(Exception):
    """layerfreeze has no family for the config's model type (it cannot plan from the config
    alone): nothing to compare, said as a skip, not a pass."""


def inspect(cli, path, family):
    cmd = [cli, "inspect", path, "--format", "json"]
    if family:
        cmd += ["--family", family]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0 and "[unknown-family]" in out.stderr and not family:
        raise NoFamily(out.stderr.splitlines()[0])
    if out.returncode != 0:
        raise RuntimeError(f"layerfreeze inspect failed:\n{out.stderr}")
    return json.loads(out.stdout)


def runtime_name_of(model):
    """A function from checkpoint name to (runtime name, fused?) as transformers loads it."""
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    meta_state = model.state_dict()
    prefix = getattr(model, "base_model_prefix", None)

    def convert(name):
        renamed, converter = rename_source_key(name, renamings, converters, prefix, meta_state)
        return renamed, converter is not None

    return convert


def compare_tensors(ours, model):
    """Differences between layerfreeze's names/shapes/ties and the model's parameters."""
    problems = []
    theirs = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers())
    convert = runtime_name_of(model)
    loaded = {}  # runtime name -> list of (our name, shape)
    fused = set()
    canonical_of = {}  # our name (alias or canonical) -> canonical name
    for p in ours["params"]:
        for name in [p["name"]] + p["aliases"]:
            canonical_of[name] = p["name"]
            runtime, is_fused = convert(name)
            loaded.setdefault(runtime, []).append((name, p["shape"]))
            if is_fused:
                fused.add(runtime)
    extra = sorted((n for n in loaded if n not in theirs), key=natural)
    for runtime in extra:
        names = [n for n, _ in loaded[runtime]]
        what = "a buffer" if runtime in buffers else "not a parameter"
        into = "" if names == [runtime] else f", which transformers loads as {runtime}"
        problems.append(f"layerfreeze has {few(names)}{into}: {what} of {type(model).__name__}")
    missing = sorted((n for n in theirs if n not in loaded), key=natural)
    for runtime in missing:
        problems.append(f"transformers has {runtime} {list(theirs[runtime].shape)}, which no name "
                        f"of layerfreeze's loads into")
    for runtime in sorted((n for n in loaded if n in theirs), key=natural):
        want = list(theirs[runtime].shape)
        sources = loaded[runtime]
        if runtime in fused:
            numel = 0
            for _, shape in {canonical_of[n]: (n, s) for n, s in sources}.values():
                k = 1
                for d in shape:
                    k *= d
                numel += k
            if numel != theirs[runtime].numel():
                problems.append(f"{len(sources)} tensors of layerfreeze's fuse into {runtime} "
                                f"{want} ({theirs[runtime].numel():,} numbers) but hold {numel:,} "
                                f"(first: {sources[0][0]} {sources[0][1]})")
        else:
            for name, shape in sources:
                if shape != want:
                    problems.append(f"{name}: layerfreeze {shape}, transformers {want} "
                                    f"({runtime})")
    # Ties: one tensor in transformers <=> one parameter (with aliases) in layerfreeze.
    runtime_owner = {}
    for runtime, sources in loaded.items():
        if runtime in theirs and runtime not in fused:
            for name, _ in sources:
                runtime_owner[name] = runtime
    by_tensor = {}
    for name, t in theirs.items():
        by_tensor.setdefault(id(t), []).append(name)
    for group in by_tensor.values():
        if any(r in fused for r in group):
            continue  # a fused tensor: many checkpoint tensors by design (compared above)
        owners = {canonical_of[n] for r in group for n, _ in loaded.get(r, [])}
        if len(owners) > 1:
            problems.append(f"transformers ties {', '.join(group)} into one tensor; layerfreeze "
                            f"keeps {few(sorted(owners, key=natural))} apart")
    for p in ours["params"]:
        if p["aliases"]:
            runtimes = {id(theirs[runtime_owner[n]]) for n in [p["name"]] + p["aliases"]
                        if n in runtime_owner}
            if len(runtimes) > 1:
                problems.append(f"layerfreeze ties {p['name']} and {', '.join(p['aliases'])}; "
                                f"transformers holds separate tensors")
    return problems


def module_path(model, runtime_name):
    """The modules from the root to the parameter's owner, as (name, module)."""
    parts = runtime_name.split(".")[:-1]
    chain, module, prefix = [], model, []
    for part in parts:
        module = getattr(module, part, None)
        if module is None:
            break
        prefix.append(part)
        chain.append((".".join(prefix), module))
    return chain


def runtime_part(model, runtime_name):
    """What the model's module tree makes of a parameter: tower, connector, or trunk layer i."""
    chain = module_path(model, runtime_name)
    if not chain or isinstance(chain[-1][1], PreTrainedModel):
        # A bare parameter of a (sub-)model (LLaVA-OneVision's `image_newline`): the tree does
        # not say what it is.
        return "unknown", None
    if any(CONNECTOR_CLASS.search(type(m).__name__) for _, m in chain):
        return "connector", None
    for _, m in chain:
        config = getattr(m, "config", None)
        # A sub-model with its own vision or audio config (the top model's own config, even
        # when its name says vision — LlavaOnevisionConfig — is not a tower's).
        if isinstance(m, PreTrainedModel) and config is not None and \
                TOWER_CONFIG.search(type(config).__name__) and m is not model and \
                config is not model.config:
            return "tower", None
    layer = re.search(r"\.layers\.(\d+)\.", runtime_name)
    return ("layer", int(layer.group(1))) if layer else ("other", None)


def compare_ends(ours, model, convert):
    """The two ends every model has: what transformers calls the input embeddings
    (get_input_embeddings) must be role embeddings in layerfreeze, and an output layer
    (get_output_embeddings) that is a tensor of its own must be role head."""
    problems = []
    names_of = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(p), set()).add(n)
    ours_by_runtime = {}
    for p in ours["params"]:
        for n in [p["name"]] + p.get("aliases", []):
            ours_by_runtime[convert(n)[0]] = p

    def ours_for(module):
        weight = getattr(module, "weight", None) if module is not None else None
        if not isinstance(weight, torch.nn.Parameter):
            return None, None
        for n in names_of.get(id(weight), ()):
            if n in ours_by_runtime:
                return ours_by_runtime[n], weight
        return None, weight

    try:
        inp = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        inp = None
    try:
        out = model.get_output_embeddings()
    except (NotImplementedError, AttributeError):
        out = None
    p, w_in = ours_for(inp)
    if w_in is not None and p is None:
        problems.append("transformers' input embeddings are no tensor of layerfreeze's")
    elif p is not None and p["role"] != "embeddings":
        problems.append(f"{p['name']}: transformers' input embeddings, layerfreeze's role "
                        f"{p['role']}")
    q, w_out = ours_for(out)
    if w_out is not None and w_out is not w_in:
        if q is None:
            problems.append("transformers' output layer is no tensor of layerfreeze's")
        elif q["role"] != "head":
            problems.append(f"{q['name']}: transformers' output layer, layerfreeze's role "
                            f"{q['role']}")
    return problems


def compare_structure(ours, model):
    """The model's ends for every model; towers, connectors and trunk layers against the module
    tree for vision-language models."""
    convert = runtime_name_of(model)
    problems = compare_ends(ours, model, convert)
    vl = bool(ours["towers"] or ours["connectors"])
    trunk_first = {s["container"]: s["first_layer"] for s in ours["stacks"] if s["tower"] is None}
    def first_of(name):  # the first trunk layer of the stack `name` is in (an encoder–decoder's
        for container, first in trunk_first.items():  # decoder counts on from the encoder)
            if name.startswith(container + "."):
                return first
        return 0

    for p in ours["params"]:
        runtime, _ = convert(p["name"])
        part, index = runtime_part(model, runtime)
        vl = vl or part in ("tower", "connector")
        role = p["role"]
        if part == "unknown":
            continue
        if role in ("tower", "connector") and part != role:
            problems.append(f"{p['name']}: layerfreeze calls it {role}, transformers' module tree "
                            f"{part} ({runtime})")
        elif role == "layer" and part in ("tower", "connector"):
            problems.append(f"{p['name']}: layerfreeze calls it a trunk layer, transformers' module "
                            f"tree {part} ({runtime})")
        elif role == "layer" and part == "layer" and trunk_first and \
                index + first_of(p["name"]) != p["layer"]:
            problems.append(f"{p['name']}: layerfreeze's trunk layer {p['layer']}, transformers' "
                            f"layer {index} ({runtime})")
        elif role not in ("tower", "connector", "layer") and part in ("tower", "connector"):
            problems.append(f"{p['name']}: layerfreeze calls it {role}, transformers' module tree "
                            f"{part} ({runtime})")
    return problems, vl


def check(cli, root, path, family):
    rel = os.path.relpath(path, root)
    cfg = json.load(open(path))
    model, how = build_transformers_model(cfg)
    if model is None:
        return "skip", rel, how, [], None
    try:
        ours = inspect(cli, path, family)
    except NoFamily:
        model_type = cfg.get("model_type", "?")
        return ("skip", rel, f"{how}: layerfreeze has no family for model_type '{model_type}' "
                "(docs/FAMILIES.md lists the shipped ones)", [], None)
    problems = []
    theirs_numel = sum(p.numel() for p in model.parameters())
    if ours["model"]["numel"] != theirs_numel:
        problems.append(f"parameters: layerfreeze {ours['model']['numel']:,}, transformers "
                        f"{theirs_numel:,} (difference {ours['model']['numel'] - theirs_numel:+,})")
    problems += compare_tensors(ours, model)
    structure, vl = compare_structure(ours, model)
    problems += structure
    summary = f"{how}: {len(ours['params']):,} tensors, {theirs_numel:,} parameters" + \
              (", towers/connectors/trunk checked" if vl else "")
    return ("fail" if problems else "ok"), rel, summary, problems, ours["model"].get("family")


def architecture_model_types():
    """Every model class transformers' auto mappings name, with its model type."""
    from transformers.models.auto import modeling_auto
    out = {}
    for name in dir(modeling_auto):
        mapping = getattr(modeling_auto, name)
        if not (name.startswith("MODEL_") and name.endswith("_MAPPING_NAMES")) or \
                not isinstance(mapping, dict):
            continue
        for model_type, classes in mapping.items():
            for cls in classes if isinstance(classes, (list, tuple)) else [classes]:
                out.setdefault(cls, model_type)
    return out


def family_architectures(path):
    """The architectures a family file lists (a list or a map of class -> variables)."""
    import yaml
    listed = yaml.safe_load(open(path)).get("architectures") or []
    return list(listed.keys()) if isinstance(listed, dict) else list(listed)


def every_architecture(cli, root, checked, tmp):
    """Each architecture every shipped family lists, built by transformers from a config of its
    model type (a shipped one, else transformers' defaults) with `architectures` set to it."""
    types = architecture_model_types()
    by_type, by_arch = {}, {}
    for path in checked:
        cfg = json.load(open(path))
        by_type.setdefault(cfg.get("model_type"), cfg)
        by_arch.setdefault((cfg.get("architectures") or [None])[0], cfg)
    results = []
    for family, file in shipped_families(root).items():
        for arch in family_architectures(file):
            cls = getattr(transformers, arch, None)
            config_class = getattr(cls, "config_class", None)
            model_type = getattr(config_class, "model_type", None) or types.get(arch)
            if cls is None or model_type is None:
                results.append(("skip", f"{family}: {arch}", "not a transformers class", [], None))
                continue
            cfg = dict(by_arch.get(arch) or by_type.get(model_type) or
                       AutoConfig.for_model(model_type).to_dict())
            model_type = cfg.get("model_type", model_type)
            cfg["architectures"] = [arch]
            cfg["model_type"] = model_type
            path = os.path.join(tmp, f"{family}-{arch}.json")
            json.dump(cfg, open(path, "w"), default=str)
            try:
                status, _, summary, problems, _ = check(cli, root, path, None)
            except RuntimeError as e:  # layerfreeze cannot read the config: a difference too
                status, summary, problems = "fail", "layerfreeze refuses it", \
                    str(e).splitlines()[1:4]
            results.append((status, f"{family}: {arch}", summary, problems, family))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cli")
    ap.add_argument("root")
    ap.add_argument("--only", nargs="*", help="these configs instead of every shipped one")
    ap.add_argument("--family", help="a family file for layerfreeze to use (inspect --family)")
    args = ap.parse_args()
    paths = [os.path.abspath(p) for p in args.only] if args.only else configs(args.root)
    covered, failed = set(), 0
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for path in paths:
        status, rel, summary, problems, family = check(args.cli, args.root, path, args.family)
        print(f"{status:4}  {rel}  {summary}")
        for p in problems[:SHOWN]:
            print(f"      {p}")
        if len(problems) > SHOWN:
            print(f"      ... and {len(problems) - SHOWN} more")
        if status == "fail":
            failed += 1
        elif status == "ok" and family:
            covered.add(family)
    if not args.only:
        import tempfile
        print("every architecture each family lists:")
        with tempfile.TemporaryDirectory() as tmp:
            for status, what, summary, problems, family in every_architecture(
                    args.cli, args.root, paths, tmp):
                if status == "ok" and family:
                    covered.add(family)
                print(f"{status:4}  {what}  {summary}")
                for p in problems[:SHOWN]:
                    print(f"      {p}")
                if len(problems) > SHOWN:
                    print(f"      ... and {len(problems) - SHOWN} more")
                failed += status == "fail"
        for family, file in shipped_families(args.root).items():
            if family not in covered:
                print(f"fail  {os.path.relpath(file, args.root)}: no shipped config of family "
                      f"'{family}' was checked against transformers")
                failed += 1
    print(f"{failed} of {len(paths)} configs differ" if failed else
          f"all {len(paths)} configs agree with transformers (or are remote code, or of a model "
          "type layerfreeze has no family for: skipped above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
