#!/usr/bin/env bash
# Install the Debian packages listed in $1 that are not installed yet (idempotent, fast when none).
set -euo pipefail
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1")
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "apt: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "apt: need root to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
