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
from .count_fit import evaluate_counts
from .data import InputError, available_wells, default_data_dir, read_split
from .devices import pick_device
from .inference import PATCH, Prediction, uncertainty_peaks
from .masks import nonempty
from .measurements import matched_shape_errors
from .metrics import aggregate, coco_ap, image_scores
from .models import load_model
from .review import write_review_csv
from .review_metrics import proofread_counts, review_summary, score_well
from .scale_eval import WellScaler
from .scale_eval import report_line as scale_report_line
from .uncertainty_metrics import entropy_map, simulate_proofreading, uncertainty_counts, uncertainty_curves

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
                   binarize: float | None = None, device: str = "auto", wells: list[str] | None = None,
                   tune: bool = False, seed: int = 0, reuse: str | None = None,
                   brightfield_only: bool = False, resample: float = 1.0, worm_width: float | str = "off") -> dict:
    """Evaluate ``model`` on ``split``; with ``reuse`` (an earlier evaluation folder) the saved
    per-instance probabilities are read back instead of running the network, and every metric,
    review list and report figure is recomputed from them (same model and settings required).
    Long because it is the one pass over the wells that feeds every table; each table is
    computed by its own module (metrics, uncertainty_metrics, review_metrics, counts).
    ``brightfield_only`` feeds only w2 (issue 19), so one protocol measures a model on brightfield alone;
    ``resample`` and ``worm_width`` evaluate another magnification (``scale_eval``)."""
    from tqdm import tqdm

    data_dir = Path(data) if data else default_data_dir()
    out_dir = Path(out)
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    (out_dir / "review").mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    lm = load_model(model, dev)
    channels = eval_channels(lm, brightfield_only)
    sizer = WellScaler(resample, worm_width)
    sizer.check_reuse(reuse)
    post, tune_info = _tuned(lm, data_dir) if tune else (lm.postprocess, None)
    draws = draws or post.mc_draws
    thr = post.binarize if binarize is None else binarize
    ok, skipped = available_wells(data_dir, split, channels)
    if wells:
        ok, skipped = select_wells(wells, ok, skipped, split)
    for w in skipped:
        print(f"skipping well {w}: a channel file is missing")
    per_image, counts, preds, probs, peaks, gts, scored, coco_scores = [], [], {}, {}, {}, {}, {}, []
    items, listed = {}, {}
    count_in, truth, shapes = {}, {}, []
    t0 = time.perf_counter()
    for well in tqdm(ok, desc="evaluating wells", unit="well"):
        image, gt = sizer.load(data_dir, well, channels)
        pred = saved_prediction(Path(reuse), well, thr) if reuse else \
            sizer.segment(well, lm.model, image, post, draws, thr, dev, seed)
        keep = nonempty(pred.instances)
        inst, prob = pred.instances[keep], pred.probabilities[keep]
        _save(out_dir / "predictions" / f"{well}.npz", pred, keep)
        per_image.append(image_scores(inst, gt))
        counts.append(uncertainty_counts(pred.probabilities, gt, binarize=thr))
        # the simulation sees every instance, also those below the binarisation cut everywhere
        preds[well], probs[well], gts[well] = pred.instances, pred.probabilities, gt
        scored[well] = inst
        peaks[well] = [(p.score, p.y, p.x) for p in pred.peaks]
        shown = pred.review_items()  # the default list, as the dock and probseg predict show it
        write_review_csv(shown, out_dir / "review" / f"{well}.csv")
        items[well] = [(it.score, it.named) for it in shown]  # a proofreader at the spot sees every worm named
        listed[well] = score_well([(it.y, it.x) for it in shown],
                                  [(p.y + PATCH // 2, p.x + PATCH // 2) for p in pred.peaks], inst, gt)
        coco_scores.append(np.array([prob[i][inst[i]].mean() for i in range(len(inst))]))
        count_in[well], truth[well] = pred.count_inputs(), len(gt)
        shapes += [{"well": well, **s} for s in matched_shape_errors(inst, gt)]
    seconds = (time.perf_counter() - t0) / max(len(ok), 1)
    agg = aggregate(per_image)
    metrics = {
        "model": lm.path, "model_sha256": lm.sha256, "brightfield_only": brightfield_only, "wells": ok, "skipped_wells": skipped,
        "scale": sizer.record(),
        **{k: agg[k] for k in KEYS},
        "curves": {k: agg[k] for k in ("iou_thresholds", "precision", "recall", "dsb")},
        "coco": coco_ap(list(scored.values()), list(gts.values()), coco_scores),
        "pavpu": uncertainty_curves(counts),
        "simulation": simulate_proofreading(preds, probs, peaks, gts),
        "review": review_summary(listed, preds, probs, items, gts),
        "binarize": thr, "mc_draws": draws, "postprocess": asdict(post),
        "seconds_per_image": seconds, "device": str(dev), "tuning": tune_info,
        "dropout_rates": lm.model.dropout_rates(),
        "counts": {**evaluate_counts(count_in, truth, _folds(data_dir, split)), "shape": shape_summary(shapes),
                   "after_proofreading": proofread_counts(preds, probs, items, gts)},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    if reuse:
        metrics.update(reused_predictions=str(reuse), seconds_per_image=None)  # reading files is not inference
    write_report(metrics, out_dir, data_dir, lm, post, draws, thr, seed, reuse)
    print(json.dumps({k: round(metrics[k], 4) for k in KEYS}))
    cm = metrics["counts"]
    print(json.dumps({"count_mae": round(cm["mae"], 3), "count_bias": round(cm["bias"], 3),
                      "coverage": round(cm["coverage"], 3), "mean_width": round(cm["mean_width"], 2),
                      "count_mae_after_top5": round(cm["after_proofreading"]["mae"], 3),
                      "length_median_abs_rel_error": round(cm["shape"]["length_median_abs_rel_error"], 4)}))
    return metrics


def eval_channels(lm, brightfield_only: bool) -> tuple[str, ...]:
    """The channel files fed: w2 alone for ``--brightfield-only`` (refused, before any compute,
    for a model not trained for it), else both."""
    from .channels import BRIGHTFIELD, NEEDS_BOTH
    from .data import CHANNEL_TAGS

    if not brightfield_only:
        return CHANNEL_TAGS
    if not lm.model.brightfield_only:
        raise InputError(f"--brightfield-only: {NEEDS_BOTH}")
    return (BRIGHTFIELD,)


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


def _folds(data_dir: Path, split: str) -> list[list[str]] | None:
    """The 2-fold split of the test wells (splits/test_fold1.txt, test_fold2.txt), if there is one."""
    if split != "test":
        return None
    try:
        return [read_split(data_dir, "test_fold1"), read_split(data_dir, "test_fold2")]
    except InputError:
        return None


def shape_summary(shapes: list[dict]) -> dict:
    """Median relative errors (absolute and signed) of area and skeleton length over matched worms."""
    out: dict = {"matched": len(shapes), "min_iou": 0.5}
    for k in ("area", "length"):
        e = np.array([s[f"{k}_rel_error"] for s in shapes], dtype=float)
        out[f"{k}_median_abs_rel_error"] = float(np.median(np.abs(e))) if len(e) else 0.0
        out[f"{k}_median_rel_error"] = float(np.median(e)) if len(e) else 0.0
    out["worms"] = shapes
    return out


def _row(name: str, vals: dict | tuple) -> str:
    v = [vals[k] for k in KEYS] if isinstance(vals, dict) else list(vals)
    return f"| {name} | " + " | ".join(f"{x:.3f}" for x in v) + " |"


def _tuned(lm, data_dir: Path) -> tuple[PostprocessConfig, dict]:
    """Post-processing from the 2-fold grid search (``--tune``) and what it found."""
    from .tuning import grid_search

    res = grid_search(lm.model, data_dir)
    post = PostprocessConfig(**{**asdict(lm.postprocess), "bandwidth": res.bandwidth,
                                "cluster_radius": res.cluster_radius, "min_size": res.min_size})
    return post, {"bandwidth": res.bandwidth, "cluster_radius": res.cluster_radius, "min_size": res.min_size,
                  "cv": res.cv, "table": res.table}


def _save(path: Path, pred: Prediction, keep: np.ndarray) -> None:
    """``predictions/<WELL>.npz``: the scored (non-empty) instances and every instance's probabilities."""
    np.savez_compressed(path, probabilities=pred.probabilities[keep].astype(np.float16), instances=pred.instances[keep],
                        all_probabilities=pred.probabilities.astype(np.float16), entropy=pred.entropy.astype(np.float16),
                        peaks=np.array([[p.score, p.y, p.x] for p in pred.peaks], np.float32).reshape(-1, 3),
                        draw_counts=np.array(pred.draw_counts, np.int32))


def saved_prediction(folder: Path, well: str, binarize: float) -> Prediction:
    """A well's Prediction rebuilt from ``predictions/<WELL>.npz`` of an earlier run (no draws kept).

    Probabilities are k/T for T draws, exact in float16, so entropy, peaks and review items
    come out as the run computed them.  Saved instances binarised at another cut are refused.
    """
    path = folder / "predictions" / f"{well}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run probseg evaluate --out {folder} first")
    with np.load(path) as z:
        if "all_probabilities" not in z.files:
            raise InputError(f"{path} predates the saved all_probabilities; evaluate again without --reuse")
        probs, inst = z["all_probabilities"].astype(np.float32), z["instances"].astype(bool)
        # each draw's instance count (the count interval's spread), carried on so that a run reusing this
        # one's folder keeps them too; [] in files from before they were saved
        counted = [int(v) for v in z["draw_counts"]] if "draw_counts" in z.files else []
    binar = probs >= binarize
    if not np.array_equal(binar[nonempty(binar)], inst):
        raise InputError(f"{path} was binarised at another cut than {binarize}")
    ent = entropy_map(probs, probs.shape)
    return Prediction(probs, binar, ent, uncertainty_peaks(ent, probs), [], binarize, counted=counted)


def write_report(m: dict, out_dir: Path, data_dir: Path, lm, post: PostprocessConfig, draws: int, thr: float, seed: int,
                 reuse: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .outputs import render_overview

    c = m["pavpu"]
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(c["entropy_cuts"], c["p_accurate_given_certain"], "r-o", label="p(accurate | certain)")
    ax.plot(c["entropy_cuts"], c["p_uncertain_given_inaccurate"], "-o", color="grey", label="p(uncertain | inaccurate)")
    ax.plot(c["entropy_cuts"], c["pavpu"], "b-o", label="PAvPU")
    ax.set_xlabel("entropy cut")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.set_title(f"Uncertainty metrics, {len(m['wells'])} {Path(data_dir).name} wells")
    fig.savefig(out_dir / "uncertainty_curves.png", dpi=100)
    plt.close(fig)
    examples = [w for w in ("C10", "C04", "D21") if w in m["wells"]] or m["wells"][:3]
    channels = eval_channels(lm, m.get("brightfield_only", False))
    sizer = WellScaler.from_record(m.get("scale"))
    for w in examples:
        image = sizer.load(data_dir, w, channels)[0]
        pred = saved_prediction(Path(reuse), w, thr) if reuse else \
            sizer.segment(w, lm.model, image, post, draws, thr, next(lm.model.parameters()).device, seed)
        render_overview(image, pred, out_dir / f"well_{w}.png", title=w)
    lines = [
        "# BBBC010 evaluation", "",
        f"Model `{m['model']}` (sha256 `{m['model_sha256'][:12]}`), {m['mc_draws']} MC draws, binarised at "
        f"{m['binarize']}, mean-shift bandwidth {post.bandwidth}, cluster radius {post.cluster_radius}, minimum size {post.min_size} px.",
        f"Computed on {len(m['wells'])} wells: {', '.join(m['wells'])}.",
        "Input: brightfield (w2) alone, fluorescence fed as a zero plane (`--brightfield-only`)." if
        m.get("brightfield_only") else "Input: fluorescence (w1) and brightfield (w2).",
        scale_report_line(m),
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
        "## Figure 2 (uncertainty metrics over entropy cuts)", "", "![curves](uncertainty_curves.png)", "",
        "| entropy cut | p(accurate\\|certain) | p(uncertain\\|inaccurate) | PAvPU |", "|---|---|---|---|",
        *[f"| {t:.3f} | {a:.3f} | {u:.3f} | {p:.3f} |" for t, a, u, p in
          zip(c["entropy_cuts"], c["p_accurate_given_certain"], c["p_uncertain_given_inaccurate"], c["pavpu"])], "",
        *count_report(m["counts"], out_dir),
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


def count_report(c: dict, out_dir: Path) -> list[str]:
    """The report's count section and its figure (predicted vs true count with the intervals)."""
    import matplotlib.pyplot as plt

    wells = sorted(c["per_well"], key=lambda w: (c["per_well"][w]["true"], w))
    pw = [c["per_well"][w] for w in wells]
    fig, ax = plt.subplots(figsize=(10, 4), constrained_layout=True)
    x = np.arange(len(wells))
    cnt = np.array([r["count"] for r in pw])
    ax.errorbar(x, cnt, yerr=[cnt - [r["low"] for r in pw], [r["high"] for r in pw] - cnt], fmt="o", color="tab:blue",
                capsize=2, label=f"predicted count, {round(100 * c['level'])}% interval")
    ax.plot(x, [r["true"] for r in pw], "k_", ms=12, mew=2, label="true count")
    ax.plot(x, [r["binarised"] for r in pw], "x", color="tab:red", ms=5, label="binarised instances")
    ax.set_xticks(x, wells, rotation=90, fontsize=7)
    ax.set_ylabel("worms per well")
    ax.legend(fontsize=8)
    ax.set_title(f"Counts: MAE {c['mae']:.2f}, coverage {c['coverage']:.2f}, mean width {c['mean_width']:.2f}")
    fig.savefig(out_dir / "counts.png", dpi=100)
    plt.close(fig)
    sh, b, s = c["shape"], c["binarised"], c["shipped"]
    cal = c["shipped_calibration"]
    return [
        "## Counts with intervals and per-worm measurements", "",
        f"Protocol: {c['protocol']}. Fold calibrations: " + "; ".join(
            f"{k['estimator']} bias {k['bias']:+.2f} sigma0 {k['sigma0']:.2f}" for k in c["calibrations"]) + ".", "",
        "| count | MAE | bias | exact | coverage | mean width |", "|---|---|---|---|---|---|",
        f"| binarised instances (before) | {b['mae']:.3f} | {b['bias']:+.3f} | {b['exact']:.2f} | - | - |",
        f"| **2-fold (headline)** | {c['mae']:.3f} | {c['bias']:+.3f} | {c['exact']:.2f} | {c['coverage']:.3f} | "
        f"{c['mean_width']:.2f} |",
        f"| shipped calibration ({cal['estimator']}, bias {cal['bias']:+.2f}, sigma0 {cal['sigma0']:.2f}) | "
        f"{s['mae']:.3f} | {s['bias']:+.3f} | {s['exact']:.2f} | {s['coverage']:.3f} | {s['mean_width']:.2f} |", "",
        f"Matched worms (IoU >= {sh['min_iou']}): {sh['matched']}; median |relative error| of area "
        f"{100 * sh['area_median_abs_rel_error']:.1f}% (signed {100 * sh['area_median_rel_error']:+.1f}%), of skeleton "
        f"length {100 * sh['length_median_abs_rel_error']:.1f}% (signed {100 * sh['length_median_rel_error']:+.1f}%).", "",
        *proofread_lines(c.get("after_proofreading")),
        "![counts](counts.png)", "",
    ]


def proofread_lines(p: dict | None) -> list[str]:
    """The report's line on the count after proofreading the top review items (simulated with the ground truth)."""
    if not p:
        return []
    return [f"After proofreading the top {p['k']} review items of every well (simulated with the ground truth: "
            f"{p['rule']}), the label image's worm count has MAE {p['mae']:.3f} (bias {p['bias']:+.3f}, exact in "
            f"{p['exact']:.0%} of wells); before, {p['mae_before']:.3f}.", ""]

