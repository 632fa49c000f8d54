#!/usr/bin/env bash
# Install the Debian packages the lab needs (Ceph for the ceph modules' tests, git, openssl, BIND
# for the lab's internal DNS), only when one is missing, so a warm machine spends no time here.
# No package's service is started by the install (a policy-rc.d that refuses every start is put
# in place for the install when the machine has none): the lab starts its own servers on
# loopback, never a daemon on every interface.
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
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$own_policy" ] || rm -f "$policy"
fi
