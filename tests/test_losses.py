import math

import torch

from napari_probseg.losses import class_target, discriminative_loss, total_loss


def emb_from(values, masks):
    """Embedding [D,H,W] whose pixels in mask i take value vector values[i]."""
    d = len(values[0])
    e = torch.zeros(d, *masks.shape[1:])
    for v, m in zip(values, masks):
        e[:, m] = torch.tensor(v, dtype=torch.float32)[:, None]
    return e


def two_masks():
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[0, :, :2] = True
    m[1, :, 2:] = True
    return m


def test_constant_embeddings_far_apart_have_zero_loss():
    m = two_masks()
    var, dist, reg = discriminative_loss(emb_from([[0.0, 0.0], [10.0, 0.0]], m), m)
    assert float(var) == 0 and float(dist) == 0
    assert math.isclose(float(reg), (0 + 100) / 2)


def test_close_centres_are_pushed_by_hinge():
    m = two_masks()
    _, dist, _ = discriminative_loss(emb_from([[0.0, 0.0], [3.0, 4.0]], m), m, delta_d=4.0)
    assert math.isclose(float(dist), (8 - 5) ** 2, rel_tol=1e-5)  # both ordered pairs, / C(C-1)


def test_variance_has_no_hinge():
    m = two_masks()[:1]
    e = torch.zeros(2, 4, 4)
    e[0, :, 0] = 1.0  # half the pixels at 1, half at 0 in dim 0 -> mean 0.5
    var, dist, _ = discriminative_loss(e, m)
    assert math.isclose(float(var), 0.25, rel_tol=1e-5)
    assert float(dist) == 0  # one instance: no pairs


def test_zero_instances_is_zero_and_differentiable():
    e = torch.rand(2, 4, 4, requires_grad=True)
    var, dist, reg = discriminative_loss(e, torch.zeros(0, 4, 4, dtype=torch.bool))
    (var + dist + reg).backward()
    assert float(var + dist + reg) == 0


def test_overlap_pixels_excluded_from_embedding_terms():
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[0, :, :3] = True
    m[1, :, 2:] = True  # column 2 is shared
    e = emb_from([[0.0], [10.0]], m)
    e[:, :, 2] = 99.0  # arbitrary value at the overlap: must not matter
    var, dist, _ = discriminative_loss(e, m)
    assert float(var) == 0 and float(dist) == 0


def test_class_target_marks_overlap():
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[0, :, :3] = True
    m[1, :, 2:] = True
    t = class_target(m)
    assert t[0, 0] == 1 and t[0, 2] == 2 and t[0, 3] == 1
    assert class_target(torch.zeros(3, 2, 2, dtype=torch.bool)).sum() == 0


def test_total_loss_batch_with_empty_image():
    emb = torch.rand(2, 2, 4, 4, requires_grad=True)
    logits = torch.rand(2, 3, 4, 4, requires_grad=True)
    terms = total_loss(emb, logits, [two_masks(), torch.zeros(0, 4, 4, dtype=torch.bool)], torch.tensor(0.5))
    terms.total.backward()
    assert torch.isfinite(terms.total) and emb.grad is not None
    assert math.isclose(float(terms.concrete), 0.5)


def test_total_loss_batch_without_any_instance():
    # small crops of sparse wells (or of a user's few corrected worms) can all miss every worm
    emb = torch.rand(2, 2, 4, 4, requires_grad=True)
    logits = torch.rand(2, 3, 4, 4, requires_grad=True)
    empty = torch.zeros(0, 4, 4, dtype=torch.bool)
    terms = total_loss(emb, logits, [empty, empty], torch.tensor(0.0))
    terms.total.backward()
    assert float(terms.var) == float(terms.dist) == float(terms.reg) == 0.0
    assert float(terms.ce) > 0 and logits.grad is not None
    padded = total_loss(emb, logits, torch.zeros(2, 0, 4, 4, dtype=torch.bool), torch.tensor(0.0))
    assert math.isclose(float(padded.total), float(terms.total), rel_tol=1e-6)


def test_ce_weight_scales_only_the_cross_entropy():
    emb, logits = torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4)
    a = total_loss(emb, logits, [two_masks()], torch.tensor(0.0))
    b = total_loss(emb, logits, [two_masks()], torch.tensor(0.0), ce_weight=10.0)
    assert math.isclose(float(b.total - a.total), 9 * float(a.ce), rel_tol=1e-5)
