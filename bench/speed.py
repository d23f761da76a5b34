"""Per-stage speed and peak memory of inference on one 520x696 BBBC010 well (issue 6.6).

    python bench/speed.py [--model bbbc010-concrete] [--well C10] [--repeats 3]

Stages: forward passes (T=1 and T=8, batched), clustering (mean-shift + assignment +
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="bbbc010-concrete")
    ap.add_argument("--well", default="C10")
    ap.add_argument("--image", help="a [C,H,W] TIFF instead of a BBBC010 well (e.g. the bundled sample data)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sklearn-points", type=int, default=20000, help="points for the scikit-learn comparison")
    args = ap.parse_args()
    dev = pick_device(args.device)
    lm = load_model(args.model, dev)
    post = lm.postprocess
    if args.image:
        import tifffile

        raw = tifffile.imread(args.image)
    else:
        raw = load_image(default_data_dir(), args.well)
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
