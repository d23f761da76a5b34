"""Ship a trained run as a bundled model: export, tune post-processing, write the model card.

Tuning chooses the mean-shift bandwidth, the cluster radius and the minimum
instance size (``napari_probseg.tuning``).

    python scripts/release_model.py concrete [--from RUN.safetensors]   # export + 2-fold CV tuning
    python scripts/release_model.py concrete --retune                   # tuning only, weights kept
    probseg evaluate --model bbbc010-concrete --out eval/bbbc010-concrete
    python scripts/release_model.py concrete --card eval/bbbc010-concrete/metrics.json \
        [--history docs/training-bbbc010-concrete.md]

The exported file has no optimiser/RNG state (~11 MB); the tuned mean-shift bandwidth and
cluster radius are written into its header with the cross-validation table.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from napari_probseg.checkpoint import PostprocessConfig, load_checkpoint, update_postprocess
from napari_probseg.data import default_data_dir
from napari_probseg.models import MODEL_DIR
from napari_probseg.train import export_weights
from napari_probseg.tuning import grid_search


def release(variant: str, source: Path | None = None, retune: bool = False, dest: Path | None = None) -> Path:
    """Export ``source`` as the bundled model and tune it; ``retune``: keep the shipped weights.

    ``dest`` writes a candidate elsewhere (e.g. runs/) so it can be evaluated before it replaces the shipped file.
    """
    dest = dest or MODEL_DIR / f"bbbc010-{variant}.safetensors"
    if not retune:
        export_weights(source or Path(f"runs/bbbc010-{variant}/last.safetensors"), dest)
    lm = load_checkpoint(dest)
    res = grid_search(lm.model, default_data_dir(), progress=lambda s: print(s, flush=True))
    post = PostprocessConfig(**{**asdict(lm.postprocess), "bandwidth": res.bandwidth, "cluster_radius": res.cluster_radius,
                                "min_size": res.min_size})
    note = json.dumps({"method": "grid search (objective: mean of avAP and DSB avAP), 2-fold CV on test folds, "
                               "mean network", "cv": res.cv, "table": res.table})
    update_postprocess(dest, post, note)
    print("chosen", res.bandwidth, res.cluster_radius, res.min_size, "cv", res.cv)
    return dest


def _fold_text(s: dict) -> str:
    """One fold's scores; the objective is the mean of avAP and DSB avAP (napari_probseg.tuning)."""
    return f"avAP {s['avAP']:.3f}, DSB avAP {s['avAP_dsb']:.3f} (objective {s['objective']:.3f})"


def card(variant: str, metrics_path: Path, history: Path | None = None) -> Path:
    m = json.loads(metrics_path.read_text())
    lm = load_checkpoint(MODEL_DIR / f"bbbc010-{variant}.safetensors")
    meta = lm.meta
    tc = meta["train_config"]
    hardware = "one NVIDIA H200 GPU" if meta["device"].startswith("cuda") else "a 2-core CPU"
    tune = json.loads(meta.get("postprocess_note", "{}"))
    keys = ("avAP", "AP50", "AP75", "recall80", "avAP_dsb")
    paper = {"concrete": (0.770, 0.974, 0.883, 0.81, 0.703), "baseline": (0.761, 0.963, 0.879, 0.81, 0.686)}[variant]
    lines = [
        f"# Model card: bbbc010-{variant}", "",
        f"- File: `src/napari_probseg/models/bbbc010-{variant}.safetensors` (sha256 `{lm.sha256}`), load with "
        f"`load_model(\"bbbc010-{variant}\")`.",
        f"- Architecture: 5-level U-Net, 19 base filters, {lm.model.cfg.in_channels} input channels (w1 fluorescence, "
        f"w2 brightfield), 16-d embedding + 3 classes, variant `{lm.model.cfg.variant}`.",
        f"- Data: BBBC010 train split only ({len(meta['wells'])} wells: {meta['wells'][0]}..{meta['wells'][-1]}), "
        f"percentile normalisation, random {tc['crop']}x{tc['crop']} crops with "
        + ("rotation/flip/scale/elastic augmentation." if tc.get("augment", "warp") == "warp" else
           "whole-pixel positions, k x 90 degree turns and mirroring in the last phase (earlier phases: "
           "rotation/flip/scale/elastic augmentation)."),
        f"- Training: {meta['step']} steps, batch {tc['batch']}, Adam lr {tc['lr']} (warm-up {tc['warmup']}, cosine to "
        f"{tc['min_lr_ratio']}x), CE weight {tc['ce_weight']}, overlap class weight {tc['overlap_weight']}, "
        f"initial dropout {tc['init_dropout']}, seed {tc['seed']} (last training phase; the history below lists "
        f"every phase) on {hardware} ({meta['device']}, bf16 autocast {meta['bf16'] or meta['device'].startswith('cuda')}), "
        f"torch {meta['torch']}.",
        "- Reproduce: the training commands are in the history below (`scripts/train_bbbc010.py`, which resumes "
        "an interrupted run); then this script (`--from` the run's checkpoint) and `probseg evaluate` as in its "
        "docstring.",
        f"- Post-processing: mean-shift bandwidth {lm.postprocess.bandwidth}, cluster radius "
        f"{lm.postprocess.cluster_radius}, min size {lm.postprocess.min_size} px, {lm.postprocess.mc_draws} MC draws, "
        f"binarised at {lm.postprocess.binarize}. Chosen by {tune.get('method', 'grid search')}; per fold: "
        + "; ".join(f"fold {f}: chose {v['chosen']} -> {_fold_text(v['scored_on_other_fold'])} on the other fold"
                    for f, v in tune.get("cv", {}).items()) + ".", "",
        "## Learned dropout rates", "", "| layer | p |", "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in lm.model.dropout_rates().items()], "",
        *([history.read_text().strip(), ""] if history else []),
        f"## Evaluation ({len(m['wells'])} test wells with both channels; published figures are on 50)", "",
        f"Wells: {', '.join(m['wells'])}. Skipped: {', '.join(m['skipped_wells'])}.", "",
        "| | avAP[0.5:0.95] | AP50 | AP75 | Recall@0.8 | DSB avAP |", "|---|---|---|---|---|---|",
        f"| paper, {variant} | " + " | ".join(f"{v:.3f}" for v in paper) + " |",
        "| PatchPerPix | 0.783 | 0.943 | 0.897 | 0.890 | 0.735 |",
        "| **this model** | " + " | ".join(f"{m[k]:.3f}" for k in keys) + " |", "",
        "Proofreading simulation (k highest uncertainty peak patches corrected):", "",
        "| k | avAP | AP50 | AP75 | Recall@0.8 | DSB avAP |", "|---|---|---|---|---|---|",
        *[f"| {r['k']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |" for r in m["simulation"]], "",
        f"PAvPU at entropy cuts {m['pavpu']['entropy_cuts'][:4]}...: "
        f"{[round(x, 3) for x in m['pavpu']['pavpu'][:4]]}...; full curves in the evaluation report.",
        f"COCO ranked AP (different metric): {m['coco']['coco_avAP']:.3f}.",
        f"Speed: {m['seconds_per_image']:.1f} s per well ({m['mc_draws']} draws) on {m['device']}.", "",
        f"Command: `probseg evaluate --model bbbc010-{variant} --data ../shared/data/bbbc010 --split test --out "
        f"{metrics_path.parent}` (report copied to `docs/eval-bbbc010-{variant}/`).",
    ]
    out = Path("docs") / f"model-card-bbbc010-{variant}.md"
    out.write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("variant", choices=["concrete", "baseline"])
    ap.add_argument("--from", dest="source", type=Path, help="checkpoint to ship (default runs/bbbc010-<variant>/last)")
    ap.add_argument("--retune", action="store_true", help="re-tune the shipped file's post-processing only")
    ap.add_argument("--dest", type=Path, help="write the tuned candidate here instead of the bundled file")
    ap.add_argument("--card", type=Path, help="metrics.json of an evaluation: write the model card only")
    ap.add_argument("--history", type=Path, help="markdown with the training history, copied into the card")
    a = ap.parse_args()
    print(card(a.variant, a.card, a.history) if a.card else release(a.variant, a.source, a.retune, a.dest))
