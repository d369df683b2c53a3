"""Refine from strokes on a synthetic image whose right answer is known, and bad strokes."""
import numpy as np
import pytest

from napari_polyp.corrections import refine as R
from napari_polyp.corrections.metrics import dice_iou
from napari_polyp.errors import UserError


def _disc(shape, center, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius ** 2


@pytest.fixture
def scene():
    """A reddish disc (the lesion) on pink mucosa, with noise; the 'network' found the
    disc shifted to the right and also a false blob in the corner."""
    shape = (120, 160)
    rng = np.random.default_rng(0)
    truth = _disc(shape, (60, 70), 30)
    image = np.where(truth[..., None], [200, 60, 50], [230, 170, 160]).astype(np.float64)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    predicted = _disc(shape, (60, 85), 30) | _disc(shape, (20, 140), 12)
    probability = np.where(predicted, 0.7, 0.2).astype(np.float32)
    return image, probability, truth


@pytest.mark.parametrize("method", R.METHODS)
def test_two_strokes_recover_the_known_answer(scene, method):
    image, probability, truth = scene
    before = dice_iou(probability >= 0.5, truth)[0]
    strokes = R.strokes_from_points(truth.shape, foreground=[[60, 48]],  # in the missed left part
                                    background=[np.array([[20, 132], [20, 148]]), np.array([[60, 110]])])
    mask = R.refine(image, probability, strokes, method=method)
    assert mask.dtype == np.uint8 and mask.shape == truth.shape and set(np.unique(mask)) <= {0, 1}
    after = dice_iou(mask, truth)[0]
    assert before < 0.8 and after > 0.9, (before, after)
    assert mask[60, 48] == 1 and mask[20, 140] == 0  # the strokes hold


def test_strokes_are_hard_constraints_even_against_the_colours(scene):
    image, probability, truth = scene
    labels = np.zeros(truth.shape, np.uint8)
    labels[5:8, 5:40] = R.FOREGROUND  # mucosa marked as lesion: it must be lesion
    labels[58:62, 60:80] = R.BACKGROUND
    mask = R.refine(image, probability, labels, method="grabcut")
    assert mask[5:8, 5:40].all() and not mask[58:62, 60:80].any()


def test_a_600px_image_refines_at_working_size(scene):
    image, probability, truth = scene
    big = np.kron(image, np.ones((5, 5, 1), np.uint8))  # 600 x 800
    p_big = np.kron(probability, np.ones((5, 5), np.float32))
    strokes = R.strokes_from_points(p_big.shape, foreground=[[300, 240]], background=[[100, 700]])
    mask = R.refine(big, p_big, strokes, method="random_walker")
    assert mask.shape == p_big.shape and mask[300, 240] == 1 and mask[100, 700] == 0


def test_points_and_polylines_rasterise_in_row_column_order():
    labels = R.strokes_from_points((50, 80), foreground=np.array([[10, 70]]),
                                   background=[np.array([[40, 5], [40, 30]])], radius=2)
    assert labels[10, 70] == R.FOREGROUND and labels[10, 68] == R.FOREGROUND and labels[70 % 50, 10] == 0
    assert (labels[40, 5:31] == R.BACKGROUND).all()
    # a stroke leaving the image is clipped, not refused
    clipped = R.strokes_from_points((50, 80), foreground=[np.array([[25, 60], [25, 200]])])
    assert clipped[25, 79] == R.FOREGROUND


@pytest.mark.parametrize("make, words", [
    (lambda shape: R.strokes_from_points(shape), "no strokes"),
    (lambda shape: R.strokes_from_labels(np.zeros(shape, np.uint8), shape), "no strokes"),
    (lambda shape: R.strokes_from_points(shape, foreground=[[500, 500]], background=[[-9, 3]]), "outside the image"),
    (lambda shape: R.strokes_from_points(shape, foreground=[[20, 20]], background=[[21, 21]]), "both foreground"),
    (lambda shape: R.strokes_from_labels(np.ones((10, 10), np.uint8), shape), "layer is 10x10"),
    (lambda shape: R.strokes_from_labels(np.full(shape, 5, np.uint8), shape), "labels [5]"),
    (lambda shape: R.strokes_from_points(shape, foreground=np.zeros((2, 3))), "(row, column)"),
])
def test_bad_strokes_are_a_message(make, words):
    with pytest.raises(UserError, match=None) as info:
        make((120, 160))
    assert words in str(info.value)


def test_bad_strokes_leave_the_mask_alone(scene):
    image, probability, truth = scene
    mask = (probability >= 0.5).astype(np.uint8)
    kept = mask.copy()
    with pytest.raises(R.StrokeError):
        mask = R.refine(image, probability, {"foreground": [[999, 999]]})
    assert np.array_equal(mask, kept)


def test_the_same_strokes_give_the_same_mask(scene):
    image, probability, truth = scene
    strokes = {"foreground": [[60, 48]], "background": [[20, 140]]}
    first = R.refine(image, probability, strokes, method="grabcut")
    assert np.array_equal(first, R.refine(image, probability, strokes, method="grabcut"))


def test_a_stroke_changes_only_the_region_it_touches_and_leaves_no_specks():
    """A good mask with one false rim: a background stroke on the rim removes the rim and
    nothing else of the lesion, however the colours fall elsewhere."""
    predicted = _disc((120, 160), (60, 70), 30)
    rim = _disc((120, 160), (60, 104), 8) & ~predicted
    mask_from_solver = predicted.copy()
    mask_from_solver[55:65, 40:60] = False  # the solver would also cut into the lesion far away
    mask_from_solver[5:9, 5:9] = True  # and leave a speck
    mask_from_solver[rim] = False
    strokes = np.zeros(predicted.shape, np.uint8)
    strokes[59:62, 104:107] = R.BACKGROUND
    out = R.only_near_strokes(mask_from_solver, predicted | rim, strokes)
    assert not out[rim].any()  # the stroke's region is removed
    assert out[predicted].all()  # the far cut is not applied
    assert not out[5:9, 5:9].any()  # no speck


def test_a_background_stroke_on_a_false_rim_keeps_the_lesion(scene):
    image, _, truth = scene
    rim = _disc(truth.shape, (60, 104), 9) & ~truth
    probability = np.where(truth | rim, 0.95, 0.05).astype(np.float32)
    strokes = R.strokes_from_points(truth.shape, background=[[60, 106]])
    mask = R.refine(image, probability, strokes).astype(bool)
    assert dice_iou(mask, truth)[0] > 0.9 and mask[truth].mean() > 0.95
