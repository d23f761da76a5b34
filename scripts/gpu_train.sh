#!/usr/bin/env bash
# The next bbbc010-concrete training on a lent GPU, as one prepared run (issues 3, 14).
#
# Why: the CPU can no longer move the model (docs/training-bbbc010-concrete.md); what it lacks is
# long, warped, full-learning-rate training.  This continues the shipped weights (the v4 campaign's
# settings: paper-scale regulariser, rates in their own optimiser group, a quarter of the crops
# brightfield alone) with a warped phase at 512-px crops, then an exact-pixel phase, inside one
# time budget, leaving out the held-out train wells the checkpoints are chosen on.  Under $OUT it
# leaves the last two exported weight files of each phase (~12 MB each, no Adam state) and
# logs.tar (both phases' loss and rate logs): the device returns at most 8 files.
#
# Here, once:  python scripts/train_bbbc010.py concrete --make-pack runs/dev/bbbc010-train.npz --holdout A05,A12,A19,B06,B17
# Device:      run(command="OUT=$OUT PACK=runs/dev/bbbc010-train.npz bash scripts/gpu_train.sh 420", carry=["runs/dev"])
# Back here:   python scripts/holdout_eval.py <files_at>/<file>.safetensors --out eval/holdout-<name> for each file,
#              then scripts/release_model.py and probseg evaluate for the chosen one (its docstring).
# Smoke test on the CPU (small crops; each phase runs >= 50 steps before it calibrates):
#   DEVICE=cpu EXTRA="crop=128 batch=2 checkpoint_every=20" OUT=/tmp/smoke bash scripts/gpu_train.sh 40
set -euo pipefail
budget=${1:?usage: gpu_train.sh SECONDS}
out=${OUT:-gpu-out}
mkdir -p "$out"
device=${DEVICE:-cuda}
pack=${PACK:-.pack/bbbc010-train.npz}
init=${INIT:-src/napari_probseg/models/bbbc010-concrete.safetensors}
holdout=${HOLDOUT:-A05,A12,A19,B06,B17}
warp_batch=${WARP_BATCH:-16}
py=${PYTHON:-python3}  # on the device, python3 is the one with PyTorch
extra=${EXTRA:-}  # more KEY=VALUE overrides, applied last
export PYTHONPATH=src
[ -f "$pack" ] || { echo "no $pack: make it with scripts/train_bbbc010.py concrete --make-pack $pack" >&2; exit 2; }
warp_s=$((budget * 3 / 4))
exact_s=$((budget - warp_s))
runs=$(mktemp -d)
common="drop_fluorescence=0.25 concrete_n=1 reset_dropout=false"
"$py" scripts/train_bbbc010.py concrete-gpu --device "$device" --pack "$pack" --init "$init" --holdout "$holdout" \
    --out "$runs/warp" --time-budget "$warp_s" --export-to "$runs/warp-{step}.safetensors" \
    --set crop=512 batch="$warp_batch" lr=0.0005 warmup=200 $common $extra
warp_last=$(ls -v "$runs"/warp-*.safetensors | tail -1)
"$py" scripts/train_bbbc010.py concrete-gpu --device "$device" --pack "$pack" --init "$warp_last" --holdout "$holdout" \
    --out "$runs/exact" --time-budget "$exact_s" --export-to "$runs/exact-{step}.safetensors" \
    --set crop=512 batch=8 lr=0.0002 warmup=50 augment=dihedral $common $extra
for phase in warp exact; do
    ls -v "$runs/$phase"-*.safetensors | tail -2 | xargs -I{} cp {} "$out/"
    cp "$runs/$phase/log.csv" "$runs/$phase.log.csv"
    cp "$runs/$phase/dropout_rates.csv" "$runs/$phase.dropout_rates.csv"
done
tar -C "$runs" -cf "$out/logs.tar" $(cd "$runs" && ls *.csv)
rm -rf "$runs"
ls -la "$out"
