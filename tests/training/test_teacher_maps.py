"""Distillation from precomputed teacher maps (napari_polyp/training/distill.TeacherMaps):
the maps move with the image's augmentation, are predicted once and reused."""
import numpy as np
import pytest

from models.checkpoint import read_checkpoint
from napari_polyp.training import TrainConfig, train
from napari_polyp.training.augment import Augmenter


def _config(data, out, **kw):
    base = dict(model="microaunet", data=str(data), out=str(out), size=64, batch=4, num_threads=1, seed=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("preset", ["microaunet", "standard", "strong", "pefnet"])
def test_a_teacher_map_is_warped_exactly_as_the_mask_and_with_the_image(preset):
    size = 64
    yy, xx = np.mgrid[0:size, 0:size]
    ramp = ((xx + 2 * yy) * 255 // (3 * size)).astype(np.uint8)  # smooth, no symmetry
    mask = (xx < yy).astype(np.uint8)
    image = np.stack([ramp, ramp, ramp], axis=-1)
    augmenter = Augmenter(preset, size)
    moved = 0
    for seed in range(12):
        out_image, out_mask, out_teacher = augmenter(image, mask, seed, teacher=mask * 255)
        np.testing.assert_array_equal(out_teacher, out_mask * 255)  # the very transform of the mask
        _, _, warped_ramp = augmenter(image, mask, seed, teacher=ramp)
        plain_image, plain_mask = augmenter(image, mask, seed)  # the map does not change the draw
        np.testing.assert_array_equal(plain_mask, out_mask)
        np.testing.assert_array_equal(plain_image, out_image)
        if preset == "microaunet":  # geometric only: the image's own channel, up to resampling
            diff = np.abs(warped_ramp.astype(int) - out_image[..., 0].astype(int))
            assert np.median(diff) <= 2
        moved += not np.array_equal(out_mask, mask)
    assert moved >= 6  # the augmentation did move things


def test_student_trains_on_teacher_maps_predicted_once(tiny_data, tmp_path, monkeypatch):
    teacher = train(_config(tiny_data, tmp_path / "teacher", epochs=1))
    import napari_polyp.inference as inference

    calls = []
    original = inference.Predictor.predict
    monkeypatch.setattr(inference.Predictor, "predict", lambda self, image: calls.append(1) or original(self, image))
    done = train(_config(tiny_data, tmp_path / "student", epochs=1, teacher_maps=teacher.checkpoint))
    assert len(calls) == 7  # the 7 training images, once each
    header, _ = read_checkpoint(done.checkpoint, expected_architecture="microaunet")
    assert header["training"]["teacher_maps"] == teacher.checkpoint
    maps = list((tmp_path / "student").glob("teacher-*-64px.npz"))
    assert len(maps) == 1
    with np.load(maps[0]) as saved:
        assert saved["maps"].shape == (7, 64, 64) and saved["maps"].dtype == np.uint8
    train(_config(tiny_data, tmp_path / "student", epochs=2, resume=True, teacher_maps=teacher.checkpoint))
    assert len(calls) == 7  # reused: no new predictions


def test_a_frozen_backbone_teacher_reads_its_cached_features(tiny_data, tmp_path, monkeypatch):
    """DINO-keys as teacher: its features of the training images are in the shared cache,
    so only its head runs, and the maps match what the full network predicts."""
    import torch
    from safetensors.torch import save_file

    import models
    import napari_polyp.inference as inference

    torch.manual_seed(0)
    backbone = models.create_model("dino-keys", checkpoint=False).backbone
    weights = tmp_path / "vit_small_patch14_dinov2.test.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))
    shared = tmp_path / "features"
    teacher = train(_config(tiny_data, tmp_path / "teacher", model="dino-keys", size=56, epochs=1,
                            feature_cache=str(shared), backbone_weights=str(weights)))
    calls = []
    original = inference.Predictor.predict
    monkeypatch.setattr(inference.Predictor, "predict", lambda self, image: calls.append(1) or original(self, image))
    student = dict(epochs=1, teacher_maps=teacher.checkpoint, backbone_weights=str(weights))
    train(_config(tiny_data, tmp_path / "cached", feature_cache=str(shared), **student))
    assert calls == []  # the head ran on cached features
    train(_config(tiny_data, tmp_path / "plain", **student))  # no cache there: the full network
    assert len(calls) == 7
    (cached,), (plain,) = (list((tmp_path / d).glob("**/teacher-*.npz")) for d in ("features", "plain"))
    with np.load(cached) as a, np.load(plain) as b:
        assert np.abs(a["maps"].astype(int) - b["maps"].astype(int)).mean() < 4  # one resize apart


def test_an_ensemble_of_teachers_is_the_mean_of_their_maps(tiny_data, tmp_path):
    """A MicroAUNet teacher (architecture microaunet-teacher) and a trained network, each
    alone and together: the ensemble's map is the mean of the two, in its own file."""
    from napari_polyp.training.data import find_pairs
    from napari_polyp.training.distill import TeacherMaps

    unet = train(_config(tiny_data, tmp_path / "unet", epochs=1, teacher_kind="malunet")).checkpoint
    student = train(_config(tiny_data, tmp_path / "net", epochs=1, seed=1)).checkpoint
    pairs = find_pairs(tiny_data)
    maps = {}
    for name, members in {"unet": unet, "net": student, "both": f"{unet},{student}"}.items():
        teacher = TeacherMaps(members, tmp_path / "maps", 64)
        list(teacher.iter_build(pairs))
        maps[name] = teacher.maps.astype(int)
    assert len(list((tmp_path / "maps").glob("teacher-*-64px.npz"))) == 3
    assert not np.array_equal(maps["unet"], maps["net"])
    assert np.abs(maps["both"] - (maps["unet"] + maps["net"]) / 2).max() <= 1  # rounding


def test_cached_feature_training_takes_teacher_maps_in_the_same_view_and_window(tiny_data, tmp_path, monkeypatch):
    """DINO-keys trains on cached features with a teacher's maps: each map is flipped and
    cut exactly as its mask (a teacher that returns the masks gives soft targets equal to them)."""
    import torch

    from napari_polyp.training import data as data_mod
    from napari_polyp.training import trainer
    from napari_polyp.training.distill import TeacherMaps

    def masks_as_maps(self, pairs):
        self.maps = data_mod.PairArrays.cached(pairs, self.size, None).masks.astype(np.uint8) * 255
        yield "teacher maps: the masks"

    monkeypatch.setattr(TeacherMaps, "iter_build", masks_as_maps)
    seen = []
    original = trainer.CachedBatches.train_batch
    monkeypatch.setattr(trainer.CachedBatches, "train_batch",
                        lambda self, idx, epoch: seen.append(original(self, idx, epoch)) or seen[-1])
    member = train(_config(tiny_data, tmp_path / "member", epochs=1)).checkpoint
    done = train(_config(tiny_data, tmp_path / "run", model="dino-keys", size=56, epochs=2, crop_tokens=2,
                         teacher_maps=member))
    assert done.step == len(seen) >= 2
    for (features, image), target, soft in seen:
        assert soft is not None and image.shape[-2:] == target.shape[-2:] == (28, 28)
        torch.testing.assert_close(soft, target)
    header, _ = read_checkpoint(done.checkpoint, expected_architecture="dino-keys")
    assert header["training"]["teacher_maps"] == member
