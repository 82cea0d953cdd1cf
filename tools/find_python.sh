#!/usr/bin/env bash
# Print the path of a CPython X.Y interpreter (argument: "3.10"), installing it from Debian /
# Ubuntu packages when the distribution has them and it is missing. Looks on PATH, then in pyenv's
# versions (this build machine has 3.10 and 3.12 there). One line on stderr and exit 1 if none.
set -euo pipefail
want="$1"
found_ok() { [ -x "$1" ] && "$1" -c "import sys, venv; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; }
candidates=("$(command -v "python$want" 2>/dev/null || true)")
for root in "${PYENV_ROOT:-}" "$HOME/.pyenv" /root/.pyenv /opt/pyenv; do
  [ -n "$root" ] && [ -d "$root/versions" ] || continue
  for d in $(ls -d "$root/versions/$want".* 2>/dev/null | sort -V -r); do candidates+=("$d/bin/python$want"); done
done
candidates+=("/usr/bin/python$want" "/usr/local/bin/python$want")
for c in "${candidates[@]}"; do
  if [ -n "$c" ] && found_ok "$c"; then echo "$c"; exit 0; fi
done
# Not here: Ubuntu has python3.X(-venv) packages (22.04: 3.10, 24.04: 3.12); Debian 12 has 3.11 only.
if command -v apt-cache >/dev/null && apt-cache show "python$want-venv" >/dev/null 2>&1; then
  printf 'python%s\npython%s-venv\n' "$want" "$want" > "${TMPDIR:-/tmp}/dynofa-python-$want.txt"
  bash "$(dirname "$0")/apt_install.sh" "${TMPDIR:-/tmp}/dynofa-python-$want.txt" >&2
  if found_ok "/usr/bin/python$want"; then echo "/usr/bin/python$want"; exit 0; fi
fi
echo "find_python: no Python $want here (PATH, pyenv versions, /usr/bin) and no python$want-venv package in apt; install it (e.g. pyenv install $want) or run make test-matrix MATRIX_PYTHONS=\"...\" without it" >&2
exit 1
