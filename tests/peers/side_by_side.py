#!/usr/bin/env python3
"""The peers side by side: Lightning's BackboneFinetuning and a finetuning-scheduler explicit
schedule run for real, next to layerfreeze's equivalent strategies run through the Executor, on
one small model exported to TorchScript. At the first batch of every epoch, the trainable
parameters and the optimizer's param groups (members and learning rate) must be the same.

    .venv/bin/python tests/peers/side_by_side.py REPLAY CLI ROOT

REPLAY is layerfreeze_peer_replay (tests/peers/peer_replay.cpp), CLI is layerfreeze (for
`import fts`). Exit 0 when every epoch agrees, 1 otherwise (the first differences printed).
"""
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402
import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.callbacks import BackboneFinetuning, Callback  # noqa: E402
from finetuning_scheduler import FinetuningScheduler  # noqa: E402
from finetuning_scheduler import FTSCheckpoint, FTSEarlyStopping  # noqa: E402

for name in ("lightning", "lightning.pytorch", "lightning.fabric", "finetuning_scheduler"):
    logging.getLogger(name).setLevel(logging.ERROR)

LR = 0.1


class Net(nn.Module):
    """A backbone with BatchNorm and a head with LayerNorm: what BackboneFinetuning expects."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.head(self.backbone(x))


class NetWithNorms(Net):
    """A backbone ending in a LayerNorm of the head's width: at initialisation its weight and
    bias equal the head's LayerNorm's (ones, zeros) in value."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(16),
            nn.Linear(16, 8))


class Lit(pl.LightningModule):
    def __init__(self, net):
        super().__init__()
        self.backbone, self.head = net.backbone, net.head  # the same parameter names as Net

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=LR,
                               momentum=0.9)


class ScriptedLit(Lit):
    """Logs a given validation loss each epoch: FTSEarlyStopping decides on a scripted sequence,
    which layerfreeze's executor is given too (the values are dyadic, exact in float32)."""

    def __init__(self, net, values):
        super().__init__(net)
        self.values = values

    def validation_step(self, batch, _):
        self.log("val_loss", torch.tensor(self.values[self.current_epoch]))


class Recorder(Callback):
    """Trainable names and param groups at the first batch of each epoch (after the peer's
    own epoch-start hook has run)."""

    def __init__(self):
        self.epochs = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch in self.epochs:
            return
        names = {id(p): n for n, p in module.named_parameters()}
        self.epochs[trainer.current_epoch] = {
            "trainable": sorted(n for n, p in module.named_parameters() if p.requires_grad),
            "groups": [{"lr": g["lr"], "params": sorted(names[id(p)] for p in g["params"])}
                       for g in trainer.optimizers[0].param_groups],
        }


def loader():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def run_peer(callback, epochs, workdir, net=Net, values=None, extra=()):
    torch.manual_seed(0)
    recorder = Recorder()
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback, *extra, recorder],
                         accelerator="cpu", logger=False,
                         enable_checkpointing=bool(extra), enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=1,
                         num_sanity_val_steps=0, default_root_dir=workdir)
    module = ScriptedLit(net(), values) if values else Lit(net())
    trainer.fit(module, loader(), loader())
    return [recorder.epochs[e] for e in range(epochs)]


def run_layerfreeze(replay, model, rules, epochs, sets=(), values=None):
    if values:
        sets = [f"--report=val_loss:{','.join(repr(v) for v in values)}", *sets]
    out = subprocess.run([replay, model, rules, str(epochs), str(LR), *sets],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"layerfreeze_peer_replay failed:\n{out.stderr}")
    return [json.loads(line) for line in out.stdout.splitlines()]


def compare(title, peer, ours, lr_from=None):
    """Differences per epoch; group learning rates from epoch `lr_from` on are not compared."""
    problems = []
    for e, (p, o) in enumerate(zip(peer, ours)):
        if p["trainable"] != o["trainable"]:
            only_p = sorted(set(p["trainable"]) - set(o["trainable"]))
            only_o = sorted(set(o["trainable"]) - set(p["trainable"]))
            problems.append(f"epoch {e}: trainable only in the peer {only_p}, only in "
                            f"layerfreeze {only_o}")
        pg = [g["params"] for g in p["groups"]]
        og = [g["params"] for g in o["groups"]]
        if pg != og:
            problems.append(f"epoch {e}: param groups differ: peer {pg}, layerfreeze {og}")
        elif lr_from is None or e < lr_from:
            for k, (a, b) in enumerate(zip(p["groups"], o["groups"])):
                if not math.isclose(a["lr"], b["lr"], rel_tol=1e-9):
                    problems.append(f"epoch {e}: group {k} lr: peer {a['lr']}, layerfreeze "
                                    f"{b['lr']}")
    status = "FAIL" if problems else "ok"
    groups = [(round(g["lr"], 6), len(g["params"])) for g in ours[-1]["groups"]]
    print(f"{status:4}  {title}: {len(peer)} epochs, trainable per epoch "
          f"{[len(x['trainable']) for x in peer]}, last groups (lr, tensors) {groups}")
    for p in problems[:5]:
        print(f"      {p}")
    return not problems


SCHEDULES = {"3 phases, per-phase lr": """\
0:
  params:
  - head.3.weight
  - head.3.bias
  max_transition_epoch: 1
1:
  params:
  - head\\.[01]\\.
  lr: 0.05
  max_transition_epoch: 3
2:
  params:
  - backbone.*
  lr: 0.01
  max_transition_epoch: 5
""", "max_transition_epoch 2, 1, 2, 6, 7: one phase an epoch": """\
0:
  params: ['head\\.3\\..*']
  max_transition_epoch: 2
1:
  params: ['head\\.1\\..*']
  max_transition_epoch: 1
2:
  params: ['head\\.0\\..*']
  lr: 0.05
  max_transition_epoch: 2
3:
  params: ['backbone\\.4\\..*']
  max_transition_epoch: 6
4:
  params: ['backbone\\.3\\..*']
  max_transition_epoch: 7
""", "quoted phase keys, a phase at epoch 0 with its lr": """\
'0':
  params: ['head\\.3\\..*']
  max_transition_epoch: 0
'1':
  params: ['head\\.[01]\\.']
  lr: 0.05
  max_transition_epoch: 2
'2':
  params: ['backbone.*']
  lr: 0.01
  max_transition_epoch: 4
""", "4 phases: names, prefix regexes, a phase without lr": """\
0:
  params: ['head\\.3\\..*']
  max_transition_epoch: 2
1:
  params: [head.0.weight, head.0.bias, 'head\\.1']
  max_transition_epoch: 3
2:
  params: ['backbone\\.[34]']
  lr: 0.02
  max_transition_epoch: 4
3:
  params: ['backbone\\.[01]\\.']
  max_transition_epoch: 5
"""}


REFUSED = {"overlapping phases": """\
0:
  params: ['head\\.3\\..*']
  max_transition_epoch: 1
1:
  params: ['head.*']
  max_transition_epoch: 2
""", "an entry that selects nothing": """\
0:
  params: ['head\\.3\\..*', 'tail\\..*']
  max_transition_epoch: 1
1:
  params: ['backbone.*']
  max_transition_epoch: 2
"""}

# (title, schedule, val_loss after each epoch, patience)
ES_CASES = [
    # Phase 1 at its max_transition_epoch (2) before any plateau; phase 2 at the plateau seen
    # after epoch 4 (0.375, 0.3125: two epochs no better than 0.25), before its bound (6).
    ("a bound, then a plateau", """\
0:
  params: ['head\\.3\\..*']
  max_transition_epoch: 2
1:
  params: ['head\\.[01]\\.']
  lr: 0.05
  max_transition_epoch: 6
2:
  params: ['backbone.*']
  lr: 0.01
""", [1.0, 0.5, 0.25, 0.375, 0.3125, 0.125, 0.0625, 0.03125], 2),
    # Plateaus only, patience 1; a phase without lr (base_max_lr); the last phase's plateau ends
    # nothing (FTS would stop training there: max_epochs ends it first).
    ("plateaus only", """\
0:
  params: ['head\\.3\\..*']
1:
  params: ['head\\.[01]\\.']
2:
  params: ['backbone\\.[34]\\.']
  lr: 0.02
3:
  params: ['backbone\\.[01]\\.']
""", [1.0, 0.5, 0.75, 0.25, 0.25, 0.125, 0.5, 0.0625], 1),
]


def main():
    replay, cli, root = sys.argv[1:4]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = os.path.join(tmp, "net.pt")
        torch.jit.script(Net()).save(model)

        # Lightning's BackboneFinetuning (its defaults but the epoch) against
        # examples/peers/backbone_finetuning.yaml. After the unfreeze epoch Lightning multiplies
        # the backbone group's lr by lambda_func every epoch: a schedule, compared up to there.
        k = 2
        peer = run_peer(BackboneFinetuning(unfreeze_backbone_at_epoch=k), 5, tmp)
        ours = run_layerfreeze(replay, model,
                               os.path.join(root, "examples/peers/backbone_finetuning.yaml"), 5,
                               [f"unfreeze_backbone_at_epoch={k}"])
        ok &= compare("Lightning BackboneFinetuning(unfreeze_backbone_at_epoch=2)", peer, ours,
                      lr_from=k + 1)
        # train_bn=False: Lightning's initial freeze (freeze_before_training) does not pass it on,
        # so the backbone's BatchNorm layers train from the start all the same; the flag only
        # keeps them out of the new group, which they are not missing from anyway.
        peer = run_peer(BackboneFinetuning(unfreeze_backbone_at_epoch=1, train_bn=False,
                                           backbone_initial_ratio_lr=0.5), 3, tmp)
        ours = run_layerfreeze(replay, model,
                               os.path.join(root, "examples/peers/backbone_finetuning.yaml"), 3,
                               ["unfreeze_backbone_at_epoch=1", "backbone_initial_ratio_lr=0.5"])
        ok &= compare("Lightning BackboneFinetuning(1, train_bn=False, ratio 0.5)", peer, ours,
                      lr_from=2)

        # A stage at epoch 0 with its own rate: Lightning's backbone joins at epoch 0 as a second
        # group at 0.1 × 0.2 (the head, and the backbone's BatchNorm trainable from the start, at
        # 0.1). The strategy's stage fires when the executor is built, before the optimizer
        # exists; attach_optimizer moves what it thawed to a group at its rate.
        peer = run_peer(BackboneFinetuning(unfreeze_backbone_at_epoch=0,
                                           backbone_initial_ratio_lr=0.2), 2, tmp)
        ours = run_layerfreeze(replay, model,
                               os.path.join(root, "examples/peers/backbone_finetuning.yaml"), 2,
                               ["unfreeze_backbone_at_epoch=0", "backbone_initial_ratio_lr=0.2"])
        ok &= compare("Lightning BackboneFinetuning(0, ratio 0.2): two groups at epoch 0", peer,
                      ours, lr_from=1)

        # What we noticed: Lightning's unfreeze_and_add_param_group leaves out of the new group
        # every parameter equal *in value* to one the optimizer holds (filter_on_optimizer
        # compares with torch.equal), so a backbone LayerNorm still at its initial ones/zeros —
        # here unfrozen at epoch 0, before the head's LayerNorm has moved from the same values —
        # is made trainable and never stepped. layerfreeze compares tensors by identity.
        torch.manual_seed(0)
        norms = os.path.join(tmp, "net_norms.pt")
        torch.jit.script(NetWithNorms()).save(norms)
        peer = run_peer(BackboneFinetuning(unfreeze_backbone_at_epoch=0), 1, tmp, NetWithNorms)
        ours = run_layerfreeze(replay, norms,
                               os.path.join(root, "examples/peers/backbone_finetuning.yaml"), 1,
                               ["unfreeze_backbone_at_epoch=0"])
        def stranded(epoch):  # trainable, yet in no param group: never stepped
            held = {n for g in epoch["groups"] for n in g["params"]}
            return sorted(set(epoch["trainable"]) - held)
        left_out, mine = stranded(peer[0]), stranded(ours[0])
        expected = ["backbone.3.bias", "backbone.3.weight"]
        same_trainable = peer[0]["trainable"] == ours[0]["trainable"] and mine == []
        print(f"{'ok' if left_out == expected and same_trainable else 'FAIL':4}  Lightning leaves "
              f"{left_out} (trainable) out of the optimizer: value-equal to the head's LayerNorm; "
              f"layerfreeze steps every trainable tensor ({mine} left out)")
        ok &= left_out == expected and same_trainable

        # An FTS explicit schedule, run by FTS itself, against `layerfreeze import fts` of it.
        for title, text in SCHEDULES.items():
            schedule = os.path.join(tmp, "schedule.yaml")
            with open(schedule, "w") as f:
                f.write(text)
            imported = os.path.join(tmp, "imported.yaml")
            subprocess.run([cli, "import", "fts", schedule, "--model", model, "-o", imported,
                            "--epoch-transitions-only"],
                           check=True, capture_output=True, text=True)
            fts = FinetuningScheduler(ft_schedule=schedule, epoch_transitions_only=True,
                                      restore_best=False)
            peer = run_peer(fts, 8, tmp)
            ours = run_layerfreeze(replay, model, imported, 8)
            ok &= compare(f"finetuning-scheduler schedule ({title}) through import fts", peer,
                          ours)
        # FTS's default: FTSEarlyStopping ends each phase when val_loss stops improving, its
        # max_transition_epoch at the latest — run by FTS on a scripted val_loss, next to the
        # imported strategy whose metric stages the executor is told the same values.
        for title, text, values, patience in ES_CASES:
            schedule = os.path.join(tmp, "schedule.yaml")
            with open(schedule, "w") as f:
                f.write(text)
            imported = os.path.join(tmp, "imported.yaml")
            subprocess.run([cli, "import", "fts", schedule, "--model", model, "-o", imported,
                            "--patience", str(patience)],
                           check=True, capture_output=True, text=True)
            fts = FinetuningScheduler(ft_schedule=schedule, restore_best=False)
            es = FTSEarlyStopping(monitor="val_loss", patience=patience, min_delta=0.0)
            ckpt = FTSCheckpoint(monitor="val_loss", dirpath=os.path.join(tmp, "ckpt"))
            peer = run_peer(fts, len(values), tmp, values=values, extra=(es, ckpt))
            ours = run_layerfreeze(replay, model, imported, len(values), values=values)
            ok &= compare(f"finetuning-scheduler + FTSEarlyStopping ({title}) through import fts",
                          peer, ours)
        # What FTS refuses, the import refuses: phases that share a parameter, an entry that
        # selects nothing.
        for title, text in REFUSED.items():
            schedule = os.path.join(tmp, "refused.yaml")
            with open(schedule, "w") as f:
                f.write(text)
            ours = subprocess.run([cli, "import", "fts", schedule, "--model", model],
                                  capture_output=True, text=True)
            try:
                run_peer(FinetuningScheduler(ft_schedule=schedule, epoch_transitions_only=True,
                                             restore_best=False), 2, tmp)
                theirs = "accepted"
            except Exception as e:  # noqa: BLE001 - FTS raises its own exception types
                theirs = f"refused ({type(e).__name__})"
            agree = ours.returncode == 1 and theirs.startswith("refused")
            print(f"{'ok' if agree else 'FAIL':4}  {title}: FTS {theirs}; import fts exit "
                  f"{ours.returncode}: {ours.stderr.strip().splitlines()[0] if ours.stderr else ''}")
            ok &= agree
    print("the peers and layerfreeze agree at every epoch" if ok else "differences found")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
