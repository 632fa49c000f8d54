#!/usr/bin/env bash
# ansible-test tries to download get-pip.py for sanity and --venv runs; this machine reaches PyPI
# only. Provide the pip wheel from PyPI and a small installer that uses it, in ansible-test's cache.
set -euo pipefail
cache="$HOME/.ansible/test/cache"
pipver=24.2
mkdir -p "$cache"
if [ ! -f "$cache/pip-$pipver-py3-none-any.whl" ]; then
  python3 -m pip download --quiet --no-deps "pip==$pipver" -d "$cache"
fi
installer="$cache/get_pip_${pipver//./_}.py"
if [ ! -f "$installer" ]; then
  cat > "$installer" <<PY
"""Offline stand-in for get-pip.py: installs the cached pip $pipver wheel."""
import os
import sys

wheel = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-$pipver-py3-none-any.whl")
sys.path.insert(0, wheel)
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-index", wheel, *args]))
PY
fi
