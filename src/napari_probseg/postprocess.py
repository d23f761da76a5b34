"""Section 2.2: embeddings -> instances (mean-shift, threshold assignment, overlap heuristic).

The mean-shift is written in torch because scikit-learn's ``MeanShift`` takes tens of
seconds on one well's ~60k foreground embeddings; ``tests/test_postprocess.py`` checks
it against scikit-learn on data where both must agree.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

BACKGROUND, FOREGROUND, OVERLAP = 0, 1, 2


def mean_shift(
    points: torch.Tensor,
    bandwidth: float,
    max_seeds: int = 1024,
    max_points: int = 20000,
    iters: int = 30,
    seed: int = 0,
) -> torch.Tensor:
    """Cluster centres [K,D] of ``points`` [P,D] by seeded Gaussian-kernel mean-shift.

    Seeds (a random subset) climb the kernel density estimated on a random subset of
    at most ``max_points`` points; converged seeds closer than one bandwidth are merged,
    keeping the densest first (as scikit-learn does).
    """
    if points.shape[0] == 0:
        return points.new_zeros((0, points.shape[1]))
    g = torch.Generator(device="cpu").manual_seed(seed)
    pts = points.float()
    if pts.shape[0] > max_points:
        pts = pts[torch.randperm(pts.shape[0], generator=g)[:max_points].to(pts.device)]
    seeds = pts[torch.randperm(pts.shape[0], generator=g)[:max_seeds].to(pts.device)].clone()
    inv = -0.5 / bandwidth**2
    for _ in range(iters):
        w = torch.exp(torch.cdist(seeds, pts).pow(2) * inv)  # [S,P]
        new = (w @ pts) / w.sum(1, keepdim=True).clamp(min=1e-12)
        shift = (new - seeds).norm(dim=1).max()
        seeds = new
        if shift < 1e-3 * bandwidth:
            break
    density = torch.exp(torch.cdist(seeds, pts).pow(2) * inv).sum(1)
    order = torch.argsort(density, descending=True)
    centres: list[torch.Tensor] = []
    for i in order.tolist():
        c = seeds[i]
        if all(float((c - k).norm()) >= bandwidth for k in centres):
            centres.append(c)
    return torch.stack(centres)


def assign_clusters(points: torch.Tensor, centres: torch.Tensor, threshold: float) -> torch.Tensor:
    """Label of the nearest centre for each point within ``threshold`` of it, else -1."""
    if centres.shape[0] == 0:
        return torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    d = torch.cdist(points.float(), centres.float())
    dmin, idx = d.min(1)
    idx[dmin > threshold] = -1
    return idx


def overlap_heuristic(instances: np.ndarray, overlap: np.ndarray) -> np.ndarray:
    """Add the overlap map to each instance; keep the connected component of best IoU.

    instances [N,H,W] bool (disjoint clusters), overlap [H,W] bool -> [N,H,W] bool that
    may now overlap where worms cross.
    """
    out = np.zeros_like(instances)
    for i, inst in enumerate(instances):
        merged = inst | overlap
        lab, n = ndimage.label(merged)
        if n == 0:
            continue
        # IoU of each component with the bare instance; components are supersets of their part of inst
        inter = np.bincount(lab[inst], minlength=n + 1)[1:]
        size = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        iou = inter / (size + inst.sum() - inter)
        out[i] = lab == (int(np.argmax(iou)) + 1)
    return out


def embeddings_to_instances(
    embedding: torch.Tensor,
    logits: torch.Tensor,
    bandwidth: float,
    threshold: float,
    min_size: int = 50,
    seed: int = 0,
) -> np.ndarray:
    """One draw's embedding [D,H,W] + class logits [3,H,W] -> instances [N,H,W] bool.

    Clusters only pixels classified foreground; overlap pixels join through the
    overlap heuristic; clusters smaller than ``min_size`` pixels are dropped.
    """
    h, w = embedding.shape[-2:]
    cls = logits.argmax(0)
    fg = cls == FOREGROUND
    pts = embedding.permute(1, 2, 0)[fg]
    centres = mean_shift(pts, bandwidth, seed=seed)
    labels = assign_clusters(pts, centres, threshold).cpu().numpy()
    overlap = (cls == OVERLAP).cpu().numpy()
    return clusters_to_instances(labels, np.flatnonzero(fg.cpu().numpy()), len(centres), overlap, min_size, (h, w))


def clusters_to_instances(labels: np.ndarray, fg_idx: np.ndarray, n_clusters: int, overlap: np.ndarray,
                          min_size: int, shape: tuple[int, int]) -> np.ndarray:
    """Cluster labels of the foreground pixels ``fg_idx`` -> instance masks with the overlap heuristic.

    Shared by inference and the parameter search, which reuses cached embeddings.
    """
    h, w = shape
    masks = []
    for k in range(n_clusters):
        sel = fg_idx[labels == k]
        if sel.size < min_size:
            continue
        m = np.zeros(h * w, dtype=bool)
        m[sel] = True
        masks.append(m.reshape(h, w))
    if not masks:
        return np.zeros((0, h, w), dtype=bool)
    out = overlap_heuristic(np.stack(masks), overlap)
    return out[out.reshape(len(out), -1).sum(1) >= min_size]
