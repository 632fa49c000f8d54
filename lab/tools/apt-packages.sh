#!/usr/bin/env bash
# Install the Debian packages the lab needs (Ceph for the ceph modules' tests, git, openssl),
# only when one is missing, so a warm machine spends no time here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t pkgs < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["debian_packages"]))' "$here/versions.json")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
