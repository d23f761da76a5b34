#!/usr/bin/env bash
# The next bbbc010-concrete training on a lent GPU, as one prepared run (issue 3).
#
# Why: the CPU can no longer move the model (docs/training-bbbc010-concrete.md, item 6); what
# it lacks is long, warped, full-learning-rate training.  This continues the shipped weights
# with a warped phase at 512-px crops, then an exact-pixel phase, inside one time budget,
# and leaves only the two exported weight files (~12 MB each, no Adam state) under $OUT.
#
# Here, once:  python scripts/train_bbbc010.py concrete --make-pack .pack/bbbc010-train.npz
# Device:      run(command="OUT=$OUT bash scripts/gpu_train.sh 420", carry=[".pack"])
# Back here:   python scripts/release_model.py concrete --from <files_at>/exact.safetensors, then
#              probseg evaluate and the card (scripts/release_model.py docstring).
# Smoke test on the CPU (small crops; each phase runs >= 50 steps before it calibrates):
#   DEVICE=cpu EXTRA="crop=128 batch=2" OUT=/tmp/smoke bash scripts/gpu_train.sh 20
set -euo pipefail
budget=${1:?usage: gpu_train.sh SECONDS}
out=${OUT:-gpu-out}
mkdir -p "$out"
device=${DEVICE:-cuda}
pack=${PACK:-.pack/bbbc010-train.npz}
init=${INIT:-src/napari_probseg/models/bbbc010-concrete.safetensors}
extra=${EXTRA:-}  # more KEY=VALUE overrides, applied last
export PYTHONPATH=src
[ -f "$pack" ] || { echo "no $pack: make it with scripts/train_bbbc010.py concrete --make-pack $pack" >&2; exit 2; }
warp_s=$((budget * 3 / 4))
exact_s=$((budget - warp_s))
runs=$(mktemp -d)
python scripts/train_bbbc010.py concrete-gpu --device "$device" --pack "$pack" --init "$init" \
    --out "$runs/warp" --time-budget "$warp_s" --export-to "$out/warp.safetensors" \
    --set crop=512 batch=8 lr=0.0005 warmup=200 $extra
python scripts/train_bbbc010.py concrete-gpu --device "$device" --pack "$pack" --init "$out/warp.safetensors" \
    --out "$runs/exact" --time-budget "$exact_s" --export-to "$out/exact.safetensors" \
    --set crop=512 batch=8 lr=0.0002 warmup=50 augment=dihedral $extra
cp "$runs/warp/log.csv" "$out/warp.log.csv"
cp "$runs/exact/log.csv" "$out/exact.log.csv"
rm -rf "$runs"
ls -la "$out"
