#!/usr/bin/env bash
# Install the Debian packages listed in system-packages.txt that are not installed yet.
# Idempotent: when everything is present it runs no apt-get at all.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
missing=()
while read -r pkg; do
    case "$pkg" in ""|\#*) continue ;; esac
    # npm and nodejs may come from outside Debian (the image ships its own node): accept the command.
    if [ "$pkg" = nodejs ] && command -v node >/dev/null; then continue; fi
    if [ "$pkg" = npm ] && command -v npm >/dev/null; then continue; fi
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < "$here/system-packages.txt"
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
