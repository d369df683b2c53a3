import pytest
import torch

from napari_polyp.training.cutmix import AREA, cutmix, draw_boxes


def _batch(n=4, size=32):
    """Sample i is the constant i everywhere: in its image, its mask and its teacher map."""
    values = torch.arange(n, dtype=torch.float32)[:, None, None, None]
    image = values.expand(n, 3, size, size).clone()
    mask = values.expand(n, 1, size, size).clone()
    return image, mask, mask.clone() * 10


def test_a_pasted_box_moves_image_mask_and_teacher_map_alike():
    image, mask, teacher = _batch()
    mixed_image, mixed_mask, mixed_teacher = cutmix(image, mask, teacher, p=1.0, seed=3)
    for i in range(4):
        source = (i + 1) % 4
        pasted = mixed_image[i, 0] == source
        assert AREA[0] - 0.05 <= pasted.float().mean() <= AREA[1] + 0.05
        assert torch.equal(mixed_mask[i, 0] == source, pasted)  # the same box
        assert torch.equal(mixed_teacher[i, 0] == 10 * source, pasted)
        assert torch.equal(mixed_image[i, 0][~pasted], image[i, 0][~pasted])  # the rest untouched
        rows, cols = pasted.any(1).nonzero(), pasted.any(0).nonzero()
        assert pasted.sum() == len(rows) * len(cols)  # one rectangle
    assert torch.equal(image, _batch()[0])  # the inputs themselves are not changed


def test_cutmix_is_seeded_and_off_at_zero_or_a_single_sample():
    image, mask, teacher = _batch()
    a, b = cutmix(image, mask, teacher, 1.0, seed=7), cutmix(image, mask, teacher, 1.0, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], cutmix(image, mask, teacher, 1.0, seed=8)[0])
    assert cutmix(image, mask, None, 0.0, seed=7)[0] is image
    assert draw_boxes(1, 32, 32, p=1.0, seed=7) == [None]
    assert cutmix(image, mask, None, 1.0, seed=7)[2] is None
    half = draw_boxes(400, 32, 32, p=0.5, seed=1)
    assert 150 < sum(box is not None for box in half) < 250


def test_training_with_cutmix_records_it_and_resumes_like_an_unbroken_run(tiny_data, tmp_path):
    from models.checkpoint import read_checkpoint
    from napari_polyp.training import TrainConfig, train

    def config(out, **kw):
        return TrainConfig(model="microaunet", data=str(tiny_data), out=str(out), size=64, batch=4, num_threads=1,
                           epochs=2, cutmix=1.0, **kw)

    train(config(tmp_path / "run", max_steps=3))
    train(config(tmp_path / "run", resume=True))
    train(config(tmp_path / "unbroken"))
    header, resumed = read_checkpoint(tmp_path / "run" / "last.pt")
    _, unbroken = read_checkpoint(tmp_path / "unbroken" / "last.pt")
    assert header["training"]["cutmix"] == 1.0 and header["training"]["augment"].endswith("CutMix p=1")
    for key in unbroken:
        torch.testing.assert_close(resumed[key], unbroken[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw, message", [
    (dict(cutmix=1.5), "between 0 and 1"),
    (dict(model="dino-keys", size=56, cutmix=0.5), "--no-cache"),
])
def test_cutmix_misuse_is_one_clear_line(tiny_data, tmp_path, kw, message):
    from napari_polyp.errors import UserError
    from napari_polyp.training import TrainConfig, train

    base = dict(model="microaunet", data=str(tiny_data), out=str(tmp_path / "run"), size=64, batch=4,
                num_threads=1, epochs=1)
    with pytest.raises(UserError, match=message):
        train(TrainConfig(**{**base, **kw}))
    assert not list((tmp_path / "run").glob("**/*.done.npy"))  # refused before any features were cached
