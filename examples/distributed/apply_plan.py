#!/usr/bin/python3
"""Apply a layerfreeze plan to a PyTorch model in a Python DDP/FSDP job.

The plan is the JSON that `layerfreeze plan RULES --model MODEL --format json` prints: each entry
of "stages" has the time it starts ("at": epoch, step) and the names frozen from then on
("frozen"). A plan is a pure function of the rules and the model, so every rank can read the same
file and change state at the same step; this module only sets requires_grad.

    from apply_plan import FreezePlan
    plan = FreezePlan.load("plan.json")
    plan.apply(model, epoch=0)                  # before wrapping in DDP / FSDP
    for epoch in range(epochs):
        if plan.apply(model, epoch=epoch):      # the trainable set changed:
            model = rewrap(model)                # DDP registers parameters once (see DISTRIBUTED.md)

Run as a script it applies the plan to a TorchScript file at each EPOCH (or EPOCH:STEP) and
checks the frozen tensors and the trainable count against the plan's:
    apply_plan.py plan.json model.pt [EPOCH[:STEP]]...
"""
import json
import sys


class FreezePlan:
    def __init__(self, plan):
        if plan.get("format") != "layerfreeze.plan/1":
            raise ValueError("not a layerfreeze plan (format %r)" % plan.get("format"))
        if plan.get("truncated"):
            raise ValueError("the plan's timeline was cut; print it with a shorter --epochs or --steps")
        self.fingerprint = plan["fingerprint"]
        self.stages = plan["stages"]
        # `layerfreeze plan --distributed`: [{"code", "message", "notes"}], e.g. fsdp-partial-unit
        self.lint = plan.get("distributed", [])
        self._applied = None

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    def stage_at(self, epoch, step=None):
        """The last stage that has started at (epoch, step)."""
        current = self.stages[0]
        for st in self.stages[1:]:
            at = st["at"]
            if at.get("step") is not None and step is not None:
                started = step >= at["step"]
            else:
                started = epoch >= at["epoch"]
            if started:
                current = st
        return current

    def apply(self, model, epoch, step=None):
        """Sets requires_grad for (epoch, step); returns True when the trainable set changed."""
        st = self.stage_at(epoch, step)
        if st is self._applied:
            return False
        frozen = set(st["frozen"])
        params = dict(model.named_parameters())  # a tied weight is listed once, under its first name
        missing = frozen - params.keys()
        if missing:
            raise KeyError("the plan names parameters this model does not have: %s" % sorted(missing)[:5])
        for name, p in params.items():
            p.requires_grad_(name not in frozen)
            if name in frozen:
                p.grad = None  # a stale gradient would still move it under momentum or weight decay
        self._applied = st
        return True


def main(argv):
    import torch

    if len(argv) < 3:
        print(__doc__)
        return 2
    plan = FreezePlan.load(argv[1])
    model = torch.jit.load(argv[2])
    ok = True
    for when in argv[3:] or ["0"]:
        epoch, _, step = when.partition(":")
        epoch, step = int(epoch), (int(step) if step else None)
        plan.apply(model, epoch, step)
        st = plan.stage_at(epoch, step)
        frozen = sum(1 for _, p in model.named_parameters() if not p.requires_grad)
        trainable = sum(p.numel() for _, p in model.named_parameters() if p.requires_grad)
        print("%s: %d frozen tensors (plan: %d), %d trainable parameters (plan: %d)"
              % (when, frozen, st["frozen_tensors"], trainable, st["trainable_numel"]))
        ok = ok and frozen == st["frozen_tensors"] and trainable == st["trainable_numel"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
