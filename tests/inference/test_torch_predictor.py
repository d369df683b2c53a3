"""Headless inference (napari_polyp/inference/torch_predictor.py): flip test-time augmentation, attention
maps on request."""
import numpy as np
import torch
import torch.nn as nn

from napari_polyp.inference import Predictor


class Pointwise(nn.Module):
    """Per-pixel: mirroring the input mirrors the output (flip-equivariant)."""

    def forward(self, x):
        return {"logits": x[:, :1] * 3.0, "attention": {}}


class LeftToRightRamp(Pointwise):
    """Adds a position-dependent ramp: the same pixel scores differently once mirrored."""

    def forward(self, x):
        ramp = torch.linspace(-4, 4, x.shape[-1]).view(1, 1, 1, -1)
        return {"logits": x[:, :1] * 0.0 + ramp, "attention": {}}


def _image(seed=0, size=32):
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def test_tta_equals_the_plain_path_for_a_flip_equivariant_network():
    image = _image()
    plain = Predictor("microaunet", model=Pointwise()).predict(image).probability
    tta = Predictor("microaunet", model=Pointwise(), tta=True).predict(image).probability
    np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_tta_averages_the_mirrored_views_back_in_place():
    image = np.full((32, 32, 3), 128, np.uint8)  # symmetric: every view is the same input
    plain = Predictor("microaunet", model=LeftToRightRamp()).predict(image).probability
    tta = Predictor("microaunet", model=LeftToRightRamp(), tta=True).predict(image).probability
    assert plain[0, 0] < 0.1 and plain[0, -1] > 0.9  # the ramp
    assert not np.allclose(tta, plain, atol=0.05)
    expected = (2 * plain + plain[:, ::-1]) / 3  # identity, hflip, vflip (vflip leaves a ramp in x)
    np.testing.assert_allclose(tta, expected, atol=1e-5)


def test_attention_maps_can_be_left_out():
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    predictor = Predictor("microaunet", checkpoint=False, device="cpu", engine="torch")
    full, bare = predictor.predict(image), predictor.predict(image, attention=False)
    assert set(full.attention) == {"lscab_spatial"} and full.attention["lscab_spatial"].shape == (40, 56)
    assert bare.attention == {}
    np.testing.assert_array_equal(full.probability, bare.probability)


def test_the_package_hands_out_its_old_names_from_their_modules():
    # napari_polyp.inference was one module; its names still come from the package, imported on first use
    import napari_polyp.inference as package
    from napari_polyp.inference import prediction, torch_predictor

    assert package.Predictor is torch_predictor.Predictor and package.preprocess is torch_predictor.preprocess
    assert package.Prediction is prediction.Prediction and package.TTA_FLIPS is prediction.TTA_FLIPS
    assert all(hasattr(package, name) for name in package.__all__)
    assert set(package.__all__) <= set(dir(package))
    assert not hasattr(package, "no_such_name")
