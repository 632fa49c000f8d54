#!/usr/bin/env bash
# Measure `make tools` (warm: nothing to rebuild) and the cache size; writes bench/results/tools.json.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache="${HOMECLUSTER_CACHE:-$HOME/.cache/homecluster}"
start=$(date +%s.%N)
make -C "$repo" --no-print-directory tools >/dev/null
end=$(date +%s.%N)
size=$(du -sb "$cache" | cut -f1)
gobuild=$(du -sb "$(go env GOCACHE)" 2>/dev/null | cut -f1 || echo 0)
mkdir -p "$repo/bench/results"
cat > "$repo/bench/results/tools.json" <<JSON
{"date": "$(date -u +%FT%TZ)", "warm_make_tools_seconds": $(python3 -c "print(round($end - $start, 2))"),
 "cache_bytes": $size, "go_build_cache_bytes": $gobuild,
 "tools": $(python3 "$repo/lab/tools/build.py" --list | python3 -c 'import json,sys; print(json.dumps(dict(l.split() for l in sys.stdin)))')}
JSON
cat "$repo/bench/results/tools.json"
