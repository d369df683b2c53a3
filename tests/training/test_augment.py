"""CPU augmentation presets (training/augment.py): image, mask and teacher map move together,
shapes and types are kept, and a sample's seed decides its draw."""
import numpy as np
import pytest

from napari_polyp.errors import UserError
from napari_polyp.training.augment import PRESETS, Augmenter, check_preset

SIZE = 64
# presets that change only geometry: the image's pixels stay on the mask's pixels
GEOMETRIC = ("flips", "microaunet")


def _sample():
    """A mask with an off-centre, asymmetric blob, and an image that paints it white."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[8:30, 10:50] = 1
    mask[30:44, 10:22] = 1
    image = np.repeat((mask * 255)[..., None], 3, axis=2).astype(np.uint8)
    return image, mask


def _agreement(a, b) -> float:
    return float((a == b).mean())


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_keeps_shapes_types_and_a_binary_mask(preset):
    image, mask = _sample()
    for seed in range(4):
        out_image, out_mask = Augmenter(preset, SIZE)(image, mask, seed)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_mask.shape == mask.shape and set(np.unique(out_mask)) <= {0, 1}


@pytest.mark.parametrize("preset", GEOMETRIC)
def test_image_and_mask_move_together(preset):
    image, mask = _sample()
    moved = 0
    for seed in range(8):
        out_image, out_mask = Augmenter(preset, SIZE)(image, mask, seed)
        # the white pixels are the mask's, up to interpolation at the blob's edge
        assert _agreement(out_image[..., 0] > 127, out_mask > 0) > 0.97
        moved += not np.array_equal(out_mask, mask)
    assert moved >= 4  # the preset does move things


def test_a_teacher_map_moves_with_the_mask():
    image, mask = _sample()
    teacher = (mask * 200).astype(np.uint8)
    out_image, out_mask, out_teacher = Augmenter("standard", SIZE)(image, mask, 3, teacher=teacher)
    assert out_teacher.shape == mask.shape
    assert _agreement(out_teacher > 100, out_mask > 0) > 0.97


def test_the_seed_decides_the_draw():
    image, mask = _sample()
    augment = Augmenter("standard", SIZE)
    first, again = augment(image, mask, 7), augment(image, mask, 7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    others = [augment(image, mask, seed)[1] for seed in range(8, 12)]
    assert any(not np.array_equal(first[1], other) for other in others)


def test_none_returns_the_sample_untouched():
    image, mask = _sample()
    out_image, out_mask = Augmenter("none", SIZE)(image, mask, 0)
    assert out_image is image and out_mask is mask


def test_an_unknown_preset_is_the_users_typo_with_the_choices():
    with pytest.raises(UserError, match="standard"):
        check_preset("standart")


def test_a_generalise_preset_on_the_cpu_path_says_what_it_leaves_to_the_device_path():
    from napari_polyp.training.augment import cpu_path_note

    for preset in ("generalise", "generalise-hist", "generalise-small", "generalise-debris"):
        assert "--augment-on-device" in cpu_path_note(preset)
    assert cpu_path_note("strong") == "" and cpu_path_note("none") == ""
