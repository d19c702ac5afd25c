#!/usr/bin/env bash
# strategy_diff.sh BASE_REV RULES MODEL [OUT_DIR] — what a pull request's change to a versioned
# strategy does, for a CI job: compares RULES as it was at BASE_REV (`git show`) with the file
# in the working tree, on MODEL, and writes
#   OUT_DIR/strategy-diff.svg   the two plans side by side, the cells that changed outlined
#   OUT_DIR/strategy-diff.html  the same as a report (text diff, parameter browser)
#   OUT_DIR/comment.md          a pull-request comment: the text diff and where the picture is
# With POST_WITH_GH=1 and PR_NUMBER set, it posts comment.md with GitHub's `gh` CLI.
# LAYERFREEZE names the binary (default: layerfreeze on PATH). `layerfreeze diff` exits 0 when
# the plans are the same, 1 when they differ (or on invalid input, with an error on stderr);
# this script exits 1 only when layerfreeze fails.
#
#   examples/plan_in_ci/strategy_diff.sh origin/main train/freeze.yaml builtin:llama2-7b out/
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 BASE_REV RULES MODEL [OUT_DIR]" >&2
  exit 2
fi
base=$1 rules=$2 model=$3 out=${4:-strategy-diff}
lf=${LAYERFREEZE:-layerfreeze}
mkdir -p "$out"
# diff: 0 the same plan, 1 different plans or invalid input (then stderr says why).
lf_diff() {
  local rc=0
  "$lf" diff "$base:$rules" "$rules" --model "$model" "$@" 2>"$out/stderr" || rc=$?
  if [[ $rc -ne 0 && -s "$out/stderr" ]] && grep -q ': error: \|^error: ' "$out/stderr"; then
    cat "$out/stderr" >&2
    exit 1
  fi
  return 0
}
lf_diff --format svg > "$out/strategy-diff.svg"
lf_diff --format html > "$out/strategy-diff.html"
text=$(lf_diff)
rm -f "$out/stderr"
changed=$(grep -c 'data-differs="1"' "$out/strategy-diff.svg" || true)
{
  echo "### layerfreeze: \`$rules\` against \`$base\` on \`$model\`"
  echo
  if [[ "$text" == *"the two plans are the same"* ]]; then
    echo "The change leaves the plan as it was."
  elif [[ $changed -eq 0 ]]; then
    echo "The change keeps every frozen state but changes what a trainer runs (below)."
  else
    echo "The change moves $((changed / 2)) cell(s) of the schedule (outlined in \`strategy-diff.svg\`)."
  fi
  echo
  echo '```'
  echo "$text"
  echo '```'
} > "$out/comment.md"
echo "wrote $out/strategy-diff.svg, $out/strategy-diff.html and $out/comment.md"
if [[ "${POST_WITH_GH:-}" == 1 && -n "${PR_NUMBER:-}" ]]; then
  gh pr comment "$PR_NUMBER" --body-file "$out/comment.md"
fi
