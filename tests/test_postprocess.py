import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import MeanShift
from sklearn.metrics import adjusted_rand_score

from napari_probseg.postprocess import assign_clusters, embeddings_to_instances, mean_shift, overlap_heuristic


def blobs(n_per=300, k=4, dim=16, spread=0.25, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, dim))
    centres *= 4.0 / np.linalg.norm(centres, axis=1, keepdims=True)  # well apart
    centres[1] = -centres[0]
    pts = np.concatenate([c + rng.normal(0, spread, (n_per, dim)) for c in centres])
    return pts.astype(np.float32), np.repeat(np.arange(k), n_per), centres


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_shift_agrees_with_scikit_learn(seed):
    pts, truth, _ = blobs(seed=seed)
    bw = 1.5
    sk = MeanShift(bandwidth=bw).fit(pts)
    ours = mean_shift(torch.from_numpy(pts), bw).numpy()
    assert len(ours) == len(sk.cluster_centers_) == 4
    d = np.linalg.norm(ours[:, None] - sk.cluster_centers_[None], axis=-1)
    r, c = linear_sum_assignment(d)
    assert d[r, c].max() < 0.15
    labels = assign_clusters(torch.from_numpy(pts), torch.from_numpy(ours), threshold=3.0).numpy()
    assert adjusted_rand_score(sk.labels_, labels) == 1.0
    assert adjusted_rand_score(truth, labels) == 1.0


def test_assign_respects_threshold_and_empty():
    pts = torch.tensor([[0.0, 0.0], [0.5, 0.0], [5.0, 0.0]])
    lab = assign_clusters(pts, torch.tensor([[0.0, 0.0]]), threshold=1.0)
    assert lab.tolist() == [0, 0, -1]
    assert assign_clusters(pts, torch.zeros(0, 2), 1.0).tolist() == [-1, -1, -1]
    assert mean_shift(torch.zeros(0, 16), 1.0).shape == (0, 16)


def test_overlap_heuristic_reconnects_crossing_worm():
    """A vertical worm cut in two by a horizontal one: adding the overlap rejoins it."""
    h = np.zeros((2, 30, 30), bool)
    h[0, 0:13, 14:17] = h[0, 17:30, 14:17] = True  # vertical worm, minus the crossing
    h[1, 13:17, 0:14] = h[1, 13:17, 17:30] = True  # horizontal worm, minus the crossing
    overlap = np.zeros((30, 30), bool)
    overlap[13:17, 14:17] = True
    noise = np.zeros((30, 30), bool)
    out = overlap_heuristic(h, overlap)
    assert out[0, :, 14:17].all() and out[1, 13:17, :].all()
    assert (out[0] & out[1]).sum() == overlap.sum()  # both share the crossing
    out2 = overlap_heuristic(h[:1], noise)  # no overlap map: best IoU component only
    assert out2[0].sum() == 13 * 3


def test_embeddings_to_instances_end_to_end():
    h, w = 40, 40
    emb = torch.zeros(16, h, w)
    logits = torch.zeros(3, h, w)
    logits[0] = 5.0
    logits[0, 5:15, 5:35] = -5
    logits[1, 5:15, 5:35] = 5
    logits[0, 25:35, 5:35] = -5
    logits[1, 25:35, 5:35] = 5
    emb[0, 25:35, 5:35] = 8.0  # second worm far in embedding space
    inst = embeddings_to_instances(emb, logits, bandwidth=2.0, threshold=2.0, min_size=20)
    assert inst.shape == (2, h, w)
    sizes = sorted(int(m.sum()) for m in inst)
    assert sizes == [300, 300]
