"""The frozen-feature cache (napari_polyp/training/feature_cache.py): built once, reused,
resumed after a kill, rebuilt for another backbone, size or image list; views are exact."""
import numpy as np
import pytest
import torch

from napari_polyp.training.feature_cache import VIEWS, FeatureCache, apply_view, token_windows

STEMS = ["a", "b", "c", "d", "e"]


def _images(n=5, size=8):
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


class CountingEncoder:
    """A stand-in backbone: features are the image itself, so a row can be checked exactly."""

    def __init__(self):
        self.images = 0

    def __call__(self, batch):
        self.images += len(batch)
        return torch.from_numpy(batch.astype(np.float32)).permute(0, 3, 1, 2)


def _cache(tmp_path, sha="0" * 64, size=8, stems=STEMS, views=("identity", "hflip")):
    return FeatureCache(tmp_path, "train", sha, size, "keys11", stems, views)


def test_built_once_then_reused(tmp_path):
    images, encode = _images(), CountingEncoder()
    cache = _cache(tmp_path)
    assert cache.missing() == 10
    cache.build(images, encode)
    assert encode.images == 10 and cache.complete()
    again = _cache(tmp_path)
    again.build(images, encode)
    assert encode.images == 10  # nothing recomputed
    got = again.get([1, 3], ["identity", "hflip"])
    expected = np.stack([images[1], apply_view(images[3], "hflip")]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(got.numpy(), expected.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("change", [dict(sha="1" * 64), dict(size=16), dict(stems=STEMS[::-1])])
def test_another_backbone_size_or_image_list_is_never_served_stale(tmp_path, change):
    encode = CountingEncoder()
    _cache(tmp_path).build(_images(), encode)
    other = _cache(tmp_path, **change)
    assert other.missing() == 10
    images = _images(size=change.get("size", 8))
    other.build(images, encode)
    assert encode.images == 20
    np.testing.assert_array_equal(other.get([0], ["identity"])[0].numpy(),
                                  images[0].transpose(2, 0, 1).astype(np.float16).astype(np.float32))


def test_a_cancelled_build_resumes_where_it_stopped(tmp_path):
    images, encode = _images(), CountingEncoder()
    for done, total in _cache(tmp_path).iter_build(images, encode, batch=2):
        if done >= 4:
            break  # the caller stops iterating: a cancel
    assert _cache(tmp_path).missing() == 6
    _cache(tmp_path).build(images, encode, batch=2)
    assert encode.images == 10


def test_views_are_exact_flips_of_image_and_mask():
    image = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    assert set(VIEWS) == {"identity", "hflip", "vflip", "rot180"}
    np.testing.assert_array_equal(apply_view(image, "hflip"), image[:, ::-1])
    np.testing.assert_array_equal(apply_view(image, "vflip"), image[::-1])
    np.testing.assert_array_equal(apply_view(image, "rot180"), np.rot90(image, 2, axes=(0, 1)))
    np.testing.assert_array_equal(apply_view(image[..., 0], "rot180"), np.rot90(image[..., 0], 2))


def test_unknown_view_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown views"):
        _cache(tmp_path, views=("identity", "rot90"))


def test_token_windows_cut_features_image_and_mask_at_the_same_place():
    patch, grid, n = 4, 6, 3
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (5, grid * patch, grid * patch, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (5, grid * patch, grid * patch), dtype=np.uint8)
    # a stand-in feature: each token is the mean of its image patch and of its mask patch
    def token_means(img, msk):
        stack = np.concatenate([img, msk[..., None]], axis=-1).astype(np.float32)
        b, H, W, c = stack.shape
        return torch.from_numpy(stack.reshape(b, H // patch, patch, W // patch, patch, c).mean((2, 4))).permute(0, 3, 1, 2)

    feats, (img_w, mask_w) = token_windows(token_means(images, masks), [images, masks], n, seeds=range(5))
    assert feats.shape == (5, 4, n, n) and img_w.shape == (5, n * patch, n * patch, 3) and mask_w.shape[1:] == (12, 12)
    torch.testing.assert_close(feats, token_means(img_w, mask_w))
    corners = {tuple(np.argwhere((images[b] == img_w[b][0, 0]).all(-1))[0]) for b in range(5)}
    assert len(corners) > 1  # the windows move from sample to sample
    again = token_windows(token_means(images, masks), [images, masks], n, seeds=range(5))[1][0]
    np.testing.assert_array_equal(again, img_w)  # the seed decides the window: a resumed run repeats it
    whole = token_windows(token_means(images, masks), [images, masks], grid, seeds=range(5))
    assert whole[1][0] is images  # a window as large as the grid is the whole image
