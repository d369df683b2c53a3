"""numpy bilinear resampling (napari_polyp/inference/resample.py) against torch's F.interpolate."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_polyp.inference.resample import resize


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("hw, out", [((600, 530), (336, 336)), ((480, 640), (256, 256)), ((37, 53), (256, 256)),
                                     ((256, 256), (480, 640)), ((300, 90), (97, 200)), ((5, 7), (5, 3))])
def test_resize_matches_torch(hw, out, antialias):
    image = np.random.default_rng(0).integers(0, 256, hw + (3,)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None], size=out, mode="bilinear",
                             align_corners=False, antialias=antialias)[0].permute(1, 2, 0).numpy()
    # torch works out source positions in float32, we in float64: 0.02 of 255 (1e-4 of the range) apart
    np.testing.assert_allclose(resize(image, out, antialias), expected, atol=0.02, rtol=0)
    np.testing.assert_allclose(resize(image[..., 0], out, antialias), expected[..., 0], atol=0.02, rtol=0)


def test_same_size_is_a_copy():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = resize(image, (3, 4), antialias=True)
    assert np.array_equal(out, image) and out is not image
