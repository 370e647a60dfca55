#!/usr/bin/env bash
# The full (paper-scale) preset on GPUs: 129 images (CBSD68, Kodak24-crop, McMaster, Set5, Set14) at 256 px,
# every task at sigma_y in {0, 0.025, 0.05}, published steps, seeds 0-2. Sharded over the GPUs with torchrun;
# re-running resumes. Usage: benchmarks/run_full.sh [DATA_ROOT] [OUT_DIR] [GPUS]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=${2:-bench-full}
GPUS=${3:-$(nvidia-smi -L | wc -l)}
SETS=()
for s in CBSD68 Kodak24 McMaster Set5 Set14; do SETS+=(--data "$DATA/test/$s"); done
torchrun --nproc-per-node "$GPUS" -m pnp_restore.benchmarks run --preset full "${SETS[@]}" \
    --manifest "$DATA/MANIFEST.tsv" --out "$OUT/results.jsonl" --save-images "$OUT/images" -q
pnp-restore bench report "$OUT/results.jsonl" -o "$OUT/report"
