"""The image's own patches a click may take (``napari_polyp.corrections._patches``)."""
import numpy as np
import pytest

from napari_polyp.corrections._patches import ALIKE_COLOUR, ImagePatches, adjacency, mean_lab_colours


def _scene(h=240, w=320):
    """Grey mucosa, a large blue fold (many patches wide) and a small red spot inside the fold."""
    rng = np.random.default_rng(0)
    image = np.full((h, w, 3), 150, np.uint8)
    fold = np.zeros((h, w), bool)
    fold[40:200, 30:190] = True
    image[fold] = (40, 60, 200)
    spot = np.zeros((h, w), bool)
    spot[100:140, 90:130] = True
    image[spot] = (200, 40, 40)
    noisy = np.clip(image.astype(int) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8)
    return noisy, fold & ~spot, spot


def test_alike_takes_the_patches_of_the_clicked_colour_joined_to_it_and_nothing_else():
    image, fold, spot = _scene()
    patches = ImagePatches(image)
    one = patches.at(60, 50)
    alike = patches.alike(60, 50, np.ones(fold.shape, bool))
    assert alike[one].all() and alike.sum() > 4 * one.sum()  # the clicked patch, and many more
    assert (alike & fold).sum() > 0.9 * fold.sum()  # most of the fold, around the spot
    assert (alike & ~fold).sum() < 0.02 * alike.sum()  # neither the spot nor the mucosa


def test_alike_takes_only_patches_that_touch_what_is_allowed():
    image, fold, _ = _scene()
    patches = ImagePatches(image)
    allowed = np.zeros(fold.shape, bool)
    allowed[40:80, 30:80] = True  # one corner of the fold
    alike = patches.alike(60, 50, allowed)
    assert alike.sum() < 0.4 * fold.sum()


def test_a_patch_over_a_twentieth_of_the_image_is_neither_at_nor_alike():
    image = np.random.default_rng(5).integers(0, 255, (60, 80, 3), dtype=np.uint8)  # SLIC: one patch
    patches = ImagePatches(image)
    assert patches.at(8, 10) is None and patches.alike(8, 10, np.ones((60, 80), bool)) is None


def test_a_large_image_is_divided_on_a_small_copy_and_answered_at_full_size():
    image, fold, _ = _scene()
    large = np.repeat(np.repeat(image, 5, axis=0), 5, axis=1)  # 1200 x 1600
    patches = ImagePatches(large)
    assert patches.step == 6 and max(patches.labels.shape) <= 300
    alike = patches.alike(300, 250, np.ones(large.shape[:2], bool))
    assert alike.shape == large.shape[:2]
    assert (alike & ~np.repeat(np.repeat(fold, 5, axis=0), 5, axis=1)).sum() < 0.03 * alike.sum()


def test_adjacency_lists_4_connected_neighbours_both_ways():
    labels = np.array([[0, 0, 1],
                       [2, 2, 1],
                       [2, 3, 3]])
    assert adjacency(labels) == {0: {1, 2}, 1: {0, 2, 3}, 2: {0, 1, 3}, 3: {1, 2}}


def test_mean_lab_colours_are_each_patchs_colour_in_cielab():
    from skimage.color import rgb2lab

    image = np.zeros((4, 6, 3), np.uint8)
    image[:, :3] = (200, 40, 40)
    image[:, 3:] = (40, 60, 200)
    labels = np.zeros((4, 6), np.int64)
    labels[:, 3:] = 1
    colours = mean_lab_colours(image, labels)
    assert colours[0] == pytest.approx(rgb2lab(np.uint8([[[200, 40, 40]]]))[0, 0], abs=1e-6)
    assert np.linalg.norm(colours[0] - colours[1]) > ALIKE_COLOUR
