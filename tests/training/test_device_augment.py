"""On-device batch augmentation (``--augment-on-device``), checked on the CPU."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import models
from napari_polyp.errors import UserError
from napari_polyp.inference import normalise, preprocess
from napari_polyp.training import TrainConfig, train
from napari_polyp.training.device_augment import DEVICE_PRESETS, DeviceAugment, augment_batch, draw

ROOT = Path(__file__).resolve().parents[2]
OFF = DEVICE_PRESETS["none"]


def _batch(n=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))
    masks = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    masks[:, :, 4:14, 6:20] = 1  # off-centre, so every turn and flip moves it
    return images, masks


def _params(aug, n, seed=0):
    return torch.from_numpy(np.stack([draw(aug, seed + i) for i in range(n)]).astype(np.float32))


@pytest.mark.parametrize("name", ["microaunet", "eam-net"])  # imagenet and min-max normalisation
def test_normalise_matches_inference_preprocess(name):
    card = models.base_card(name)
    images, _ = _batch(size=card.input_size)
    expected = preprocess(images.permute(0, 2, 3, 1).numpy(), card)
    torch.testing.assert_close(normalise(images.float() / 255, card), expected, rtol=1e-5, atol=1e-5)


def test_parameters_depend_on_the_seed_alone():
    aug = DEVICE_PRESETS["pefnet"]
    assert np.array_equal(draw(aug, 7), draw(aug, 7))
    assert not np.array_equal(draw(aug, 7), draw(aug, 8))


def test_no_augmentation_is_the_identity():
    images, masks = _batch()
    x, y = augment_batch(images, masks, _params(OFF, 3), OFF)
    assert torch.equal(x, images.float() / 255) and torch.equal(y, masks.float())


def test_flips_and_quarter_turns_stay_on_the_pixel_grid():
    images, masks = _batch()
    flip = dataclasses.replace(OFF, hflip=1.0)
    x, y = augment_batch(images, masks, _params(flip, 3), flip)
    torch.testing.assert_close(x, images.flip(-1).float() / 255, rtol=0, atol=1e-5)
    assert torch.equal(y, masks.flip(-1).float())
    turn = dataclasses.replace(OFF, turn90=1.0)
    params = _params(turn, 3)
    _, y = augment_batch(images, masks, params, turn)
    for i, turns in enumerate(params[:, 2].int().tolist()):
        assert turns in (1, 2, 3)
        assert any(torch.equal(y[i], masks[i].rot90(k, (-2, -1)).float()) for k in (turns, -turns))


def test_image_and_mask_move_together_under_the_affine():
    images, masks = _batch(n=6, size=64)
    images = (masks * 255).expand(-1, 3, -1, -1).contiguous()  # the image is its own mask
    aug = DeviceAugment(affine=1.0, rotate=40, zoom=(0.8, 1.25), shift=0.1, colour=0.0)
    x, y = augment_batch(images, masks, _params(aug, 6), aug)
    assert not torch.equal(y, masks.float())
    agree = ((x[:, :1] >= 0.5) == (y >= 0.5)).float().mean()
    assert agree > 0.98
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_colour_and_holes_change_the_image_only():
    images, masks = _batch(n=8)
    aug = dataclasses.replace(OFF, colour=1.0, cutout=1.0)
    x, y = augment_batch(images, masks, _params(aug, 8), aug)
    assert torch.equal(y, masks.float())
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert not torch.allclose(x, images.float() / 255)
    assert (x == 0).flatten(1).any(1).all()  # every sample got at least one black hole


@pytest.mark.parametrize("preset", [None, "generalise-debris"])
def test_a_run_with_on_device_augmentation_trains_and_records_it(tiny_data, tmp_path, preset):
    done = train(TrainConfig(model="microaunet", data=str(tiny_data), out=str(tmp_path / "run"), size=64, batch=4,
                             epochs=1, max_steps=2, num_threads=1, device="cpu", augment_on_device=True,
                             augment=preset))
    header, _ = models.checkpoint.read_checkpoint(tmp_path / "run" / "last.pt")
    assert done.step == 2 and header["training"]["augment"] == f"{preset or 'microaunet'} (on device)"


def test_the_trainer_imports_without_gui_and_cpu_augmentation_packages():
    # what a lent GPU machine lacks (KINDS.md): the trainer and its CLI must import without them
    blocked = ["albumentations", "pydantic", "napari", "qtpy", "PyQt5", "magicgui", "av", "pycocotools", "npe2"]
    code = ("import sys\n"
            f"for name in {blocked!r}: sys.modules[name] = None\n"
            "import napari_polyp.training.trainer, napari_polyp.training.device_augment\n"
            "from napari_polyp.cli import build_parser\n"
            "build_parser('train'); build_parser('bench')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_every_cpu_preset_has_an_on_device_version():
    from napari_polyp.training import augment

    assert set(augment.PRESETS) == set(DEVICE_PRESETS)
    for name in augment.PRESETS:
        augment.build(name, 64)  # each name is one build() knows
    with pytest.raises(UserError, match="unknown augmentation preset 'wild'; choose one of none, flips"):
        augment.build("wild", 64)


@pytest.mark.parametrize("step", ["gamma", "fda", "hist", "lowres", "blur", "specular", "noise"])
def test_each_generalise_step_keeps_image_and_mask_aligned_and_is_seeded(step):
    """A bright lesion on a dark ground: after the warp and one recipe step, the lesion (by
    the mask) is still brighter than the ground, and the same seeds give the same batch."""
    off = dict(colour=0.0, gamma=0.0, fda=0.0, hist=0.0, lowres=0.0, blur=0.0, specular=0.0, noise=0.0)
    only = dataclasses.replace(DEVICE_PRESETS["generalise"], **{**off, step: 1.0})
    images = torch.full((4, 3, 48, 48), 40, dtype=torch.uint8)
    masks = torch.zeros(4, 1, 48, 48, dtype=torch.uint8)
    masks[:, :, 8:24, 20:40] = 1
    images[masks.expand(-1, 3, -1, -1) == 1] = 220
    params = _params(only, 4, seed=5)
    x, y = augment_batch(images, masks, params, only)
    x2, y2 = augment_batch(images, masks, _params(only, 4, seed=5), only)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    grey = x.mean(1, keepdim=True)
    inside = (grey * y).flatten(1).sum(1) / y.flatten(1).sum(1)
    outside = (grey * (1 - y)).flatten(1).sum(1) / (1 - y).flatten(1).sum(1)
    assert (inside > outside + 0.2).all()
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_histogram_matching_gives_an_image_its_partners_colours_and_keeps_its_content():
    """At full strength each channel holds the partner's values (the next image back in the
    batch), in the order of its own pixels; the other presets draw what they drew before."""
    only = dataclasses.replace(OFF, hist=1.0)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8))
    params = _params(only, 2, seed=3)
    params[:, 35] = 1.0  # full strength: the matched image alone
    x, _ = augment_batch(images, torch.zeros(2, 1, 16, 16, dtype=torch.uint8), params, only)
    source = images.float() / 255
    for i, partner in ((0, 1), (1, 0)):
        for c in range(3):
            # (the identity warp's bilinear sampling leaves float rounding)
            assert torch.allclose(x[i, c].flatten().sort().values, source[partner, c].flatten().sort().values,
                                  atol=1e-5)
            # its content: a darker pixel of its own is no brighter after (ties may take any order)
            own, out = source[i, c].flatten(), x[i, c].flatten()
            levels = own.unique()
            darkest = torch.stack([out[own == level].min() for level in levels])
            brightest = torch.stack([out[own == level].max() for level in levels])
            assert (brightest[:-1] <= darkest[1:] + 1e-5).all()
    for seed in range(5):  # histogram matching's value is drawn last: the rest is what "generalise" draws
        plain, matched = draw(DEVICE_PRESETS["generalise"], seed), draw(DEVICE_PRESETS["generalise-hist"], seed)
        assert plain[35] == 0 and np.array_equal(np.delete(plain, 35), np.delete(matched, 35))


def test_the_small_lesion_preset_zooms_out_with_the_mask_and_fills_the_frame():
    """At zoom 0.35 the lesion shrinks to about an eighth of its area, the mask with it, and the
    reflected border fills the frame (no black padding the networks would learn as a scope's edge)."""
    geometry_only = dataclasses.replace(OFF, affine=1.0, rotate=0.0, zoom=(0.35, 0.35), shift=0.0)
    assert DEVICE_PRESETS["generalise-small"].zoom[0] < DEVICE_PRESETS["generalise"].zoom[0]
    images = torch.full((2, 3, 64, 64), 40, dtype=torch.uint8)
    masks = torch.zeros(2, 1, 64, 64, dtype=torch.uint8)
    masks[:, :, 16:48, 16:48] = 1
    images[masks.expand(-1, 3, -1, -1) == 1] = 220
    x, y = augment_batch(images, masks, _params(geometry_only, 2), geometry_only)
    centre = y[:, :, 22:42, 22:42].float().mean()
    assert 0.2 < centre < 0.5  # the central copy, 32 px * 0.35 ≈ 11 px, in a 20-px window it filled
    grey = x.mean(1, keepdim=True)
    assert ((grey > 0.5) == (y > 0)).float().mean() > 0.97  # bright where the mask is, mirrored copies too
    assert float(grey.min()) > 0.1  # no black padding


def test_on_the_device_debris_is_the_cpu_paths_debris_on_the_samples_whose_coin_says_so():
    from types import SimpleNamespace

    from napari_polyp.training.augment import maybe_paste_debris
    from napari_polyp.training.device_augment import DeviceBatches

    rng = np.random.default_rng(0)
    images = np.full((8, 48, 48, 3), (200, 120, 120), np.uint8) + rng.integers(0, 9, (8, 48, 48, 3)).astype(np.uint8)
    masks = np.zeros((8, 48, 48), np.uint8)
    masks[:, 18:30, 18:30] = 1
    arrays = SimpleNamespace(images=images, masks=masks)
    batches = DeviceBatches(arrays, SimpleNamespace(input_size=48), "generalise-debris", seed=3, device="cpu")
    out = batches._with_debris(torch.from_numpy(images).permute(0, 3, 1, 2), list(range(8)), epoch=2)
    pasted = 0
    for i in range(8):
        expected = maybe_paste_debris(images[i], masks[i], batches.sample_seed(2, i), batches.aug.debris)
        assert np.array_equal(out[i].permute(1, 2, 0).numpy(), expected)
        pasted += not np.array_equal(expected, images[i])
    assert 0 < pasted < 8  # some samples got lumps, some did not
