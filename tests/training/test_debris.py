"""Synthetic debris (training/debris.py): lumps land on the background, never on the lesion, the
mask is not changed, they look like debris (cream to ochre), and a seed repeats them."""
import numpy as np
import pytest

from napari_polyp.training.augment import DEBRIS_PRESETS, Augmenter
from napari_polyp.training.debris import paste_debris

SIZE = 96


def _scene():
    """Pink mucosa (lit), a square lesion in the middle, a black corner outside the scope's field."""
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:] = (200, 120, 120)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[36:60, 36:60] = 1
    image[mask > 0] = (220, 90, 90)
    image[:16, :16] = 0
    return image, mask


def test_lumps_land_on_the_background_and_leave_the_lesion_and_the_mask_alone():
    image, mask = _scene()
    before_image, before_mask = image.copy(), mask.copy()
    changed = np.zeros(mask.shape, bool)
    for seed in range(12):
        out = paste_debris(image, mask, np.random.default_rng(seed))
        moved = (out != image).any(axis=2)
        assert not moved[mask > 0].any()  # never on the lesion
        assert not moved[:16, :16].any()  # nor outside the scope's field
        changed |= moved
    assert changed.sum() > 0.05 * SIZE * SIZE  # twelve draws did put lumps down
    assert np.array_equal(image, before_image) and np.array_equal(mask, before_mask)


def test_a_lump_is_cream_to_ochre_on_pink_mucosa():
    image, mask = _scene()
    out = paste_debris(image, mask, np.random.default_rng(3)).astype(int)
    lump = (np.abs(out - image.astype(int)).sum(axis=2) > 60)
    assert lump.sum() > 10
    r, g, b = (out[..., c][lump].mean() for c in range(3))
    assert g > image[0, -1, 1] + 20 and r > b  # yellower than the mucosa: green up, blue lowest


def test_the_seed_repeats_the_lumps():
    image, mask = _scene()
    first = paste_debris(image, mask, np.random.default_rng(5))
    assert np.array_equal(first, paste_debris(image, mask, np.random.default_rng(5)))
    assert not np.array_equal(first, paste_debris(image, mask, np.random.default_rng(6)))


def test_a_frame_that_is_all_lesion_gets_no_lumps():
    image = np.full((32, 32, 3), 150, np.uint8)
    assert paste_debris(image, np.ones((32, 32), np.uint8), np.random.default_rng(0)) is image


@pytest.mark.parametrize("preset", sorted(DEBRIS_PRESETS))
def test_the_debris_preset_pastes_on_about_its_share_of_samples_and_keeps_the_mask(preset):
    image, mask = _scene()
    with_debris, plain = Augmenter(preset, SIZE), Augmenter("generalise", SIZE)
    pasted = 0
    for seed in range(40):
        out_image, out_mask = with_debris(image, mask, seed)
        ref_image, ref_mask = plain(image, mask, seed)
        assert np.array_equal(out_mask, ref_mask)  # the same warp: debris changes the image alone
        pasted += not np.array_equal(out_image, ref_image)
    assert abs(pasted / 40 - DEBRIS_PRESETS[preset]) < 0.25
