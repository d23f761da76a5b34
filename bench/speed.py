"""Per-stage speed and peak memory of inference on one 520x696 BBBC010 well (issue 6.6, 17).

    python bench/speed.py [--model bbbc010-concrete] [--well C10] [--repeats 3]
    python bench/speed.py --json [--repeats 3]      # issue 17: one JSON line, new and old path
    python bench/speed.py --json --size 4096        # issue 17: a 4096x4096 mosaic, tiled

``--json`` times, through the public API and in one process, the first result
(``predict_progressive``'s mean-network update) and all 8 draws with agglomeration, entropy
and the review list (``predict`` + ``review_items``), for the new path (``predict``'s
defaults: on a CPU draws one at a time, unseeded mean-shift; the same results as batches of
4 since the dropout noise is drawn ahead) and the old one (``batch=4``, unseeded: the defaults
before), alternating old and new ``--repeats`` times (median of each).  The old path runs
this checkout's clustering, so it no longer pays the clustering's slow exp() (issue 17).
``--size N`` builds an NxN mosaic of the well tiled with its mirror images and runs ``tiling.predict_tiled`` on it
(time, peak RSS, instances; defaults: ``tiling.TILE`` cores, batch 1), after one untiled run of
the well (``predict``'s defaults) for the area-scaled reference.  ``window_area_ratio``: the pixels the
network ran on over the image's (the tiles' overlap).

Stages: forward passes (T=1 and T=8, default batch), clustering (mean-shift + assignment +
overlap heuristic per draw), agglomeration, peak ranking; plus the torch mean-shift
against scikit-learn's MeanShift on the same real foreground embeddings.  Prints a
markdown table; not a test (no timing asserts anywhere).
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import torch

from napari_probseg.data import default_data_dir, load_image
from napari_probseg.devices import pick_device
from napari_probseg.inference import agglomerate, bernoulli_entropy, forward_draws, prepare_input, uncertainty_peaks
from napari_probseg.models import load_model
from napari_probseg.postprocess import FOREGROUND, embeddings_to_instances, mean_shift


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def json_mode(lm, raw: np.ndarray, dev, args) -> dict:
    """Issue 17's figures: first result and all draws, new and old path alternating."""
    import statistics

    from napari_probseg.inference import predict, predict_progressive

    post, draws = lm.postprocess, args.draws
    paths = {"new": {}, "old": {"batch": 4}}
    first, full, counts = {k: [] for k in paths}, {k: [] for k in paths}, {}
    predict(lm.model, raw, post, 1, device=dev).review_items()  # warm-up (kernels, review imports): the first timed path would pay it
    for _ in range(args.repeats):
        for name, kw in paths.items():
            t0 = time.perf_counter()
            if name == "new":
                next(predict_progressive(lm.model, raw, post, draws, device=dev, **kw)).prediction().labels()
                first[name].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
            pred = predict(lm.model, raw, post, draws, device=dev, **kw)
            items = pred.review_items()
            full[name].append(time.perf_counter() - t0)
            if name == "old":
                first[name].append(full[name][-1])  # the old path shows nothing before the end
            counts[name] = {"instances": pred.n_instances, "review_items": len(items), "draw_counts": pred.draw_counts}
    med = {k: {"first": statistics.median(first[k]), "all": statistics.median(full[k])} for k in paths}
    return {"first_result_s": round(med["new"]["first"], 3), "all_draws_s": round(med["new"]["all"], 3),
            "old_first_result_s": round(med["old"]["first"], 3), "old_all_draws_s": round(med["old"]["all"], 3),
            "speedup_all_draws": round(med["old"]["all"] / med["new"]["all"], 2), "draws": draws,
            "old_path": "predict(batch=4), unseeded", "new_path": "predict() defaults (CPU: batch 1, unseeded)",
            "runs": {k: [round(v, 3) for v in full[k]] for k in paths}, "results": counts}


def size_mode(lm, raw: np.ndarray, dev, args) -> dict:
    """A ``--size`` square mosaic of the well and its mirror images, tiled; plus the well alone."""
    from napari_probseg.inference import predict
    from napari_probseg.tiling import predict_tiled, tile_grid

    post, draws = lm.postprocess, args.draws
    predict(lm.model, raw, post, 1, device=dev)  # warm-up (kernel creation), as in --json
    t0 = time.perf_counter()
    predict(lm.model, raw, post, draws, device=dev).review_items()
    well_s = time.perf_counter() - t0
    h, w = raw.shape[-2:]
    cell = np.concatenate([np.concatenate([raw, raw[:, :, ::-1]], 2), np.concatenate([raw[:, ::-1], raw[:, ::-1, ::-1]], 2)], 1)
    reps = (1, -(-args.size // (2 * h)), -(-args.size // (2 * w)))
    mosaic = np.ascontiguousarray(np.tile(cell, reps)[:, : args.size, : args.size])
    del cell
    t0 = time.perf_counter()
    tiled = predict_tiled(lm.model, mosaic, post, draws, device=dev, tile=args.tile, batch=1)
    labels = tiled.labels()
    sec = time.perf_counter() - t0
    ratio = args.size**2 / (h * w)
    grid = tile_grid(args.size, args.size, args.tile, align=lm.model.cell)
    cover = sum((wy.stop - wy.start) * (wx.stop - wx.start) for _, (wy, wx) in grid) / args.size**2
    return {"size": args.size, "seconds": round(sec, 2), "tiles": tiled.tiles, "tile": args.tile,
            "window_area_ratio": round(cover, 3), "draws": draws,
            "instances": tiled.n_instances, "truncated": tiled.truncated, "labels_max": int(labels.max()),
            "well_all_draws_s": round(well_s, 3), "area_ratio": round(ratio, 2),
            "time_vs_area_scaled_well": round(sec / (ratio * well_s), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bbbc010-concrete")
    ap.add_argument("--well", default="C10")
    ap.add_argument("--image", help="a [C,H,W] TIFF instead of a BBBC010 well (e.g. the bundled sample data)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sklearn-points", type=int, default=20000, help="points for the scikit-learn comparison")
    ap.add_argument("--json", action="store_true", help="issue 17: one JSON line (first result, all draws, old path)")
    ap.add_argument("--size", type=int, default=0, help="with --json: an NxN tiled mosaic instead (e.g. 4096)")
    ap.add_argument("--tile", type=int, default=2048, help="core side of the tiles for --size (tiling.TILE)")
    ap.add_argument("--draws", type=int, default=8, help="MC draws for --json and --size (the figures: 8)")
    args = ap.parse_args()
    dev = pick_device(args.device)
    lm = load_model(args.model, dev)
    post = lm.postprocess
    if args.image:
        import tifffile

        raw = tifffile.imread(args.image)
    else:
        raw = load_image(default_data_dir(), args.well)
    if args.json or args.size:
        import json
        import os

        load = os.getloadavg()[0]
        out = size_mode(lm, raw, dev, args) if args.size else json_mode(lm, raw, dev, args)
        out.update(peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), well=args.well,
                   model=lm.path, device=str(dev), torch_threads=torch.get_num_threads(), cpus=os.cpu_count(),
                   load_avg_at_start=load, torch=torch.__version__)
        if dev.type == "cuda":
            out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        print(json.dumps(out))
        return
    x = prepare_input(raw, lm.model)
    rows = []
    for t_draws in (1, 8):
        sec, outs = timed(lambda: list(forward_draws(lm.model, x, t_draws, dev)), args.repeats)
        rows.append((f"forward passes, T={t_draws}", sec))
        sec, stacks = timed(lambda: [embeddings_to_instances(e, l, post.bandwidth, post.cluster_radius, post.min_size)
                                     for e, l in outs], args.repeats)
        rows.append((f"clustering + overlap heuristic, T={t_draws}", sec))
        sec, probs = timed(lambda: agglomerate(stacks), args.repeats)
        rows.append((f"agglomeration, T={t_draws}", sec))
        sec, _ = timed(lambda: uncertainty_peaks(bernoulli_entropy(probs).max(0) if len(probs) else
                                                 np.zeros(x.shape[-2:], np.float32), probs), args.repeats)
        rows.append((f"entropy + peak ranking, T={t_draws}", sec))
    emb, logits = outs[0]
    pts = emb.permute(1, 2, 0)[logits.argmax(0) == FOREGROUND].float().cpu()
    sub = pts[torch.randperm(len(pts), generator=torch.Generator().manual_seed(0))[: args.sklearn_points]]
    t_ours, _ = timed(lambda: mean_shift(sub, post.bandwidth), args.repeats)
    from sklearn.cluster import MeanShift

    t0 = time.perf_counter()
    MeanShift(bandwidth=post.bandwidth, bin_seeding=True).fit(sub.numpy())
    t_sk = time.perf_counter() - t0
    tracemalloc.start()
    list(forward_draws(lm.model, x, 8, dev))
    _, peak_py = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model {lm.path}, well {args.well}, device {dev}, torch threads {torch.get_num_threads()}, "
          f"{len(pts)} foreground embeddings\n")
    print(f"| stage | seconds (best of {args.repeats}) |\n|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} |")
    print(f"| total T=8 | {sum(s for n, s in rows if 'T=8' in n):.3f} |")
    print(f"\nmean-shift on {len(sub)} real 16-d embeddings: torch {t_ours:.3f} s, scikit-learn MeanShift "
          f"(bin_seeding) {t_sk:.2f} s, ratio {t_sk / max(t_ours, 1e-9):.0f}x")
    print(f"peak RSS {rss:.0f} MiB (whole process); python-tracked peak during T=8 forward {peak_py / 2**20:.0f} MiB")
    if dev.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
