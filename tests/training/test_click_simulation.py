"""The batched simulated annotator of click training."""
import numpy as np
import torch
import torch.nn.functional as F

from napari_polyp.training.click_simulation import (
    band_masks, click_maps, crop_batch, dice, erode, error_depth, focus_crops, masktrack_priors, near_truth_masks,
    next_clicks, object_crops, perturb_masks, structure_masks)


def _square(n=2, size=64):
    truth = torch.zeros(n, 1, size, size)
    truth[:, :, 10:40, 14:44] = 1
    return truth


def test_error_depth_counts_erosions_and_the_border_is_an_edge():
    region = torch.zeros(1, 1, 20, 20)
    region[:, :, 5:12, 5:12] = 1  # 7 px wide: centre survives 3 erosions
    assert float(error_depth(region).max()) == 4.0
    edge = torch.zeros(1, 1, 20, 20)
    edge[:, :, :, :3] = 1  # a band on the border: depth by its inner edge and the border alike
    assert float(error_depth(edge).max()) == 2.0


def test_the_next_click_is_positive_in_a_miss_and_negative_on_a_false_blob():
    truth = _square()
    pred = truth.clone()
    pred[0, :, 10:40, 14:30] = 0  # sample 0 misses half of the square
    pred[1, :, 50:62, 2:14] = 1  # sample 1 has a false blob
    rows, cols, positive, valid = next_clicks(pred, truth)
    assert positive.tolist() == [True, False] and valid.all()
    assert truth[0, 0, rows[0], cols[0]] == 1 and pred[0, 0, rows[0], cols[0]] == 0
    assert 50 <= rows[1] < 62 and 2 <= cols[1] < 14
    rows, cols, positive, valid = next_clicks(truth, truth)
    assert not valid.any()


def test_click_maps_draw_discs_in_their_channels():
    maps = click_maps(torch.tensor([[[20, 20, 1], [40, 40, -1], [0, 0, 0]]]), (64, 64), radius=3)
    assert maps.shape == (1, 2, 64, 64)
    assert maps[0, 0, 20, 20] == 1 and maps[0, 1, 40, 40] == 1 and maps[0, 0, 0, 0] == 0
    assert float(maps[0, 0].sum()) == float(maps[0, 1].sum()) == 29.0  # a radius-3 disc


def test_perturbed_masks_are_probabilities_near_the_truth_and_seeded():
    truth = _square(8)
    a = perturb_masks(truth, torch.Generator().manual_seed(1))
    b = perturb_masks(truth, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == truth.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    overlap = ((a > 0.5) & (truth > 0.5)).flatten(1).sum(1).float() / truth.flatten(1).sum(1)
    assert float(overlap.mean()) > 0.4  # errors, not noise


def test_an_object_crop_keeps_the_lesion_inside_and_aligned():
    truth = _square(3)
    image = truth.repeat(1, 3, 1, 1)  # the lesion is the white part of the image
    theta = object_crops(truth, torch.Generator().manual_seed(0))
    x, y = crop_batch(image, truth, theta)
    grown = y.flatten(1).sum(1) / truth.flatten(1).sum(1)
    assert (grown >= 1).all() and (grown > 1.1).any()  # zoomed in (a crop wider than the image is the image)
    assert torch.equal((x[:, :1] > 0.5).float(), y)  # image and mask moved together


def test_a_focus_crop_is_a_close_up_the_lesion_runs_past_and_stays_aligned():
    truth = torch.cat([_square(16, 96), torch.zeros(1, 1, 96, 96)])
    image = truth.repeat(1, 3, 1, 1)
    x, y = crop_batch(image, truth, focus_crops(truth, torch.Generator().manual_seed(1)))
    # image and mask moved together (zoomed in, bilinear and nearest differ only along the edge)
    assert float(((x[:, :1] > 0.5).float() != y).float().mean()) < 0.01
    lesion = y[:16] > 0.5
    edges = torch.stack([lesion[:, 0, 0].any(1), lesion[:, 0, -1].any(1), lesion[:, 0, :, 0].any(1),
                         lesion[:, 0, :, -1].any(1)], 1)
    assert int(edges.any(1).sum()) >= 12  # the lesion runs past a side of most close-ups
    assert int((lesion.flatten(1).float().mean(1) > 0.1).sum()) >= 12  # and fills much of them
    assert not y[16].any() and torch.equal(x[16], image[16])  # no lesion: the whole image


def test_a_near_truth_mask_is_good_but_not_the_truth():
    truth = _square(16, 96)
    near = near_truth_masks(truth, torch.Generator().manual_seed(3))
    far = perturb_masks(truth, torch.Generator().manual_seed(3))
    assert near.shape == truth.shape and float(near.min()) >= 0 and float(near.max()) <= 1
    near_dice, far_dice = dice(near, truth), dice(far, truth)
    assert float(near_dice.min()) > 0.6
    assert int((near_dice < 0.995).sum()) >= 12  # most carry an error (a blob may land inside the lesion)
    assert float(near_dice.mean()) > float(far_dice.mean())


def test_a_band_mask_moves_one_stretch_of_the_edge_and_keeps_the_rest():
    truth = torch.zeros(32, 1, 96, 96)
    truth[..., 24:72, 24:72] = 1
    band = band_masks(truth, torch.Generator().manual_seed(4))
    assert torch.equal(band, band_masks(truth, torch.Generator().manual_seed(4))) and band.shape == truth.shape
    wrong = ((band > 0.5) != (truth > 0.5)).float()
    assert int((wrong.flatten(1).sum(1) > 0).sum()) >= 28  # nearly every sample carries a band
    middle = torch.zeros_like(truth)
    middle[..., 34:62, 34:62] = 1  # the lesion's middle and the far background stay right
    assert float((wrong * middle).sum()) == 0 and float(wrong[..., :12, :].sum() + wrong[..., -12:, :].sum()) == 0
    edge = truth - erode(truth)
    touched = (F.max_pool2d(wrong, 9, 1, 4) * edge).flatten(1).sum(1) / edge.flatten(1).sum(1)
    assert float(touched.max()) < 0.95 and float(touched.mean()) < 0.8  # a stretch of the outline, not all of it


def test_a_masktrack_prior_is_the_truth_moved_and_bent_and_seeded():
    truth = _square(32, 96)
    a = masktrack_priors(truth, torch.Generator().manual_seed(5))
    assert torch.equal(a, masktrack_priors(truth, torch.Generator().manual_seed(5))) and a.shape == truth.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    scores = dice(a, truth)
    assert float(scores.min()) > 0.3  # the object, misplaced: never another one
    assert int((scores < 0.95).sum()) >= 16  # most are off by more than an edge
    assert int((scores > 0.97).sum()) >= 1  # the truth itself is among them (a good prior is kept)


def _tiles(n=4, size=64):
    """Images of 16 flat tiles with the lesion one tile, and the tile left of it black (the
    frame around a scope's view)."""
    values = np.random.default_rng(0).uniform(0.3, 1.0, (4, 4, 3))
    values[1, 0] = 0.0
    image = np.kron(values, np.ones((size // 4, size // 4, 1)))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(n, 1, 1, 1).float()
    truth = torch.zeros(n, 1, size, size)
    truth[:, :, 16:32, 16:32] = 1
    return x, truth


def test_a_structure_error_takes_in_or_leaves_out_a_region_attached_to_the_lesion():
    x, truth = _tiles(12)
    masks = structure_masks(x, truth, np.random.default_rng(1), torch.Generator().manual_seed(1))
    again = structure_masks(x, truth, np.random.default_rng(1), torch.Generator().manual_seed(1))
    assert torch.equal(masks, again) and masks.shape == truth.shape
    binary, lesion = masks[:, 0] > 0.5, truth[0, 0] > 0.5
    changed = binary != lesion
    assert int(changed.flatten(1).any(1).sum()) >= 10  # nearly every sample carries an error
    ring = torch.nn.functional.max_pool2d(lesion[None, None].float(), 3, 1, 1)[0, 0].bool()
    for mask, diff in zip(binary, changed):
        added, removed = diff & ~lesion, diff & lesion
        assert min(int(added.sum()), int(removed.sum())) <= 8  # one kind of error (and corners softened)
        assert not diff.any() or bool((diff & ring).any())  # attached to the lesion's edge
        assert int(mask[16:32, 0:16].sum()) <= 4  # the black frame is never taken in (a softened corner)
        assert 0 < int(mask.sum())  # something of the lesion, or more, is left
