#!/usr/bin/env bash
# Run ansible-test on a copy of the collection under .../ansible_collections/homecluster/platform
# (ansible-test needs that path and resolves symlinks, so a link is not enough).
set -euo pipefail
kind=$1; shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
# A private copy per run, so that runs side by side do not clobber each other.
work=$(mktemp -d "${HOMECLUSTER_CACHE:-$HOME/.cache/homecluster}/ansible-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/homecluster/platform"
mkdir -p "$dest"
# Only what git tracks or would track: the collection as it will be published plus its tests.
# The lab, benchmarks and molecule scenarios are not part of the published collection.
(cd "$repo" && git ls-files -co --exclude-standard -z -- . ':!lab' ':!bench' ':!molecule' ':!.ci') | \
  rsync -a --from0 --files-from=- "$repo/" "$dest/"
cd "$dest"
case "$kind" in
  sanity) echo "== ansible-test sanity"
          ansible-test sanity --local --requirements --python 3.11 "$@" ;;
  units)  echo "== ansible-test units"
          if find tests/unit -name 'test_*.py' | grep -q .; then
            ansible-test units --local --requirements --python 3.11 "$@"
          else
            echo "no unit tests yet"; exit 1
          fi ;;
  *) echo "usage: $0 sanity|units" >&2; exit 2 ;;
esac
