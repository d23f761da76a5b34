"""Section 2.2: embeddings -> instances (mean-shift, assignment within a radius, overlap heuristic).

The mean-shift is written in torch because scikit-learn's ``MeanShift`` takes tens of
seconds on one well's ~60k foreground embeddings; ``tests/test_postprocess.py`` checks
it against scikit-learn on data where both must agree, and against the previous
(1024 random seeds, ~70x slower) version on real embeddings of the bundled model;
benchmarks in docs/benchmarks.md.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

BACKGROUND, FOREGROUND, OVERLAP = 0, 1, 2

# Seeds that fall into one grid cell of width bandwidth / _DEDUPE_CELLS while climbing
# follow the same path to the same mode; all but the first are dropped (cell diagonal
# 0.2 bandwidth in 16-d, far below the bandwidth at which converged seeds are merged).
_DEDUPE_CELLS = 20
_CHUNK = 64  # seeds per kernel block: keeps the [seeds, points] weights in cache
_HASH = np.random.default_rng(20261126).integers(1, 2**62, 64, dtype=np.int64) | 1
# Kernel exponents are floored here: exp() of an argument whose float32 result would be
# subnormal (below ~-87.3) takes a slow path, ~10x slower on the project's CPU (issue 17: it was
# most of the clustering time).  exp(-87) = 1.6e-38 instead of 0 or a subnormal weight: far below
# the sums it enters, though a centre can move in its last bits (47 test wells, 8 draws: one pixel of
# one draw differed; docs/benchmarks.md, "Clustering's exp()").
_EXP_FLOOR = -87.0


def _row_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal rows of an integer array [N,D]: (group of each row [N], first row of each group).

    Hashes each row to one int64 (a 1-d unique is ~40x faster than ``np.unique(axis=0)``)
    and falls back to the exact row-wise unique on a hash collision.
    """
    mix = _HASH[: keys.shape[1]] if keys.shape[1] <= len(_HASH) else None
    if mix is not None:
        with np.errstate(over="ignore"):
            h = keys @ mix  # wraps around mod 2**64
        _, first, inv = np.unique(h, return_index=True, return_inverse=True)
        inv = inv.ravel()
        if (keys[first[inv]] == keys).all():
            return inv, first
    _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return inv.ravel(), first


def bin_seeds(points: torch.Tensor, bandwidth: float, max_seeds: int) -> torch.Tensor:
    """Mean of the points in each occupied cell of a grid of width ``bandwidth`` [S,D].

    As scikit-learn's ``bin_seeding``, but from the mean of each cell's points instead of
    the cell centre (which in 16-d can lie farther than a bandwidth from all of them): one
    seed per occupied region, however few points it has, instead of a random subset whose
    seeds crowd into the large clusters.  Cells in order of their first point.

    A compact cluster in 16-d straddles cell borders in many dimensions and can occupy
    hundreds of cells.  With more than ``max_seeds`` cells the seeds thin to a cover: the
    most populated cell first, then every cell whose mean is at least a bandwidth from all
    seeds taken so far, most populated first, stopping at ``max_seeds``.
    """
    a = points.detach().float().cpu().numpy()
    inv, first = _row_groups(np.floor(a / bandwidth + 0.5).astype(np.int64))
    count = np.bincount(inv, minlength=len(first))
    sums = torch.zeros(len(first), a.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.from_numpy(inv), torch.from_numpy(a).double())
    means = (sums / torch.from_numpy(count)[:, None]).float().numpy()
    order = np.argsort(first, kind="stable")
    if len(order) > max_seeds:
        order = order[np.argsort(-count[order], kind="stable")]
        m = means[order]
        covered = np.zeros(len(m), dtype=bool)
        kept = []
        for i in range(len(m)):
            if covered[i]:
                continue
            kept.append(i)
            if len(kept) == max_seeds:
                break
            covered |= np.square(m - m[i]).sum(1) < bandwidth**2
        order = order[kept]
    return torch.from_numpy(means[order]).to(points.device)


def _kernel(s: torch.Tensor, pts_t: torch.Tensor, pts_sq: torch.Tensor, inv: float) -> torch.Tensor:
    """Gaussian kernel weights [S,P] of a block of seeds ``s`` against all points."""
    # squared distances as |p|^2 - 2 s.p + |s|^2 in place: no [S,P] temporaries besides w
    w = torch.addmm(pts_sq, s, pts_t, alpha=-2)
    return w.add_((s * s).sum(1, keepdim=True)).clamp_(min=0, max=_EXP_FLOOR / inv).mul_(inv).exp_()


def _gaussian_shift(seeds: torch.Tensor, pts: torch.Tensor, pts_t: torch.Tensor, pts_sq: torch.Tensor,
                    inv: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One mean-shift step of ``seeds`` [S,D] under a Gaussian kernel on ``pts`` [P,D]; also each seed's kernel mass."""
    out = torch.empty_like(seeds)
    mass = torch.empty(len(seeds), device=seeds.device)
    for lo in range(0, len(seeds), _CHUNK):
        w = _kernel(seeds[lo:lo + _CHUNK], pts_t, pts_sq, inv)
        m = w.sum(1, keepdim=True)
        mass[lo:lo + _CHUNK] = m[:, 0]
        out[lo:lo + _CHUNK] = (w @ pts) / m.clamp(min=1e-30)
    return out, mass


def mean_shift(
    points: torch.Tensor,
    bandwidth: float,
    max_seeds: int = 1024,
    max_points: int = 20000,
    iters: int = 30,
    seed: int = 0,
    bin_seeding: bool = True,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cluster centres [K,D] of ``points`` [P,D] by seeded Gaussian-kernel mean-shift.

    Seeds (one per occupied ``bandwidth`` grid cell, see ``bin_seeds``, at most
    ``max_seeds``; or, with ``bin_seeding=False``, a random subset of the points) climb
    the kernel density estimated on a random subset of at most ``max_points`` points,
    for at most ``iters`` steps.  A seed stops once its step is below 1e-3 bandwidth, and
    seeds that meet while climbing continue as one.  Converged seeds closer than one
    bandwidth are merged, keeping the densest first (as scikit-learn does).  ``seed``
    fixes the random subsets; the result is deterministic given it.

    ``init`` (issue 17): centres found earlier on similar points (the mean network's, for
    an MC draw).  They climb and are merged first; then only the points farther than ``SEEDED_REACH``
    bandwidths from every merged centre get bin seeds of their own, so a cluster the
    earlier centres do not reach is still found, at a fraction of the seeds.
    """
    if points.shape[0] == 0:
        return points.new_zeros((0, points.shape[1]))
    g = torch.Generator(device="cpu").manual_seed(seed)
    all_pts = points.detach().float()
    pts = all_pts
    if pts.shape[0] > max_points:
        pts = pts[torch.randperm(pts.shape[0], generator=g)[:max_points].to(pts.device)]
    k = _Kernel(pts.contiguous(), bandwidth)
    if init is not None and len(init):
        first = k.climb(init.detach().float().to(pts.device).clone(), iters)
        kept = k.merge(first) if len(first) else first  # the centres the clustering would use
        far = torch.cdist(all_pts, kept).min(1).values > SEEDED_REACH * bandwidth if len(kept) else None
        rest = all_pts if far is None else all_pts[far]
        more = bin_seeds(rest, bandwidth, max_seeds) if len(rest) else rest
        seeds = torch.cat([first, k.climb(more, iters)])
    else:
        if bin_seeding:
            seeds = bin_seeds(all_pts, bandwidth, max_seeds)
        else:
            seeds = pts[torch.randperm(pts.shape[0], generator=g)[:max_seeds].to(pts.device)].clone()
        seeds = k.climb(seeds, iters)
    return k.merge(seeds)


# points farther than this many bandwidths from every climbed ``init`` centre get seeds of their own
SEEDED_REACH = 2.0


class _Kernel:
    """The Gaussian kernel density of one point set: climbing seeds and merging them.

    Why a class: climbing and merging share the transposed points, their squared norms and
    the kernel scale, and the seeded mode of ``mean_shift`` climbs twice.
    """

    def __init__(self, pts: torch.Tensor, bandwidth: float):
        self.pts, self.bandwidth = pts, bandwidth
        self.pts_t = pts.T.contiguous()
        self.pts_sq = (pts * pts).sum(1)[None]
        self.inv = -0.5 / bandwidth**2

    def climb(self, seeds: torch.Tensor, iters: int) -> torch.Tensor:
        """Move ``seeds`` [S,D] uphill; seeds that meet continue as one, the rest are returned.

        A seed whose kernel weights all vanish (farther than ~14 bandwidths from every point:
        only a foreign ``init`` centre can be) is dropped rather than sent to the origin.
        """
        if len(seeds) == 0:
            return seeds
        bw, dev = self.bandwidth, self.pts.device
        tol = 1e-3 * bw
        active = torch.arange(len(seeds), device=dev)  # seeds still climbing
        alive = torch.ones(len(seeds), dtype=torch.bool, device=dev)  # not dropped as duplicates
        for _ in range(iters):
            if len(active) == 0:
                break
            cur = seeds[active]
            new, mass = _gaussian_shift(cur, self.pts, self.pts_t, self.pts_sq, self.inv)
            lost = mass <= 1e-30
            if lost.any():
                alive[active[lost]] = False
                active, cur, new = active[~lost], cur[~lost], new[~lost]
            seeds[active] = new
            active = active[(new - cur).norm(dim=1) >= tol]
            if len(active) > 1:
                cells = np.floor(seeds[active].cpu().numpy() * (_DEDUPE_CELLS / bw)).astype(np.int64)
                _, first = _row_groups(cells)
                if len(first) < len(active):
                    keep = torch.zeros(len(active), dtype=torch.bool, device=dev)
                    keep[torch.from_numpy(first).to(dev)] = True
                    alive[active[~keep]] = False
                    active = active[keep]
        return seeds[alive]

    def merge(self, seeds: torch.Tensor) -> torch.Tensor:
        """Densest first, drop every seed within one bandwidth of a kept one."""
        density = torch.zeros(len(seeds), device=self.pts.device)
        for lo in range(0, len(seeds), _CHUNK):
            density[lo:lo + _CHUNK] = _kernel(seeds[lo:lo + _CHUNK], self.pts_t, self.pts_sq, self.inv).sum(1)
        seeds = seeds[torch.argsort(density, descending=True, stable=True)]
        near = (torch.cdist(seeds, seeds) < self.bandwidth).cpu().numpy()
        keep = np.zeros(len(seeds), dtype=bool)
        suppressed = np.zeros(len(seeds), dtype=bool)
        for i in range(len(seeds)):
            if not suppressed[i]:
                keep[i] = True
                suppressed |= near[i]
        return seeds[torch.from_numpy(keep).to(seeds.device)]


def assign_clusters(points: torch.Tensor, centres: torch.Tensor, radius: float) -> torch.Tensor:
    """Label of the nearest centre for each point within ``radius`` of it, else -1."""
    if centres.shape[0] == 0:
        return torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    d = torch.cdist(points.float(), centres.float())
    dmin, idx = d.min(1)
    idx[dmin > radius] = -1
    return idx


def overlap_heuristic(instances: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """Add the overlap map to each instance; keep the connected component of best IoU.

    instances [N,H,W] bool (disjoint clusters), overlap [H,W] bool -> [N,H,W] bool that
    may now overlap where worms cross.

    Each instance is labelled only inside the box around it and the overlap components
    touching it: every component that contains instance pixels lies inside that box, and
    only those can have the best IoU, so the result equals labelling the whole image.
    """
    out = np.zeros_like(instances)
    if len(instances) == 0:
        return out
    overlap = np.asarray(overlap, dtype=bool)
    h, w = overlap.shape
    ov_lab, _ = ndimage.label(overlap)
    ov_boxes = ndimage.find_objects(ov_lab)
    for i, inst in enumerate(instances):
        rows, cols = np.flatnonzero(inst.any(1)), np.flatnonzero(inst.any(0))
        if rows.size == 0:  # empty instance: no box to crop to
            out[i] = _best_component(inst, overlap)
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        # overlap components 4-adjacent to (or under) the instance, as ndimage.label connects them
        pr0, pr1, pc0, pc1 = max(r0 - 1, 0), min(r1 + 1, h), max(c0 - 1, 0), min(c1 + 1, w)
        grown = ndimage.binary_dilation(inst[pr0:pr1, pc0:pc1])
        for k in np.unique(ov_lab[pr0:pr1, pc0:pc1][grown]):
            if k:
                sr, sc = ov_boxes[k - 1]
                r0, r1, c0, c1 = min(r0, sr.start), max(r1, sr.stop), min(c0, sc.start), max(c1, sc.stop)
        out[i, r0:r1, c0:c1] = _best_component(inst[r0:r1, c0:c1], overlap[r0:r1, c0:c1])
    return out


def _best_component(inst: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """The connected component of ``inst | overlap`` with the best IoU with ``inst``."""
    lab, n = ndimage.label(inst | overlap)
    if n == 0:
        return np.zeros_like(inst)
    # IoU of each component with the bare instance; components are supersets of their part of inst
    inter = np.bincount(lab[inst], minlength=n + 1)[1:]
    size = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    iou = inter / (size + inst.sum() - inter)
    return lab == (int(np.argmax(iou)) + 1)


def embeddings_to_instances(
    embedding: torch.Tensor,
    logits: torch.Tensor,
    bandwidth: float,
    cluster_radius: float,
    min_size: int = 50,
    seed: int = 0,
) -> np.ndarray:
    """One draw's embedding [D,H,W] + class logits [3,H,W] -> instances [N,H,W] bool.

    Clusters only pixels classified foreground; overlap pixels join through the
    overlap heuristic; clusters smaller than ``min_size`` pixels are dropped.
    """
    return cluster_draw(embedding, logits, bandwidth, cluster_radius, min_size, seed)[0]


def cluster_draw(
    embedding: torch.Tensor,
    logits: torch.Tensor,
    bandwidth: float,
    cluster_radius: float,
    min_size: int = 50,
    seed: int = 0,
    init: torch.Tensor | None = None,
) -> tuple[np.ndarray, torch.Tensor]:
    """``embeddings_to_instances`` that also returns the mean-shift centres [K,D] and takes
    ``init`` centres to start from (``mean_shift``): the mean network's centres seed each MC draw."""
    h, w = embedding.shape[-2:]
    cls = logits.argmax(0)
    fg = cls == FOREGROUND
    pts = embedding.permute(1, 2, 0)[fg]
    centres = mean_shift(pts, bandwidth, seed=seed, init=init)
    labels = assign_clusters(pts, centres, cluster_radius).cpu().numpy()
    overlap = (cls == OVERLAP).cpu().numpy()
    inst = clusters_to_instances(labels, np.flatnonzero(fg.cpu().numpy()), len(centres), overlap, min_size, (h, w))
    return inst, centres


def clusters_to_instances(labels: np.ndarray, fg_idx: np.ndarray, n_clusters: int, overlap: np.ndarray,
                          min_size: int, shape: tuple[int, int]) -> np.ndarray:
    """Cluster labels of the foreground pixels ``fg_idx`` -> instance masks with the overlap heuristic.

    Clusters of fewer than ``min_size`` pixels, before or after the heuristic, are dropped.
    Shared by inference and the parameter search, which reuses cached embeddings.
    """
    return instances_by_min_size(labels, fg_idx, n_clusters, overlap, (min_size,), shape)[min_size]


def instances_by_min_size(labels: np.ndarray, fg_idx: np.ndarray, n_clusters: int, overlap: np.ndarray,
                          min_sizes: tuple[int, ...], shape: tuple[int, int]) -> dict[int, np.ndarray]:
    """``clusters_to_instances`` for several ``min_sizes`` at the cost of the smallest one.

    The overlap heuristic treats each instance on its own, so a larger minimum size only
    drops instances from the result of the smallest: the grid search tunes it for free.
    """
    h, w = shape
    smallest = min(min_sizes)
    masks, sizes = [], []
    for k in range(n_clusters):
        sel = fg_idx[labels == k]
        if sel.size < smallest:
            continue
        m = np.zeros(h * w, dtype=bool)
        m[sel] = True
        masks.append(m.reshape(h, w))
        sizes.append(sel.size)
    if not masks:
        return {m: np.zeros((0, h, w), dtype=bool) for m in min_sizes}
    out = overlap_heuristic(np.stack(masks), overlap)
    final = out.reshape(len(out), h * w).sum(1)
    smaller = np.minimum(np.array(sizes), final)
    return {m: out[smaller >= m] for m in min_sizes}
