#!/usr/bin/env bash
# Formats the C++ sources with .clang-format (Debian's clang-format 14); `--check` only reports
# the files that differ and exits 1 (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || {
  sudo=""; (( EUID )) && sudo=sudo
  $sudo apt-get install -y -qq clang-format >/dev/null
}
# Tracked files and new ones not yet added (a new file is formatted before its first commit).
mapfile -t files < <(git ls-files --cached --others --exclude-standard \
                      'src/*.cpp' 'src/*.hpp' 'include/*.hpp' 'tests/*.cpp' 'tests/*.hpp' \
                      'bench/*.cpp' 'fuzz/*.cpp' 'examples/*.cpp' 'examples/*.hpp')
if [[ "${1:-}" == "--check" ]]; then
  if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/clang-format.$$; then
    grep -o '^[^:]*:' /tmp/clang-format.$$ | sort -u | sed 's/:$/: not formatted (scripts\/format.sh)/'
    rm -f /tmp/clang-format.$$
    exit 1
  fi
  rm -f /tmp/clang-format.$$
  echo "format: ${#files[@]} files formatted"
else
  clang-format -i "${files[@]}"
fi
