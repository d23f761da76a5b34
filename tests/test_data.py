import numpy as np
import pytest
import torch

from napari_probseg.data import (
    InputError,
    Well,
    available_wells,
    dihedral_batch,
    load_image,
    load_well,
    normalize,
    random_warp_batch,
    validate_image,
)


def test_bbbc010_well_loads_with_overlapping_masks(data_dir):
    w = load_well(data_dir, "A01")
    assert w.image.shape == (2, 520, 696) and w.image.dtype == np.float32
    assert w.masks.dtype == bool and w.masks.shape[0] == 15
    assert np.percentile(w.image[1], 50) > np.percentile(w.image[0], 50)  # brightfield is bright


def test_missing_channel_is_reported(data_dir):
    with pytest.raises(InputError, match="D24.*w2.*missing"):
        load_image(data_dir, "D24")
    ok, skipped = available_wells(data_dir, "test")
    assert set(skipped) == {"C13", "C14", "D24"} and len(ok) == 47


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((5, 64, 64)), "channel"),  # 3-D stack
        (np.zeros((64, 64, 3), np.uint8), "RGB"),
        (np.zeros((2, 64, 64), dtype=bool), "dtype"),
        (np.full((2, 64, 64), np.nan), "NaN"),
        (np.zeros((2, 64, 64)), "empty or constant"),
        (np.random.rand(2, 8, 8), "smaller than one U-Net cell"),
        (np.array(["a"]), "dtype"),
    ],
)
def test_bad_images_get_clear_errors(image, match):
    with pytest.raises(InputError, match=match):
        validate_image(image, 2)


def test_one_channel_image_accepted_as_2d():
    assert validate_image(np.random.rand(32, 32), 1).shape == (1, 32, 32)


def test_normalize_maps_percentiles_to_unit_range():
    """An image with content far above its noise: the 1st/99.8th percentiles go to 0 and 1."""
    rng = np.random.default_rng(0)
    img = (np.linspace(0, 1000, 64)[None, None, :] + rng.normal(100, 2, (2, 64, 64))).astype(np.float32)
    out = normalize(img)
    for c in range(2):
        assert np.percentile(out[c], 1) == pytest.approx(0.0, abs=1e-4)
        assert np.percentile(out[c], 99.8) == pytest.approx(1.0, abs=1e-4)


def test_augmentation_moves_image_and_masks_together():
    """A bright square and its mask must stay aligned after rotation + elastic warp."""
    img = np.zeros((2, 120, 120), np.float32)
    img[:, 40:80, 40:80] = 1.0
    mask = np.zeros((1, 120, 120), bool)
    mask[0, 40:80, 40:80] = True
    well = Well("square", img, mask)
    gen = torch.Generator().manual_seed(3)
    x, masks = random_warp_batch([well], 6, 64, gen, elastic=True)
    assert x.shape == (6, 2, 64, 64)
    checked = 0
    for b in range(6):
        mask = masks[b].any(0) if masks[b].shape[0] else torch.zeros(64, 64, dtype=torch.bool)
        for c in range(2):  # both channels follow the mask: bright exactly where it is
            bright = x[b, c] > 0.5
            union = (bright | mask).sum()
            if union == 0:
                continue
            assert (bright & mask).sum() / union > 0.9, (b, c)
            checked += 1
    assert checked >= 6  # most crops hold part of the square (else this test checked nothing)


def test_augmentation_is_reproducible_from_generator():
    well = Well("r", np.random.rand(2, 80, 90).astype(np.float32), np.random.rand(2, 80, 90) > 0.5)
    a, ma = random_warp_batch([well], 2, 32, torch.Generator().manual_seed(1))
    b, mb = random_warp_batch([well], 2, 32, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(ma, mb))


def test_dihedral_crops_are_exact_pixels_with_their_masks():
    """Every crop is a rotated/mirrored window of the well: the same values, no interpolation."""
    h, w = 50, 70
    img = np.stack([np.arange(h * w, dtype=np.float32).reshape(h, w)] * 2)  # a pixel's value names it
    masks = np.zeros((2, h, w), bool)
    masks[0, 5:20, 5:60] = True
    masks[1, 30:45, 10:30] = True
    well = Well("w", img, masks)
    x, m = dihedral_batch([well], 8, 32, torch.Generator().manual_seed(2))
    assert x.shape == (8, 2, 32, 32)
    found = 0
    for b in range(8):
        for k in range(4):
            for mirror in (False, True):  # undo each of the 8 turns; exactly one gives a window
                back, mb = torch.rot90(x[b], -k, (-2, -1)), torch.rot90(m[b], -k, (-2, -1))
                back, mb = (back.flip(-1), mb.flip(-1)) if mirror else (back, mb)
                y0, x0 = divmod(int(back[0, 0, 0]), w)
                window = img[:, y0:y0 + 32, x0:x0 + 32]
                if window.shape[1:] == (32, 32) and np.array_equal(window, back.numpy()):
                    want = masks[:, y0:y0 + 32, x0:x0 + 32]
                    assert np.array_equal(mb.numpy(), want[want.reshape(2, -1).any(1)])
                    found += 1
    assert found == 8
    y, my = dihedral_batch([well], 8, 32, torch.Generator().manual_seed(2))
    assert torch.equal(x, y) and all(torch.equal(p, q) for p, q in zip(m, my))
