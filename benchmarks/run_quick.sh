#!/usr/bin/env bash
# The quick benchmark preset (CPU, minutes) on the standard sets of these machines.
# Usage: benchmarks/run_quick.sh [DATA_ROOT] [OUT_DIR]
#   DATA_ROOT defaults to ../shared/data (relative to the repository root); OUT_DIR to bench-quick.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=${2:-bench-quick}
pnp-restore bench run --preset quick \
    --data "$DATA/test/Set5" --data "$DATA/test/CBSD68" --manifest "$DATA/MANIFEST.tsv" \
    --out "$OUT/results.jsonl" --save-images "$OUT/images"
pnp-restore bench report "$OUT/results.jsonl" -o "$OUT/report"
