"""ClickSession: the contract, the zoom-in crop, the local-change rule, undo and bad input.

The session logic is tested with a stand-in network that segments the synthetic scene
perfectly (red discs on a grey ground), so every expected mask is known exactly."""
import numpy as np
import pytest

import models
from napari_polyp.corrections.clicks import (Click, ClickSession, claimed_by_others, click_discs, protocol_click,
                                             refiner_runner, rim_left, tidied)
from napari_polyp.errors import UserError

H, W = 120, 160


def _disc(shape, row, col, radius):
    rr, cc = np.ogrid[:shape[0], :shape[1]]
    return (rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2


class SceneNetwork:
    """Answers every input with the scene's truth: red pixels of the image channels."""

    input_size = 64

    def run(self, x):
        red = x[:, 0] - x[:, 1]  # normalised red minus green: high on the discs only
        return {"logits": np.where(red > 1.0, 20.0, -20.0)[:, None].astype(np.float32)}


def _scene():
    image = np.full((H, W, 3), 128, np.uint8)
    disc_a, disc_b = _disc((H, W), 40, 40, 15), _disc((H, W), 80, 120, 12)
    image[disc_a | disc_b] = (220, 40, 40)
    false_blob = _disc((H, W), 95, 40, 10)
    prior = (disc_a | false_blob).astype(np.float32)  # the network found A, missed B, saw a false blob
    return image, prior, disc_a, disc_b, false_blob


def test_a_positive_click_in_a_missed_disc_adds_it_and_nothing_else():
    image, prior, disc_a, disc_b, false_blob = _scene()
    session = ClickSession(image, prior, runner=SceneNetwork())
    mask = session.click(80, 120, positive=True)
    assert mask.dtype == bool and mask.shape == (H, W)
    assert mask[disc_b].mean() > 0.97  # added (up to the 64-px network's boundary)
    assert mask[false_blob].all()  # the blob far from the click is left to its own click
    assert np.array_equal(mask[:60, :80], prior[:60, :80] > 0.5)  # A untouched


def test_a_negative_click_on_a_false_blob_removes_it_and_nothing_else():
    image, prior, disc_a, disc_b, false_blob = _scene()
    session = ClickSession(image, prior, runner=SceneNetwork())
    before = session.mask.copy()
    mask = session.click(95, 40, positive=False)
    assert not mask[false_blob & ~disc_a].any()
    changed = mask != before
    assert changed.sum() > 0 and (changed <= false_blob).all()  # only blob pixels changed


def test_undo_restores_the_exact_previous_mask_and_says_when_there_is_nothing_to_undo():
    image, prior, *_ = _scene()
    session = ClickSession(image, prior, runner=SceneNetwork())
    first = session.click(80, 120, positive=True)
    session.click(95, 40, positive=False)
    assert np.array_equal(session.undo(), first)
    assert np.array_equal(session.undo(), prior > 0.5)
    assert session.clicks == []
    with pytest.raises(UserError, match="nothing to undo"):
        session.undo()


def test_a_click_outside_the_image_is_one_message_and_changes_nothing():
    image, prior, *_ = _scene()
    session = ClickSession(image, prior, runner=SceneNetwork())
    with pytest.raises(UserError, match="outside the image"):
        session.click(H, 5)
    with pytest.raises(UserError, match="outside the image"):
        session.click(-1, 5)
    assert session.clicks == [] and not session.can_undo
    assert np.array_equal(session.mask, prior > 0.5)


def test_no_image_and_mismatched_prior_are_refused_in_one_line():
    with pytest.raises(UserError, match="open an image"):
        ClickSession(None)
    with pytest.raises(UserError, match="must match"):
        ClickSession(np.zeros((10, 10, 3), np.uint8), prior=np.zeros((9, 10)))


def test_tiny_and_oversized_images(monkeypatch):
    mask = ClickSession(np.full((1, 1, 3), 200, np.uint8), runner=SceneNetwork()).click(0, 0)
    assert mask.shape == (1, 1)
    import napari_polyp.corrections.clicks as clicks

    monkeypatch.setattr(clicks, "MAX_PIXELS", 100 * 100)
    with pytest.raises(UserError, match="megapixels"):
        ClickSession(np.zeros((101, 100, 3), np.uint8), runner=SceneNetwork())


def test_the_crop_zooms_to_the_object_once_there_is_one():
    image, prior, *_ = _scene()
    empty = ClickSession(image, None, runner=SceneNetwork())
    assert empty.crop() == (0, 0, H, W)  # nothing to zoom to: the whole image
    small = np.zeros((H, W), np.float32)
    small[50:60, 50:60] = 1
    session = ClickSession(image, small, runner=SceneNetwork())
    session.clicks.append(Click(55, 55, True))
    top, left, bottom, right = session.crop()
    assert bottom - top == right - left and bottom - top < H  # a square around the object
    assert top <= 50 and bottom >= 60 and left <= 50 and right >= 60


def test_a_box_as_first_interaction_finds_a_missed_lesion():
    image, _, _, disc_b, _ = _scene()
    session = ClickSession(image, None, runner=SceneNetwork())
    mask = session.drag_box(60, 100, 100, 140)
    assert mask[disc_b].mean() > 0.97 and session.click_log() == [{"row": 79, "col": 119, "positive": True}]


def test_the_protocol_clicks_the_deepest_point_of_the_larger_error():
    truth = np.zeros((50, 50), bool)
    truth[10:40, 10:40] = True
    mask = truth.copy()
    mask[10:40, 10:20] = False  # a 30x10 miss
    mask[0:4, 45:50] = True  # a small false positive
    click = protocol_click(mask, truth)
    assert click.positive and 10 <= click.row < 40 and 14 <= click.col <= 15
    assert protocol_click(truth, truth) is None


def test_click_discs_match_the_training_maps_at_the_network_size():
    import torch

    from napari_polyp.training.click_simulation import click_maps

    clicks = [Click(10, 12, True), Click(30, 5, False)]
    numpy_maps = click_discs(clicks, (40, 48), (1.0, 1.0), 5)
    torch_maps = click_maps(torch.tensor([[[10, 12, 1], [30, 5, -1]]]), (40, 48), 5)[0].numpy()
    assert np.array_equal(numpy_maps, torch_maps)


def test_a_checkpoint_of_another_architecture_is_refused_by_name(tmp_path):
    path = tmp_path / "segmenter.pt"
    models.save_checkpoint(models.create_model("microaunet", checkpoint=False), path, architecture="microaunet")
    with pytest.raises(models.CheckpointError, match="microaunet"):
        refiner_runner(path, engine="torch")


def test_the_session_runs_a_real_refiner_end_to_end(tmp_path):
    """Random weights through the real runner (torch): shapes and types hold."""
    path = tmp_path / "refiner.pt"
    models.save_checkpoint(models.create_model("click-refiner", checkpoint=False), path,
                           architecture="click-refiner", training={"size": 64})
    image, prior, *_ = _scene()
    session = ClickSession(image, prior, checkpoint=path, engine="torch")
    mask = session.click(80, 120, positive=True)
    assert mask.shape == (H, W) and mask.dtype == bool


class StubbornNetwork(SceneNetwork):
    """Always answers with the mask it was given: a click it does not act on."""

    def run(self, x):
        return {"logits": np.where(x[:, 3:4] > 0.5, 20.0, -20.0).astype(np.float32)}


def test_a_click_the_network_ignores_still_flips_the_clicked_pixel_unless_told_not_to():
    image, prior, *_ = _scene()
    mask = ClickSession(image, prior, runner=StubbornNetwork()).click(10, 150, positive=True)
    assert mask[10, 150] and (mask & ~(prior > 0.5)).sum() < 0.05 * mask.size  # a small region, not the image
    plain = ClickSession(image, prior, runner=StubbornNetwork(), honour_clicks=False).click(10, 150, positive=True)
    assert np.array_equal(plain, prior > 0.5)


def test_a_negative_click_the_network_ignores_takes_the_image_patch_it_lands_on():
    # The network is equally sure of the whole mask (half the image: the no-surer region is
    # over the cap), so before this rule the click took a 6-px disc; the blue fold the click
    # lands on is bounded by the image's own edges.
    h, w = 240, 320
    image = np.full((h, w, 3), 150, np.uint8)
    fold = np.zeros((h, w), bool)
    fold[60:120, 40:100] = True
    image[fold] = (40, 60, 200)
    prior = np.zeros((h, w), np.float32)
    prior[:, :w // 2 + 20] = 1.0
    session = ClickSession(image, prior, runner=StubbornNetwork())
    mask = session.click(90, 70, positive=False)
    taken = (prior > 0.5) & ~mask
    disc = _disc((h, w), 90, 70, 6)
    assert taken.sum() > 3 * disc.sum()  # more than the disc: the patch of the fold
    assert (taken <= (fold | disc)).all()  # and nothing of the mask beyond the fold
    assert (session.probability[taken] < 0.5).all()  # the next click's network sees it taken
    assert np.array_equal(session.undo(), prior > 0.5)


def test_a_negative_click_near_the_edge_of_a_mask_the_network_is_equally_sure_of_takes_little_of_it():
    # The network is as sure of the whole mask as of the clicked pixel: the no-surer region is the
    # whole mask (a sixth of the image, under the cap). A click 5 px from the edge means little.
    h, w = 240, 320
    image = np.full((h, w, 3), 150, np.uint8)
    prior = np.zeros((h, w), np.float32)
    prior[80:160, 80:240] = 0.99
    session = ClickSession(image, prior, runner=StubbornNetwork())
    mask = session.click(84, 160, positive=False)
    taken = (prior > 0.5) & ~mask
    assert not mask[84, 160] and 0 < taken.sum() < 0.1 * (prior > 0.5).sum()


def test_a_negative_click_near_the_edge_of_a_lesion_one_patch_wide_takes_little_of_it():
    # A small polyp in a large frame is one superpixel: its whole patch is the lesion, so only
    # the click's depth disc of it is taken (etis20 frame 001, 1 of 20 first clicks worse)
    h, w = 240, 320
    image = np.full((h, w, 3), 150, np.uint8)
    lesion = _disc((h, w), 120, 160, 14)
    image[lesion] = (40, 60, 200)
    session = ClickSession(image, lesion.astype(np.float32), runner=StubbornNetwork())
    assert (session.patch_at(Click(120, 171, False)) >= lesion).mean() > 0.99  # the patch is the lesion
    mask = session.click(120, 171, positive=False)  # 3 px inside its edge
    taken = lesion & ~mask
    assert not mask[120, 171] and taken.sum() < 0.4 * lesion.sum()


def test_a_patch_over_a_twentieth_of_the_image_is_not_taken():
    # SLIC cannot divide a small noise image: its one "superpixel" is the whole image
    image = np.random.default_rng(5).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    prior = _disc((60, 80), 30, 40, 12).astype(np.float32)
    session = ClickSession(image, prior, runner=StubbornNetwork())
    assert session.patch_at(Click(8, 10, True)) is None
    mask = session.click(8, 10, positive=True)
    assert (mask & ~(prior > 0.5)).sum() < 0.05 * mask.size


class DiscNetwork:
    """Echoes the mask it was given, less a small disc at each negative click: a network that
    obeys a click and takes too little around it."""

    input_size = 320  # the whole 320-px scene at its own size: the disc stays small

    def run(self, x):
        keep = (x[:, 3:4] > 0.5) & (x[:, 5:6] < 0.5)
        return {"logits": np.where(keep, 20.0, -20.0).astype(np.float32)}


def test_a_negative_click_deep_in_a_wrong_fold_takes_its_patch_one_near_the_edge_little():
    h, w = 240, 320
    image = np.full((h, w, 3), 150, np.uint8)
    fold = np.zeros((h, w), bool)
    fold[90:150, 150:230] = True  # sticks out of the lesion to the right
    image[fold] = (40, 60, 200)
    lesion = _disc((h, w), 120, 110, 50)
    prior = (lesion | fold).astype(np.float32)
    def taken(row, col, **options):
        session = ClickSession(image, prior, runner=DiscNetwork(), **options)
        return (prior > 0.5) & ~session.click(row, col, positive=False)

    deep, deep_alone = taken(120, 200), taken(120, 200, honour_clicks=False)  # 30 px from the mask's edge
    assert deep.sum() > 2 * deep_alone.sum() and (deep <= fold).all()
    assert deep.sum() > 0.8 * fold.sum()  # the fold's patches of its colour, not the clicked one alone
    near, near_alone = taken(92, 200), taken(92, 200, honour_clicks=False)  # 2 px from the edge
    assert near.sum() <= 1.2 * near_alone.sum() + 30


class PositiveDiscNetwork(DiscNetwork):
    """Echoes the mask it was given, with a small disc added at each positive click."""

    def run(self, x):
        keep = (x[:, 3:4] > 0.5) | (x[:, 4:5] > 0.5)
        return {"logits": np.where(keep, 20.0, -20.0).astype(np.float32)}


def test_a_positive_click_far_from_a_small_false_mask_does_not_grow_over_the_mucosa():
    # Its depth is the distance to the false mask, 150 px: the grey mucosa's patches within 1.5
    # times that are most of the image; a missed part is not larger than the mask it joins.
    h, w = 240, 320
    image = np.full((h, w, 3), 150, np.uint8)
    prior = np.zeros((h, w), np.float32)
    prior[20:40, 20:40] = 1.0
    image[20:40, 20:40] = (40, 60, 200)
    mask = ClickSession(image, prior, runner=PositiveDiscNetwork()).click(180, 220, positive=True)
    added = mask & ~(prior > 0.5)
    assert mask[180, 220] and added.sum() < 0.03 * mask.size


class RedrawingNetwork(DiscNetwork):
    """Takes a negative click's disc out and redraws the mask grown by a wide band all round."""

    def run(self, x):
        from scipy import ndimage

        grown = ndimage.binary_dilation(x[0, 3] > 0.5, iterations=20)[None, None]
        keep = grown & (x[:, 5:6] < 0.5)
        return {"logits": np.where(keep, 20.0, -20.0).astype(np.float32)}


def test_a_negative_click_only_removes_and_a_positive_one_only_adds():
    h, w = 240, 320
    image = np.full((h, w, 3), 150, np.uint8)
    prior = _disc((h, w), 120, 160, 50).astype(np.float32)
    negative = ClickSession(image, prior, runner=RedrawingNetwork()).click(120, 205, positive=False)
    assert not negative[120, 205] and (negative <= (prior > 0.5)).all()  # the grown band is not taken
    positive = ClickSession(image, prior, runner=RedrawingNetwork()).click(120, 215, positive=True)
    assert positive[120, 215] and (positive >= (prior > 0.5)).all()


def test_depth_at_is_the_distance_transform_with_the_border_outside():
    from scipy import ndimage

    from napari_polyp.corrections.clicks import depth_at

    rng = np.random.default_rng(0)
    regions = [ndimage.binary_opening(rng.random((size, size + 7)) > 0.2, iterations=2) for size in (5, 40, 300)]
    regions.append(_disc((300, 307), 150, 140, 130) & ~_disc((300, 307), 100, 100, 6))  # depths up to ~130
    for region in regions:
        reference = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        rows, cols = np.nonzero(region)
        for i in rng.choice(len(rows), min(len(rows), 50), replace=False):
            assert depth_at(region, rows[i], cols[i]) == pytest.approx(reference[rows[i], cols[i]])
    assert depth_at(np.ones((9, 9), bool), 4, 4) == 5.0  # the border alone


def _mucosa_in_the_mask():
    """A red lesion, and a mask the network drew over most of the frame: the grey mucosa beside
    the lesion is in it (an image the no-surer rule cannot use: the mask is 72 % of it)."""
    h, w = 240, 320
    image = np.full((h, w, 3), 150, np.uint8)
    lesion = _disc((h, w), 120, 80, 70)
    image[lesion] = (200, 60, 60)
    image = np.clip(image + np.random.default_rng(0).normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    prior = np.zeros((h, w), np.float32)
    prior[:, :230] = 1.0
    return image, prior, lesion


def test_a_negative_click_the_network_ignores_in_mucosa_takes_its_colour_region_not_one_patch():
    # Kvasir-SEG: a click in an 80,000 px false fold the network is 0.9+ sure of took one
    # superpixel (about 2,000 px) a click; the colour region is the fold within the depth disc
    image, prior, lesion = _mucosa_in_the_mask()
    false = (prior > 0.5) & ~lesion
    depth_disc = _disc(prior.shape, 120, 195, 1.5 * 35)  # 35 px from the mask's right edge

    def taken(**options):
        session = ClickSession(image, prior, runner=StubbornNetwork())
        for name, value in options.items():
            setattr(session, name, value)
        return (prior > 0.5) & ~session.click(120, 195, positive=False)

    colour, patch_only = taken(), taken(colour_region=lambda click: None)
    assert (colour <= false).all()  # nothing of the lesion
    assert colour.sum() > 0.9 * (false & depth_disc).sum() > 4 * patch_only.sum()


class RedrawingOnPositive(DiscNetwork):
    """Echoes the mask until there is a positive click; then redraws it grown to column 250 of
    the 320-px frame, putting back whatever a negative click took."""

    def run(self, x):
        if (x[:, 4:5] <= 0.5).all():
            return super().run(x)
        cols = np.arange(x.shape[-1])[None, None, None, :]
        return {"logits": np.where((cols < 250) | (x[:, 4:5] > 0.5), 20.0, -20.0).astype(np.float32)}


def test_a_click_far_away_does_not_put_back_what_an_earlier_click_took():
    # Kvasir-SEG: a positive click the network obeyed put back the 38,659 px three negative clicks
    # had taken (IoU 0.855 -> 0.663)
    image, prior, _ = _mucosa_in_the_mask()
    session = ClickSession(image, prior, runner=RedrawingOnPositive(), zoom=False)
    removed = (prior > 0.5) & ~session.click(120, 195, positive=False)
    assert removed.sum() > 5000 and session.removed[removed].all()
    mask = session.click(20, 240, positive=True)  # 11 px right of the mask's edge, 100 px above the hole
    assert mask[20, 240] and (mask[:60, 230:250].mean() > 0.9)  # the redrawn band at the click is taken
    assert not mask[110:130, 230:250].any()  # where it is nearer to the negative click: left out
    assert not (mask & removed).any()  # the hole stays
    session.undo()
    assert session.removed.sum() == removed.sum()
    session.undo()
    assert not session.removed.any()


class ObedientSceneNetwork(SceneNetwork):
    """The scene's red pixels, less those of the colour a negative click lands on."""

    def run(self, x):
        red = (x[0, 0] - x[0, 1]) > 1.0
        clicked = (x[0, 5] > 0.5) & red
        if clicked.any():
            colour = x[0, :3][:, clicked].mean(axis=1)
            red &= np.abs(x[0, :3] - colour[:, None, None]).max(axis=0) > 0.4
        return {"logits": np.where(red, 20.0, -20.0)[None, None].astype(np.float32)}


def test_from_nothing_the_network_s_first_answer_is_a_proposal_a_later_click_may_take_back():
    # etis20 from nothing: when the first click's whole answer counted as decided, later negative
    # clicks could not take back a false part of it beyond twice their depth (NoC@90 12.45 -> 13.35)
    image = np.full((H, W, 3), 128, np.uint8)
    lesion, strip = _disc((H, W), 40, 40, 15), np.zeros((H, W), bool)
    strip[36:44, 50:150] = True  # a long false strip of another red, 8 px wide, from the lesion's edge
    image[strip] = (240, 40, 90)
    image[lesion] = (220, 40, 40)
    strip &= ~lesion
    session = ClickSession(image, None, runner=ObedientSceneNetwork(), zoom=False)
    first = session.click(40, 40, positive=True)
    assert first[lesion].mean() > 0.9 and first[strip].mean() > 0.9 and not session.removed.any()
    mask = session.click(40, 100, positive=False)  # 4 px deep: its own reach is 8 px
    assert mask[strip].mean() < 0.2 and mask[lesion].mean() > 0.9


def test_a_positive_click_on_a_lesion_with_a_highlight_gets_no_hole():
    # etis20: the network left a hole at a specular highlight inside the polyp, one click more
    image, prior, disc_a, disc_b, _ = _scene()
    highlight = _disc((H, W), 78, 118, 5)
    image[highlight] = (255, 255, 255)
    mask = ClickSession(image, prior, runner=SceneNetwork()).click(86, 126, positive=True)
    assert mask[highlight].all() and mask[disc_b].mean() > 0.97  # without the rule: 21 % of the highlight


def test_tidied_fills_holes_and_drops_the_specks_a_click_left_except_where_clicks_say_otherwise():
    lesion, hole = _disc((H, W), 60, 60, 30), _disc((H, W), 60, 60, 5)
    false_blob, rim = _disc((H, W), 20, 140, 10), _disc((H, W), 20, 140, 10) & ~_disc((H, W), 20, 140, 8)
    rim[:, :141] = False  # the half rim a negative click left of the blob: under a fifth of the lesion
    second = _disc((H, W), 105, 15, 4)  # a small second lesion the click did not touch
    before = (lesion & ~hole) | false_blob | second
    after = (lesion & ~hole) | rim | second
    none_removed = np.zeros((H, W), bool)
    assert np.array_equal(tidied(after, before, [Click(20, 140, False)], none_removed), lesion | second)
    clicks = [Click(20, 140, False), Click(60, 60, False), Click(20, 149, True)]
    assert np.array_equal(tidied(after, before, clicks, none_removed), after)  # the clicks opened and kept them
    removed_there = none_removed.copy()
    removed_there[60, 62] = True  # a click removed a pixel of the hole
    assert np.array_equal(tidied(after, before, [], removed_there), (lesion & ~hole) | second)
    assert tidied(lesion, lesion, [], none_removed) is lesion  # nothing to tidy: the same array
    assert not tidied(np.zeros((H, W), bool), lesion, [], none_removed).any()


def test_a_negative_click_takes_back_all_a_positive_click_added_not_only_what_is_near_it():
    # etis20 from nothing: guarding what positive clicks added beyond a negative click's reach
    # cost half a click (NoC@90 11.05 -> 11.55) and gained nothing on Kvasir
    image = np.full((H, W, 3), 128, np.uint8)
    lesion, strip = _disc((H, W), 40, 40, 15), np.zeros((H, W), bool)
    strip[36:44, 50:150] = True  # a false strip of another red from the lesion's edge
    image[strip] = (240, 40, 90)
    image[lesion] = (220, 40, 40)
    strip &= ~lesion
    session = ClickSession(image, lesion.astype(np.float32), runner=ObedientSceneNetwork(), zoom=False)
    added = session.click(40, 60, positive=True)  # the network adds the whole strip
    assert added[strip].mean() > 0.9
    mask = session.click(40, 130, positive=False)  # far along the strip from the positive click
    assert mask[strip].mean() < 0.15 and mask[lesion].mean() > 0.9  # 9 %: a 64-px network's rim; 23 % before


def test_tidied_fills_only_holes_when_the_mask_fills_a_corner_of_its_box():
    # the outside is what the box's edge reaches, not whatever the box's first pixel belongs to
    l_shape = np.zeros((H, W), bool)
    l_shape[10:60, 10:30] = True
    l_shape[40:60, 10:80] = True
    holed = l_shape.copy()
    holed[48:52, 15:20] = False
    assert np.array_equal(tidied(holed, holed, [], np.zeros((H, W), bool)), l_shape)


class CoreNetwork:
    """Echoes the mask it was given less a disc of 18 px around the negative click: a network
    sure of a lump of debris that gives up its core and keeps a ring (etis20, frames 009-012)."""

    input_size = 200  # the whole 200-px scene at its own size (zoom off)

    def run(self, x):
        keep = x[:, 3] > 0.5
        rows, cols = np.nonzero(x[0, 5] > 0.5)
        if len(rows):
            rr, cc = np.ogrid[:x.shape[2], :x.shape[3]]
            keep &= (rr - rows.mean()) ** 2 + (cc - cols.mean()) ** 2 > 18 ** 2
        return {"logits": np.where(keep, 20.0, -20.0)[:, None].astype(np.float32)}


def _debris_scene(lesion_col):
    h, w = 160, 200
    image = np.full((h, w, 3), 150, np.uint8)
    debris, core, lesion = _disc((h, w), 80, 60, 24), _disc((h, w), 80, 60, 18), _disc((h, w), 80, lesion_col, 22)
    image[core], image[lesion] = (230, 200, 60), (200, 60, 60)
    return image, (debris | lesion).astype(np.float32), debris, lesion


def test_a_negative_click_in_the_middle_of_a_false_blob_takes_the_rim_the_network_left():
    image, prior, debris, lesion = _debris_scene(lesion_col=140)
    mask = ClickSession(image, prior, runner=CoreNetwork(), zoom=False).click(80, 60, positive=False)
    assert not mask[debris].any() and mask[lesion].all()  # without the rule a ring of 784 px stayed
    assert rim_left(mask, prior > 0.5, [Click(80, 60, False)]) is None  # nothing left to take


def test_what_a_negative_click_leaves_of_a_blob_merged_with_a_lesion_stays():
    image, prior, debris, lesion = _debris_scene(lesion_col=98)  # the lump touches the lesion
    mask = ClickSession(image, prior, runner=CoreNetwork(), zoom=False).click(80, 55, positive=False)
    assert mask[lesion].all()  # the ring is joined to the lesion: one thick part, not a rim
    assert mask[debris & ~lesion].any()


def test_rim_left_takes_thin_parts_only_and_never_where_a_positive_click_lies():
    blob = _disc((H, W), 60, 60, 30)
    arc = (blob & ~_disc((H, W), 60, 60, 27))
    arc[:, 45:] = False  # what the network left on the far side of the click: 3 px thin
    lobe = blob & _disc((H, W), 60, 76, 16)  # as thick as a lesion, apart from the arc
    after = arc | lobe
    negative = [Click(60, 50, False)]  # 20 px deep in the blob: a rim is under 8 px thick
    assert np.array_equal(rim_left(after, blob, negative), arc)
    assert rim_left(after, blob, [Click(60, 76, True)] + negative) is None  # the blob holds a lesion click
    assert rim_left(after, blob, [Click(60, 50, True)]) is None  # only after a negative click
    assert rim_left(blob, blob, negative) is None  # the click did not take its pixel


class GrowNetwork:
    """Echoes the mask it was given plus a disc of 18 px around the positive click."""

    input_size = 200

    def run(self, x):
        keep = x[:, 3] > 0.5
        rows, cols = np.nonzero(x[0, 4] > 0.5)
        if len(rows):
            rr, cc = np.ogrid[:x.shape[2], :x.shape[3]]
            keep |= (rr - rows.mean()) ** 2 + (cc - cols.mean()) ** 2 <= 18 ** 2
        return {"logits": np.where(keep, 20.0, -20.0)[:, None].astype(np.float32)}


def test_a_positive_click_does_not_add_what_is_nearer_to_an_earlier_negative_click():
    image, prior, debris, lesion = _debris_scene(lesion_col=140)
    image[_disc(image.shape[:2], 80, 110, 18)] = (200, 60, 60)  # a missed lesion between the two
    session = ClickSession(image, prior, runner=GrowNetwork(), zoom=False)
    session.click(80, 100, positive=False)  # on the background, at the missed lesion's left side
    mask = session.click(80, 110, positive=True)  # the network adds 18 px around it
    assert mask[80, 106:128].all()  # the positive click's own side: added
    assert not mask[80, 92:105].any()  # nearer to the negative click: left out
    assert mask[lesion].all() and mask[debris].all()  # nothing else moved


def test_claimed_by_others_splits_a_change_at_the_bisector_of_opposite_clicks():
    changed = np.zeros((H, W), bool)
    changed[50, 20:80] = True
    clicks = [Click(50, 20, False), Click(10, 10, True), Click(50, 60, True)]
    claimed = claimed_by_others(changed, clicks)
    assert np.array_equal(np.nonzero(claimed[50])[0], np.arange(20, 40))  # nearer to (50, 20) than to (50, 60)
    assert claimed_by_others(changed, clicks[1:]) is None  # no earlier negative click
    assert claimed_by_others(changed, clicks[:2] + [Click(50, 60, False)]) is None  # a negative click: never held back
    assert claimed_by_others(np.zeros((H, W), bool), clicks) is None
