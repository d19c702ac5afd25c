#!/usr/bin/env bash
# Strategies versioned in git (docs/CLI.md, "Versioned strategies"): two versions of a strategy
# committed to a temporary repository and diffed by revision (text, SVG, HTML); `plan --lock`
# and `check`: passes on an unchanged lock, fails with the difference after the strategy
# changes, after the model changes, and for a preset's parameter changed in the lock's place.
set -u
bin="$(realpath "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# expect CODE NAME -- ARGS: runs the binary; stdout in out, stderr in err.
expect() {
  local code=$1 name=$2
  shift 3
  "$bin" "$@" >out 2>err
  local got=$?
  if [[ $got -eq $code ]]; then ok; else bad "$name: exit $got, expected $code"; head -5 err out; fi
}
contains() {
  if grep -qF -- "$2" "${3:-out}"; then ok; else bad "$1: no '$2' in ${3:-out}"; head -20 "${3:-out}"; fi
}
not_contains() {
  if grep -qF -- "$2" "${3:-out}"; then bad "$1: '$2' in ${3:-out}"; head -20 "${3:-out}"; else ok; fi
}

# Outside a repository: a clear error.
expect 1 "outside a repository" -- diff HEAD:train/freeze.yaml preset:lp_lora --model builtin:gpt2
contains "outside a repository" "not inside a git repository" err

git init -q repo && cd repo
git config user.email ci@example.com && git config user.name ci
mkdir -p train
printf 'rules:\n  - freeze: {layers: "0:4"}\n' > train/freeze.yaml
git add train && git commit -qm "v1: freeze the first four layers"
printf 'rules:\n  - freeze: [embeddings, {layers: "0:6"}]\n' > train/freeze.yaml
git commit -qam "v2: and the embeddings, and two more layers"

expect 1 "diff by revision" -- diff HEAD~1:train/freeze.yaml train/freeze.yaml --model builtin:gpt2
contains "diff by revision" "A: HEAD~1:train/freeze.yaml"
contains "diff by revision" "layers 4–5 (transformer.h.4 – transformer.h.5): trainable in A, frozen in B"
contains "diff by revision" "transformer.wte.weight: trainable in A, frozen in B"
expect 1 "two revisions" -- diff HEAD~1:train/freeze.yaml HEAD:train/freeze.yaml --model builtin:gpt2
contains "two revisions" "26 parameters differ"
expect 0 "same revision" -- diff HEAD:train/freeze.yaml train/freeze.yaml --model builtin:gpt2
contains "same revision" "the two plans are the same (fingerprint"
# From a subdirectory, a relative path is relative to it.
(cd train && "$bin" diff HEAD~1:freeze.yaml freeze.yaml --model builtin:gpt2 >../out 2>../err; [[ $? -eq 1 ]]) && ok || bad "from a subdirectory"
contains "from a subdirectory" "26 parameters differ"
expect 1 "diff svg by revision" -- diff HEAD~1:train/freeze.yaml train/freeze.yaml --model builtin:gpt2 --format svg
if grep -c 'data-differs="1"' out | grep -qv '^0$'; then ok; else bad "diff svg by revision: no outlined cell"; fi
expect 1 "unknown revision" -- diff HEAD~5:train/freeze.yaml train/freeze.yaml --model builtin:gpt2
contains "unknown revision" "'HEAD~5' is not a revision of this repository" err
expect 1 "missing path" -- diff HEAD~1:train/other.yaml train/freeze.yaml --model builtin:gpt2
contains "missing path" "'train/other.yaml' does not exist at revision HEAD~1" err
# An error inside a file at a revision is located there.
printf 'rules:\n  - freez: all\n' > train/broken.yaml && git add train/broken.yaml && git commit -qm broken
expect 1 "error at a revision" -- plan HEAD:train/broken.yaml --model builtin:gpt2
contains "error at a revision" "HEAD:train/broken.yaml:2:5: error:" err

# The CI script of examples/plan_in_ci: the picture, the report and the comment of a change.
LAYERFREEZE="$bin" "$here/../../examples/plan_in_ci/strategy_diff.sh" HEAD~2 train/freeze.yaml builtin:gpt2 ci-out >out 2>err && ok || bad "strategy_diff.sh: $(cat err)"
for f in strategy-diff.svg strategy-diff.html comment.md; do [[ -s ci-out/$f ]] && ok || bad "strategy_diff.sh wrote no $f"; done
contains "strategy_diff.sh comment" "The change moves 3 cell(s)" ci-out/comment.md

# Locks.
expect 0 "lock" -- plan train/freeze.yaml --model builtin:gpt2 --lock freeze.lock
contains "lock" '"plan_fingerprint"' freeze.lock
expect 0 "check unchanged" -- check freeze.lock
contains "check unchanged" "ok: train/freeze.yaml on builtin:gpt2"
printf '# a comment only\nrules:\n  - freeze: [embeddings, {layers: "0:6"}]\n' > train/freeze.yaml
expect 0 "check after a comment" -- check freeze.lock
contains "check after a comment" "the strategy's text changed since the lock (its plan did not)"
printf 'rules:\n  - freeze: [embeddings, {layers: "0:8"}]\n' > train/freeze.yaml
expect 1 "check after a change" -- check freeze.lock
contains "check after a change" "CHANGED: train/freeze.yaml"
contains "check after a change" "epoch 0: frozen 74 tensors, trainable 42,528,768 -> frozen 98 tensors, trainable 28,353,024"
git checkout -q train/freeze.yaml
expect 1 "check on another model" -- check freeze.lock --model builtin:gpt2-medium
contains "check on another model" "model: another inventory (fingerprint"
# A preset with parameters and a horizon: the lock keeps them.
expect 0 "lock preset" -- plan preset:gradual_unfreeze --set total_epochs=4 --model builtin:gpt2 --epochs 4 --lock g.lock
expect 0 "check preset" -- check g.lock
# (The lock's --set edited: what a different preset version would do to the same stages.)
sed -i 's/"total_epochs=4"/"total_epochs=3"/' g.lock
expect 1 "check preset changed" -- check g.lock
contains "check preset changed" "parameter total_epochs: 4 in the lock, 3 in this compile"
contains "check preset changed" "epoch 3: frozen 2 tensors, trainable 85,056,000 -> (no change point)"
# A lock edited by hand into nonsense: an error, not a crash.
python3 - <<'PY'
import json
lock = json.load(open("freeze.lock"))
del lock["plan_fingerprint"]
lock["stages"] = [{"at": 3}]
json.dump(lock, open("mangled.lock", "w"))
PY
expect 1 "mangled lock" -- check mangled.lock
# Every problem named, each once (docs/SECURITY.md: locks are validated before use).
contains "mangled lock" 'the lock has no "plan_fingerprint" [lock-format]' err
contains "mangled lock" 'the lock'"'"'s "stages[0].at" must be a non-empty string, not 3' err
contains "mangled lock" 'the lock has no "stages[0].frozen_tensors"' err
# A lock that names files outside the folders around it is refused before anything is read.
python3 - <<'PY'
import json
lock = json.load(open("freeze.lock"))
lock["strategy"]["source"] = "/proc/self/environ"
lock["optimizer"] = "lion"
json.dump(lock, open("leaky.lock", "w"))
PY
export LEAK_CANARY=canary-7d1f
expect 1 "leaky lock" -- check leaky.lock
contains "leaky lock" "must be one of adamw, adam, sgd, sgd-momentum, not 'lion'" err
not_contains "leaky lock" "canary-7d1f" err
printf '{"format": "something/else"}' > bad.lock
expect 1 "not a lock" -- check bad.lock
contains "not a lock" "not a layerfreeze lock" err

# What the old fingerprint was blind to: a learning-rate change is a different plan for diff,
# check and the lock (docs/CLI.md, "The canonical plan").
printf 'extends: preset:ulmfit\nwith: {lr_decay: 2.6}\n' > train/ulmfit.yaml
git add train/ulmfit.yaml && git commit -qm "ulmfit 2.6"
printf 'extends: preset:ulmfit\nwith: {lr_decay: 5.0}\n' > train/ulmfit.yaml
expect 1 "diff of a learning rate" -- diff HEAD:train/ulmfit.yaml train/ulmfit.yaml --model builtin:gpt2
contains "diff of a learning rate" "the two plans freeze the same parameters at every time shown"
contains "diff of a learning rate" "policy lr_decay: 2.6 in A, 5.0 in B"
git checkout -q train/ulmfit.yaml
expect 0 "lock ulmfit" -- plan preset:ulmfit --model builtin:gpt2 --set lr_decay=2.6 --lock u.lock
sed -i 's/"lr_decay=2.6"/"lr_decay=5.0"/' u.lock
expect 1 "check a learning rate" -- check u.lock
contains "check a learning rate" "policy lr_decay: 2.6 in the lock, 5.0 in this compile"
contains "check a learning rate" "parameter lr_decay: 2.6 in the lock, 5.0 in this compile"
# A lock of the old format (its fingerprint covered frozen states only) is refused with the
# command that writes it again.
python3 - <<'PY'
import json
lock = json.load(open("g.lock"))
lock["format"] = "layerfreeze.lock/1"
del lock["plan"]
json.dump(lock, open("old.lock", "w"))
PY
expect 1 "old lock" -- check old.lock
contains "old lock" "layerfreeze.lock/1, whose plan fingerprint did not cover learning rates" err
contains "old lock" "layerfreeze plan preset:gradual_unfreeze --model builtin:gpt2 --set 'total_epochs=3'" err

# A versioned experiment config whose strategy extends a file beside it: at a revision, the
# file it extends is read at that same revision, inside the repository only.
mkdir -p exp
printf 'rules:\n  - freeze: {layers: "0:4"}\n' > exp/freeze.yaml
printf 'training:\n  epochs: 3\n  freeze:\n    extends: freeze.yaml\n' > exp/experiment.yaml
git add exp && git commit -qm "experiment"
printf 'rules:\n  - freeze: {layers: "0:6"}\n' > exp/freeze.yaml
expect 1 "extends at a revision" -- diff HEAD:exp/experiment.yaml exp/experiment.yaml --section training.freeze --model builtin:gpt2
contains "extends at a revision" "layers 4–5 (transformer.h.4 – transformer.h.5): trainable in A, frozen in B"
expect 0 "extends at a revision, same" -- diff HEAD:exp/experiment.yaml HEAD:exp/experiment.yaml --section training.freeze --model builtin:gpt2
printf 'training:\n  freeze:\n    extends: ../../outside.yaml\n' > exp/experiment.yaml
printf 'rules: []\n' > ../outside.yaml
git commit -qam "extends outside"
expect 1 "extends outside at a revision" -- plan HEAD:exp/experiment.yaml --section training.freeze --model builtin:gpt2
contains "extends outside at a revision" "is outside the folders a rules file may extend from" err
contains "extends outside at a revision" "allowed here: $(pwd -P)" err
head -c 1100000 /dev/zero | tr '\0' '#' > exp/big.yaml
printf 'training:\n  freeze:\n    extends: big.yaml\n' > exp/experiment.yaml
git add exp && git commit -qm "a big file"
expect 1 "extends a big file at a revision" -- plan HEAD:exp/experiment.yaml --section training.freeze --model builtin:gpt2
contains "extends a big file at a revision" "the limit is 1048576" err

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
