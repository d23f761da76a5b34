"""``probseg evaluate``: Table 1, Figure 2 and Table 2 of the paper on BBBC010, recomputable.

Writes ``metrics.json``, ``predictions/<WELL>.npz`` (probabilities float16 of the binarised
instances and, as ``all_probabilities``, of every instance; instances bool; entropy; peaks),
``review/<WELL>.csv`` (the default review list of each well) and ``report.md`` with PNG plots,
so anyone can recompute every number.  The review list is scored against the ground truth by
``review_metrics`` (errors found by the top items, proofreading simulation with items).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .checkpoint import PostprocessConfig
from .data import available_wells, default_data_dir, load_image, load_masks
from .inference import PATCH, Prediction, bernoulli_entropy, nonempty, predict, uncertainty_peaks
from .metrics import aggregate, coco_ap, image_scores
from .review import write_review_csv
from .review_metrics import review_summary, score_well
from .models import load_model
from .devices import pick_device
from .uncertainty_metrics import simulate_proofreading, uncertainty_counts, uncertainty_curves

PAPER_TABLE1 = {
    "PatchPerPix": {"avAP": 0.783, "AP50": 0.943, "AP75": 0.897, "recall80": 0.89, "avAP_dsb": 0.735},
    "Paper baseline": {"avAP": 0.761, "AP50": 0.963, "AP75": 0.879, "recall80": 0.81, "avAP_dsb": 0.686},
    "Paper Concrete Dropout": {"avAP": 0.770, "AP50": 0.974, "AP75": 0.883, "recall80": 0.81, "avAP_dsb": 0.703},
}
PAPER_TABLE2 = {0: (0.770, 0.974, 0.883, 0.81, 0.703), 5: (0.779, 0.977, 0.883, 0.82, 0.714),
                10: (0.782, 0.978, 0.896, 0.83, 0.719), 15: (0.786, 0.980, 0.897, 0.83, 0.725),
                20: (0.791, 0.982, 0.903, 0.84, 0.735)}
KEYS = ("avAP", "AP50", "AP75", "recall80", "avAP_dsb")


def run_evaluation(model: str, data: str | None, split: str, out: str, draws: int | None = None,
                   threshold: float | None = None, device: str = "auto", wells: list[str] | None = None,
                   tune: bool = False, seed: int = 0, reuse: str | None = None) -> dict:
    """Evaluate ``model`` on ``split``; with ``reuse`` (an earlier evaluation folder) the saved
    per-instance probabilities are read back instead of running the network, and every metric,
    review list and report figure is recomputed from them (same model and settings required)."""
    from tqdm import tqdm

    data_dir = Path(data) if data else default_data_dir()
    out_dir = Path(out)
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    (out_dir / "review").mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    lm = load_model(model, dev)
    post, tune_info = _tuned(lm, data_dir) if tune else (lm.postprocess, None)
    draws = draws or post.mc_draws
    thr = post.binarize if threshold is None else threshold
    ok, skipped = available_wells(data_dir, split)
    if wells:
        ok, skipped = select_wells(wells, ok, skipped, split)
    for w in skipped:
        print(f"skipping well {w}: a channel file is missing")
    per_image, counts, preds, probs, peaks, gts, scored, coco_scores = [], [], {}, {}, {}, {}, {}, []
    items, listed = {}, {}
    t0 = time.perf_counter()
    for well in tqdm(ok, desc="evaluating wells", unit="well"):
        pred = saved_prediction(Path(reuse), well, thr) if reuse else \
            predict(lm.model, load_image(data_dir, well), post, draws, thr, dev, seed)
        gt = load_masks(data_dir, well)
        keep = nonempty(pred.instances)
        inst, prob = pred.instances[keep], pred.probabilities[keep]
        _save(out_dir / "predictions" / f"{well}.npz", pred, keep)
        per_image.append(image_scores(inst, gt))
        counts.append(uncertainty_counts(pred.probabilities, gt, binarize=thr))
        # the simulation sees every instance, also those below the threshold everywhere
        preds[well], probs[well], gts[well] = pred.instances, pred.probabilities, gt
        scored[well] = inst
        peaks[well] = [(p.score, p.y, p.x) for p in pred.peaks]
        shown = pred.review_items()  # the default list, as the dock and probseg predict show it
        write_review_csv(shown, out_dir / "review" / f"{well}.csv")
        items[well] = [(it.score, it.instances) for it in shown]
        listed[well] = score_well([(it.y, it.x) for it in shown],
                                  [(p.y + PATCH // 2, p.x + PATCH // 2) for p in pred.peaks], inst, gt)
        coco_scores.append(np.array([prob[i][inst[i]].mean() for i in range(len(inst))]))
    seconds = (time.perf_counter() - t0) / max(len(ok), 1)
    agg = aggregate(per_image)
    metrics = {
        "model": lm.path, "model_sha256": lm.sha256, "wells": ok, "skipped_wells": skipped,
        **{k: agg[k] for k in KEYS},
        "curves": {k: agg[k] for k in ("thresholds", "precision", "recall", "dsb")},
        "coco": coco_ap(list(scored.values()), list(gts.values()), coco_scores),
        "pavpu": uncertainty_curves(counts),
        "simulation": simulate_proofreading(preds, probs, peaks, gts),
        "review": review_summary(listed, preds, probs, items, gts),
        "binarize_threshold": thr, "mc_draws": draws, "postprocess": asdict(post),
        "seconds_per_image": seconds, "device": str(dev), "tuning": tune_info,
        "dropout_rates": lm.model.dropout_rates(),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    if reuse:
        metrics.update(reused_predictions=str(reuse), seconds_per_image=None)  # reading files is not inference
    write_report(metrics, out_dir, data_dir, lm, post, draws, thr, seed, reuse)
    print(json.dumps({k: round(metrics[k], 4) for k in KEYS}))
    return metrics


def select_wells(wells: list[str], ok: list[str], skipped: list[str], split: str) -> tuple[list[str], list[str]]:
    """The requested wells of the split; InputError naming unknown or unusable ones (no silent empty run)."""
    from .data import InputError

    unknown = [w for w in wells if w not in ok and w not in skipped]
    if unknown:
        raise InputError(f"well(s) {', '.join(unknown)} not in split {split!r}, whose wells are "
                         f"{', '.join(ok[:3] + ['...'] + ok[-2:]) if len(ok) > 5 else ', '.join(ok)}"
                         " (give names like C10, space- or comma-separated)")
    chosen = [w for w in ok if w in wells]
    if not chosen:
        raise InputError(f"well(s) {', '.join(wells)} lack a channel file; nothing to evaluate")
    return chosen, [w for w in skipped if w in wells]


def _row(name: str, vals: dict | tuple) -> str:
    v = [vals[k] for k in KEYS] if isinstance(vals, dict) else list(vals)
    return f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + " |"


def _tuned(lm, data_dir: Path) -> tuple[PostprocessConfig, dict]:
    """Post-processing from the 2-fold grid search (``--tune``) and what it found."""
    from .tuning import grid_search

    res = grid_search(lm.model, data_dir)
    post = PostprocessConfig(**{**asdict(lm.postprocess), "bandwidth": res.bandwidth, "threshold": res.threshold,
                                "min_size": res.min_size})
    return post, {"bandwidth": res.bandwidth, "threshold": res.threshold, "min_size": res.min_size,
                  "cv": res.cv, "table": res.table}


def _save(path: Path, pred: Prediction, keep: np.ndarray) -> None:
    """``predictions/<WELL>.npz``: the scored (non-empty) instances and every instance's probabilities."""
    np.savez_compressed(path, probabilities=pred.probabilities[keep].astype(np.float16), instances=pred.instances[keep],
                        all_probabilities=pred.probabilities.astype(np.float16), entropy=pred.entropy.astype(np.float16),
                        peaks=np.array([[p.score, p.y, p.x] for p in pred.peaks], np.float32).reshape(-1, 3))


def saved_prediction(folder: Path, well: str, threshold: float) -> Prediction:
    """A well's Prediction rebuilt from ``predictions/<WELL>.npz`` of an earlier run (no draws kept).

    Probabilities are k/T for T draws, exact in float16, so entropy, peaks and review items
    come out as the run computed them.  Saved instances binarised at another threshold are refused.
    """
    path = folder / "predictions" / f"{well}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run probseg evaluate --out {folder} first")
    with np.load(path) as z:
        if "all_probabilities" not in z.files:
            raise ValueError(f"{path} predates the saved all_probabilities; evaluate again without --reuse")
        probs, inst = z["all_probabilities"].astype(np.float32), z["instances"].astype(bool)
    binar = probs >= threshold
    if not np.array_equal(binar[nonempty(binar)], inst):
        raise ValueError(f"{path} was binarised at another threshold than {threshold}")
    ent = bernoulli_entropy(probs).max(0).astype(np.float32) if len(probs) else np.zeros(probs.shape[1:], np.float32)
    return Prediction(probs, binar, ent, uncertainty_peaks(ent, probs), [], threshold)


def write_report(m: dict, out_dir: Path, data_dir: Path, lm, post: PostprocessConfig, draws: int, thr: float, seed: int,
                 reuse: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .outputs import render_overview

    c = m["pavpu"]
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(c["thresholds"], c["p_accurate_given_certain"], "r-o", label="p(accurate | certain)")
    ax.plot(c["thresholds"], c["p_uncertain_given_inaccurate"], "-o", color="grey", label="p(uncertain | inaccurate)")
    ax.plot(c["thresholds"], c["pavpu"], "b-o", label="PAvPU")
    ax.set_xlabel("entropy threshold")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.set_title(f"Uncertainty metrics, {len(m['wells'])} {Path(data_dir).name} wells")
    fig.savefig(out_dir / "uncertainty_curves.png", dpi=100)
    plt.close(fig)
    examples = [w for w in ("C10", "C04", "D21") if w in m["wells"]] or m["wells"][:3]
    for w in examples:
        pred = saved_prediction(Path(reuse), w, thr) if reuse else \
            predict(lm.model, load_image(data_dir, w), post, draws, thr, next(lm.model.parameters()).device, seed)
        render_overview(load_image(data_dir, w), pred, out_dir / f"well_{w}.png", title=w)
    lines = [
        "# BBBC010 evaluation", "",
        f"Model `{m['model']}` (sha256 `{m['model_sha256'][:12]}`), {m['mc_draws']} MC draws, binarised at "
        f"{m['binarize_threshold']}, mean-shift bandwidth {post.bandwidth}, threshold {post.threshold}, minimum size {post.min_size} px.",
        f"Computed on {len(m['wells'])} wells: {', '.join(m['wells'])}.",
        f"Skipped (missing channel): {', '.join(m['skipped_wells']) or 'none'}. Published figures are on 50 wells.", "",
        "## Table 1 (BBBC010 protocol: per-well precision TP/(TP+FP) averaged over IoU 0.5:0.95 and wells)", "",
        "| model | avAP[0.5:0.95] | AP50 | AP75 | Recall@0.8 | DSB avAP |", "|---|---|---|---|---|---|",
        *[_row(k, v) for k, v in PAPER_TABLE1.items()], _row("**this model**", m), "",
        f"COCO ranked AP (pycocotools, score = mean instance probability; a different metric): "
        f"avAP {m['coco']['coco_avAP']:.3f}, AP50 {m['coco']['coco_AP50']:.3f}, AP75 {m['coco']['coco_AP75']:.3f}.", "",
        "## Table 2 (proofreading simulation: k highest uncertainty peak patches corrected)", "",
        "| k | avAP | AP50 | AP75 | Recall@0.8 | DSB avAP | paper avAP |", "|---|---|---|---|---|---|---|",
        *[f"| {r['k']} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + f" | {PAPER_TABLE2[r['k']][0]:.3f} |"
          for r in m["simulation"]], "",
        *review_section(m), "",
        "## Figure 2 (uncertainty metrics over entropy thresholds)", "", "![curves](uncertainty_curves.png)", "",
        "| entropy threshold | p(accurate\\|certain) | p(uncertain\\|inaccurate) | PAvPU |", "|---|---|---|---|",
        *[f"| {t:.3f} | {a:.3f} | {u:.3f} | {p:.3f} |" for t, a, u, p in
          zip(c["thresholds"], c["p_accurate_given_certain"], c["p_uncertain_given_inaccurate"], c["pavpu"])], "",
        "## Figure 1 (examples)", "", *[f"![{w}](well_{w}.png)" for w in examples], "",
        f"Recomputed from the predictions saved in `{reuse}` (no network run, so no timing)." if reuse else
        f"{m['seconds_per_image']:.2f} s per well on {m['device']}.",
    ]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")


def review_section(m: dict) -> list[str]:
    """report.md lines: how well the review list (and, for comparison, the patches) finds the errors."""
    r = m["review"]
    ks = list(r["items"]["found_fraction"])

    def line(name: str, s: dict) -> str:
        return (f"| {name} | {s['entries_per_well']:.1f} | " + " | ".join(f"{s['found_fraction'][k]:.0%}" for k in ks)
                + f" | {s['top_on_error_fraction']:.0%} |")

    sim = r["simulation_per_well"]
    return [
        "## Review list (suspected errors) against the ground truth", "",
        f"{r['items']['errors']} errors in {r['items']['wells']} wells ({r['items']['errors_per_well']:.1f} per well): "
        "a worm missed, a false or merged instance, or a worm matched at IoU < 0.8 (docs/review.md). An entry finds an "
        "error when its point lies within 10 px of the error's pixels.", "",
        "| list | entries per well | " + " | ".join(f"found by top {k}" for k in ks) + " | top 5 on an error |",
        "|---|---|" + "---|" * len(ks) + "---|",
        line("review items (default list)", r["items"]), line("4x4 patches (paper)", r["patches"]), "",
        "Proofreading simulation with items (as Table 2; an item's instances are replaced by their best-IoU gt worm):", "",
        "| top k items of each well | avAP | AP50 | AP75 | Recall@0.8 | DSB avAP |", "|---|---|---|---|---|---|",
        *[f"| {row['k']} | " + " | ".join(f"{row[k]:.3f}" for k in KEYS) + " |" for row in sim], "",
        "| k items pooled over wells (as Table 2 counts patches) | avAP | AP50 | AP75 | Recall@0.8 | DSB avAP |",
        "|---|---|---|---|---|---|",
        *[f"| {row['k']} | " + " | ".join(f"{row[k]:.3f}" for k in KEYS) + " |" for row in r["simulation_pooled"]],
    ]
