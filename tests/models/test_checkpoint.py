"""Checkpoint format: round trip, and refusal of everything that is not ours."""
import pytest
import torch

import models
from models.checkpoint import CheckpointError, read_checkpoint, save_checkpoint, set_preferred


def small_model(**kw):
    return models.create_model("microaunet", checkpoint=False, **kw)


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = small_model().eval()
    path = tmp_path / "m.pt"
    header = save_checkpoint(model, path, architecture="microaunet", metrics={"dice": 0.5})
    loaded = models.create_model("microaunet", checkpoint=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)["logits"], loaded(x)["logits"])
    assert loaded.checkpoint_header["sha256"] == header["sha256"]


def test_variant_is_restored_from_the_header(tmp_path):
    wide = (8, 16, 24, 32, 48, 64)
    path = tmp_path / "wide.pt"
    save_checkpoint(small_model(widths=wide), path, architecture="microaunet", variant={"widths": wide})
    loaded = models.create_model("microaunet", checkpoint=path)
    assert sum(p.numel() for p in loaded.parameters()) == 84_281


def test_tampered_weights_are_refused(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(small_model(), path, architecture="microaunet")
    payload = torch.load(path, weights_only=True)
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first] = payload["state_dict"][first] + 1e-3
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="sha256"):
        models.create_model("microaunet", checkpoint=path)


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(small_model(), path, architecture="microaunet")
    with pytest.raises(CheckpointError, match="'microaunet' checkpoint, but the model is 'eam-net'"):
        models.create_model("eam-net", checkpoint=path)


def test_header_lying_about_architecture_does_not_fit(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(small_model(), path, architecture="eam-net")
    with pytest.raises(CheckpointError, match="does not fit"):
        models.create_model("eam-net", checkpoint=path)


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", b"PK\x03\x04broken zip"])
def test_non_checkpoint_files_are_refused(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="junk.pt is not a readable PyTorch checkpoint"):
        read_checkpoint(path)


def test_plain_state_dict_is_refused_with_advice(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(small_model().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a napari-polyp checkpoint"):
        read_checkpoint(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nothing-here.pt does not exist"):
        models.create_model("microaunet", checkpoint=tmp_path / "nothing-here.pt")


def test_preferred_checkpoint_becomes_the_default(tmp_path):
    path = tmp_path / "mine.pt"
    save_checkpoint(small_model(), path, architecture="microaunet", metrics={"dice": 0.25})
    set_preferred("microaunet", path)
    card = models.get_card("microaunet")
    assert card.trained and card.checkpoint == str(path.resolve())
    assert models.create_model("microaunet").checkpoint_path == str(path.resolve())


def test_half_precision_checkpoint_loads_into_float_model(tmp_path):
    path = tmp_path / "half.pt"
    save_checkpoint(small_model(), path, architecture="microaunet", half=True)
    model = models.create_model("microaunet", checkpoint=path)
    assert all(p.dtype == torch.float32 for p in model.parameters())
