"""The region a click means by colour (``napari_polyp.corrections._colour_cut``)."""
import numpy as np

from napari_polyp.corrections._colour_cut import colour_region


def _scene(seed=0):
    """120x160: a red lesion (left) and the mask drawn over grey mucosa to column 115."""
    image = np.full((120, 160, 3), 150, np.uint8)
    image[20:100, 10:70] = (200, 60, 60)
    image = np.clip(image + np.random.default_rng(seed).normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[:, :115] = True
    return image, mask


def test_a_negative_click_in_mucosa_inside_the_mask_gets_the_mucosa_within_what_is_allowed():
    image, mask = _scene()
    allowed = np.zeros_like(mask)
    allowed[30:90, 75:115] = True
    click = (60, 95, False)
    region = colour_region(image, mask, allowed, [click], click)
    assert region is not None and (region <= allowed).all()
    assert not region[20:100, 10:70].any()  # nothing of the lesion
    assert region.sum() > 0.9 * allowed.sum()
    again = colour_region(image, mask, allowed, [click], click)
    assert np.array_equal(region, again)  # seeded: the same click gives the same region


def test_a_click_on_the_lesion_s_colour_or_with_no_mask_gets_nothing():
    image, mask = _scene()
    allowed = np.zeros_like(mask)
    allowed[40:80, 20:60] = True
    click = (60, 40, False)  # negative, but on the lesion's own colour: the models keep it
    region = colour_region(image, mask, allowed, [click], click)
    assert region is None or region.sum() < 0.05 * allowed.sum()
    nothing = np.zeros_like(mask)
    assert colour_region(image, nothing, allowed, [click], click) is None  # no lesion to model
