"""Issue 19's magnification table: `probseg evaluate` at several resampling factors.

For each factor the wells and their ground truth are resampled (``--resample``) and
segmented with the worm width given (factor x the training width, as a user who knows
their magnification would give it), estimated (``auto``) and not used (``off``); with a
model trained for brightfield alone, also brightfield-only with the width estimated.
Each cell is one ``run_evaluation`` (the same protocol as ``probseg evaluate``), its
folder kept under --out; the markdown table goes to --out/scale_table.md.

    python bench/scale_table.py --out scale-eval/                       # all 47 test wells, 8 draws
    python bench/scale_table.py --out scale-eval/ --wells C05,C10,D08,D21,E01 --draws 2

Rerunning skips cells whose metrics.json exists (delete a folder to recompute it).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

FACTORS = (0.6, 0.8, 1.0, 1.25, 1.6)
MODES = ("given", "auto", "off")


def run_cell(args, factor: float, mode: str, brightfield_only: bool = False) -> dict:
    """One evaluation (or its saved metrics.json); the given width is factor x the training width."""
    from napari_probseg.evaluate import run_evaluation
    from napari_probseg.scale import TRAINING_WORM_WIDTH

    name = f"x{factor:g}-{mode}" + ("-brightfield" if brightfield_only else "")
    out = Path(args.out) / name
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    width = round(factor * TRAINING_WORM_WIDTH, 2) if mode == "given" else mode
    wells = [w for w in args.wells.split(",") if w] if args.wells else None
    return run_evaluation(args.model, args.data, "test", str(out), draws=args.draws, device=args.device,
                          wells=wells, seed=args.seed, brightfield_only=brightfield_only, resample=factor,
                          worm_width=width)


def widths(m: dict) -> str:
    """Median (range) of the per-well estimated widths of one run."""
    import numpy as np

    w = [v["worm_width"] for v in m["scale"]["per_well"].values() if v.get("worm_width") is not None]
    return f"{np.median(w):.2f} ({min(w):.2f}-{max(w):.2f})" if w else "-"


def table(results: dict, factors: list[float], modes: list[str], ref_width: float) -> list[str]:
    """Markdown: avAP per factor and mode, its difference from factor 1.0 of the same mode, widths."""
    cols = [m for m in modes if any((f, m) in results for f in factors)]
    lines = ["| factor | " + " | ".join(f"avAP {m} (vs x1)" for m in cols)
             + " | estimated width, median (range) | true width (x training) |",
             "|---|" + "---|" * len(cols) + "---|---|"]
    for f in sorted(factors):
        cells = []
        for m in cols:
            r, one = results.get((f, m)), results.get((1.0, m))
            cells.append("-" if r is None else f"{r['avAP']:.3f}" + (f" ({r['avAP'] - one['avAP']:+.3f})" if one else ""))
        auto = results.get((f, "auto"))
        lines.append(f"| {f:g} | " + " | ".join(cells) + f" | {widths(auto) if auto else '-'} | {f * ref_width:.2f} |")
    return lines


def main() -> None:
    from napari_probseg.models import load_model
    from napari_probseg.scale import TRAINING_WORM_WIDTH

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="bbbc010-concrete")
    ap.add_argument("--data", default=None)
    ap.add_argument("--wells", default="", help="comma-separated test wells (default: all)")
    ap.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS))
    ap.add_argument("--modes", default=",".join(MODES), help="given, auto, off (comma-separated)")
    ap.add_argument("--draws", type=int, default=None, help="MC draws (default: the model's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    results = {}
    for f in factors:
        for mode in modes:
            if mode == "given" and f == 1.0 and "off" in modes:
                continue  # factor x training width at x1 is the training width: not resampled, = off
            results[(f, mode)] = run_cell(args, f, mode)
            print(f"x{f:g} {mode}: avAP {results[(f, mode)]['avAP']:.3f}", flush=True)
        if (1.0, "off") in results and "given" in modes:
            results[(1.0, "given")] = results[(1.0, "off")]
    lines = table(results, factors, modes, TRAINING_WORM_WIDTH)
    if load_model(args.model).model.brightfield_only:
        bf = {(f, "auto"): run_cell(args, f, "auto", brightfield_only=True) for f in factors}
        lines += ["", "Brightfield alone (w2 only), width estimated:", "",
                  *table({(f, "brightfield auto"): m for (f, _), m in bf.items()}, factors, ["brightfield auto"],
                         TRAINING_WORM_WIDTH)]
    else:
        lines += ["", f"Brightfield alone: not run, {args.model} needs both channels."]
    m = next(iter(results.values()))
    head = [f"Model `{Path(m['model']).name}`, {m['mc_draws']} MC draws, {len(m['wells'])} test wells "
            f"({', '.join(m['wells'])}); images and masks resampled by each factor (masks: linear, thresholded "
            f"at 0.5); 'given' = factor x {TRAINING_WORM_WIDTH} px.", ""]
    text = "\n".join(head + lines) + "\n"
    (Path(args.out) / "scale_table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
