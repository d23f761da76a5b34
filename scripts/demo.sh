#!/usr/bin/env bash
# The main job: segment the bundled sample wells with the bundled Concrete Dropout model and write
# labels, per-instance probabilities, entropy maps, ranked uncertainty peaks and overview PNGs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-demo-output}
S=src/napari_probseg/sample_data
.venv/bin/probseg predict "$S/C04.tif" "$S/C10.tif" "$S/D21.tif" --model bbbc010-concrete --out "$OUT" --png
echo "Done: open $OUT/*_overview.png, or load the results in napari (.venv/bin/napari --plugin napari-probseg $OUT/C10_probabilities.npz)."
