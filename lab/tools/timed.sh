#!/usr/bin/env bash
# Time one step of `make test` and keep a table of every step outside the source tree.
#   lab/tools/timed.sh FILE STEP COMMAND...   run COMMAND, append "STEP<TAB>SECONDS<TAB>RESULT" to FILE
#   lab/tools/timed.sh --table FILE           print the table (and the total)
# Rows marked "parallel" in a fourth column (the jobs lab/tools/lanes.py ran side by side) are
# shown indented under the step that ran them and left out of the total, which is wall time.
# A failing step prints the table so far, then exits with the step's status.
set -uo pipefail
table() {
  local file=$1
  [ -f "$file" ] || return 0
  echo "== make test time table ($file)"
  awk -F'\t' '$4 == "parallel" {printf "      %-40s %8.1f s  %s\n", $1, $2, $3; next}
              {printf "  %-44s %8.1f s  %s\n", $1, $2, $3; total += $2}
              END {printf "  %-44s %8.1f s  (%.1f min)\n", "total (wall)", total, total / 60}' "$file"
  # Why a side-by-side job failed (lab/tools/lanes.py keeps it): printed last, where CI's
  # excerpt of the output ends.
  local why
  why="$(dirname "$file")/failures.txt"
  if [ -s "$why" ]; then cat "$why"; fi
}
if [ "${1:-}" = "--table" ]; then table "$2"; exit 0; fi
file=$1 step=$2; shift 2
mkdir -p "$(dirname "$file")"
start=$(date +%s.%N)
"$@"
rc=$?
end=$(date +%s.%N)
result=passed; [ "$rc" -eq 0 ] || result="FAILED (rc $rc)"
printf '%s\t%s\t%s\n' "$step" "$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')" "$result" >> "$file"
if [ "$rc" -ne 0 ]; then table "$file"; fi
exit "$rc"
