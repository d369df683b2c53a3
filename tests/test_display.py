"""How masks, comparisons and attention maps look (display.py): the colours, the comparison codes,
contrast, outlines and the paper figures."""
import numpy as np
import pytest

from napari_polyp import display


def _square(size=12, lo=3, hi=9):
    mask = np.zeros((size, size), np.uint8)
    mask[lo:hi, lo:hi] = 1
    return mask


def test_the_mask_rgb_is_the_mask_colour():
    assert "#%02x%02x%02x" % display.MASK_RGB == display.MASK_COLOR
    assert display.MASK_COLOR_DICT[1] == display.MASK_COLOR
    assert display.MASK_COLOR_DICT[0] == display.MASK_COLOR_DICT[None] == "transparent"


def test_agreement_codes_each_pixel():
    mask = np.array([[1, 1, 0, 0]])
    reference = np.array([[1, 0, 1, 0]])
    assert display.agreement(mask, reference).tolist() == [[display.TP, display.FP, display.FN, 0]]
    assert set(display.AGREEMENT_COLORS) == set(display.AGREEMENT_NAMES) == {display.TP, display.FP, display.FN}


def test_agreement_refuses_masks_of_two_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        display.agreement(np.zeros((4, 4)), np.zeros((4, 5)))


def test_auto_contrast_ignores_a_hot_pixel():
    values = np.linspace(0, 1, 10_000, dtype=np.float32).reshape(100, 100)
    values[0, 0] = 1000.0
    low, high = display.auto_contrast(values)
    assert low == pytest.approx(0.01, abs=0.01) and high < 1.0


@pytest.mark.parametrize("values", [np.full((5, 5), 0.3), np.full((5, 5), np.nan), np.zeros((0, 3))])
def test_auto_contrast_of_a_flat_or_empty_map_is_a_usable_range(values):
    low, high = display.auto_contrast(values)
    assert np.isfinite([low, high]).all() and high > low


@pytest.mark.parametrize("width", [1, 2])
def test_the_outline_is_the_masks_rim_of_its_width(width):
    mask = _square()
    rim = display.outline(mask, width)
    inside = mask.astype(bool)
    assert not (rim & ~inside).any()  # never outside the mask
    assert rim.sum() == 36 - (6 - 2 * width) ** 2  # a 6x6 square less its core


def test_an_outline_reaches_the_image_border():
    mask = np.ones((5, 5), np.uint8)
    assert display.outline(mask, 1).sum() == 16  # the border counts as background


def test_outlined_draws_the_rim_in_the_mask_colour_on_a_copy():
    image = np.zeros((12, 12, 3), np.uint8)
    mask = _square()
    picture = display.outlined(image, mask, 1)
    rim = display.outline(mask, 1)
    assert (picture[rim] == display.MASK_RGB).all() and (picture[~rim] == 0).all()
    assert not image.any()


def test_attention_titles_name_the_network_and_the_papers_term():
    plain, term = display.attention_title("microaunet", "lscab_spatial")
    assert plain == "where MicroAUNet looked" and term == "LSCAB spatial attention"
    assert display.attention_layer_name("img", "microaunet", "lscab_spatial") == \
        "img: where MicroAUNet looked (LSCAB spatial attention)"
    assert display.attention_title("some-net", "new_map") == ("some-net: new map", "new_map")
    assert display.network_name("") == "network"


def test_colorize_maps_low_to_high_along_the_colormap():
    values = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    rgb = display.colorize(values, "gray", (0.0, 1.0))
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[-1, -1].tolist() == [255, 255, 255]
    brightness = rgb[..., 0].ravel()
    assert (np.diff(brightness.astype(int)) >= 0).all()


def test_the_mask_colormap_shows_label_1_in_the_mask_colour():
    colormap = display.mask_colormap()
    assert np.allclose(colormap.map(np.array([1]))[0][:3], np.array(display.MASK_RGB) / 255, atol=1e-2)
    assert colormap.map(np.array([0]))[0][3] == 0  # background: transparent


def test_figure_panels_sets_image_overlay_and_maps_side_by_side():
    image = np.full((12, 10, 3), 40, np.uint8)
    mask = _square(12)[:, :10]
    figure = display.figure_panels(image, mask, [(np.random.default_rng(0).random((12, 10)), "magma")], gap=4)
    assert figure.shape == (12, 3 * 10 + 2 * 4, 3) and figure.dtype == np.uint8
    assert (figure[:, :10] == 40).all()  # the image untouched
    assert (figure[:, 14:24][display.outline(mask, 1)] == display.MASK_RGB).all()


def test_figures_refuse_a_mask_of_another_size():
    with pytest.raises(ValueError, match="mask"):
        display.figure_grid(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9)), [])
    with pytest.raises(ValueError, match="mask"):
        display.figure_panels(np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8)), [])


def test_figure_grid_lays_titled_panels_in_rows():
    image = np.full((30, 20, 3), 90, np.uint8)
    maps = [(f"map {i}", np.random.default_rng(i).random((30, 20)), "inferno") for i in range(3)]
    grid = display.figure_grid(image, _square(30)[:, :20], maps, columns=2, gap=8)
    # image, mask and 3 maps in rows of 2: 3 rows; a cell is a 22-px title over the panel, and a
    # panel is the picture and a 51-px colour-bar column (at scale 1)
    cell_h, cell_w = 22 + 30, 20 + 51
    assert grid.shape == (3 * cell_h + 2 * 8, 2 * cell_w + 8, 3) and grid.dtype == np.uint8


def test_every_network_is_named_by_its_card():
    from models.cards import CARDS

    for name, card in CARDS.items():
        assert card.display_name, name
        assert display.network_name(name) == card.display_name
    assert display.network_name("not-a-network") == "not-a-network"
