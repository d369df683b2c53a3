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


class _NotAllowed:  # an arbitrary Python object: torch.load(weights_only=True) refuses it
    pass


def _preferred_broken(tmp_path, kind):
    path = tmp_path / f"broken-{kind}.pt"
    if kind == "junk":
        path.write_bytes(b"not a checkpoint at all")
    elif kind == "pickled-object":
        torch.save({"format": "napari-polyp-checkpoint", "obj": _NotAllowed()}, path)
    else:  # a valid file whose weights do not fit the network
        save_checkpoint(models.create_model("eam-net", checkpoint=False), path, architecture="microaunet")
    set_preferred("microaunet", path)
    return path


@pytest.mark.parametrize("kind", ["junk", "pickled-object", "does-not-fit"])
def test_a_broken_preferred_checkpoint_falls_back_to_the_shipped_one(tmp_path, kind):
    from models.checkpoint import shipped_checkpoint

    shipped = shipped_checkpoint("microaunet")
    if shipped is None:
        pytest.skip("no shipped microaunet checkpoint in this checkout")
    broken = _preferred_broken(tmp_path, kind)
    with pytest.warns(UserWarning) as caught:
        model = models.create_model("microaunet")
        models.get_card("microaunet")
    assert model.checkpoint_path == str(shipped)
    messages = " ".join(str(w.message) for w in caught)
    assert str(broken) in messages and "shipped" in messages
    assert "weights_only" not in messages and "can still be loaded" not in messages


def test_no_message_repeats_torchs_unsafe_loading_hint(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"obj": _NotAllowed()}, path)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    text = str(caught.value)
    assert str(path) in text and "weights_only" not in text and "can still be loaded" not in text


def test_predict_runs_with_a_broken_preferred_checkpoint(tmp_path, capsys):
    from PIL import Image

    from models.checkpoint import shipped_checkpoint
    from napari_polyp.cli import main

    if shipped_checkpoint("microaunet") is None:
        pytest.skip("no shipped microaunet checkpoint in this checkout")
    _preferred_broken(tmp_path, "junk")
    image = tmp_path / "a.png"
    Image.fromarray(torch.randint(0, 255, (40, 48, 3), dtype=torch.uint8).numpy()).save(image)
    with pytest.warns(UserWarning, match="broken-junk.pt"):
        assert main(["predict", "--model", "microaunet", str(image), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert (tmp_path / "out" / "a.png").is_file()


def test_a_header_is_verified_once_per_file_version(tmp_path, monkeypatch):
    import models.checkpoint as ckpt

    path = tmp_path / "m.pt"
    save_checkpoint(small_model(), path, architecture="microaunet", metrics={"dice": 0.5})
    first = ckpt.peek_header(path)
    assert first["metrics"] == {"dice": 0.5}
    ckpt._header_cache.clear()  # as in the next app start: only the file in NAPARI_POLYP_HOME remains

    def no_loading(*args, **kwargs):
        raise AssertionError("the header was read again")

    monkeypatch.setattr(ckpt, "read_checkpoint", no_loading)
    assert ckpt.peek_header(path) == first
    monkeypatch.undo()

    payload = torch.load(path, weights_only=True)  # the same file with edited weights: verified again
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key] = payload["state_dict"][key] + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match"):
        ckpt.peek_header(path)


def test_a_checkpoints_card_states_its_own_variants_profile(tmp_path):
    from napari_polyp.bench import checkpoint_profile

    wide = (8, 16, 24, 32, 48, 64)
    model = small_model(widths=wide)
    profile = checkpoint_profile(model, 64, runs=20)
    assert profile["params"] == 84_281 and profile["gflops"] > 0 and profile["cpu_ms"] > 0
    path = tmp_path / "wide.pt"
    save_checkpoint(model, path, architecture="microaunet", variant={"widths": wide}, extra={"profile": profile})
    set_preferred("microaunet", path)
    card = models.get_card("microaunet")
    assert (card.params, card.gflops, card.cpu_ms) == (84_281, profile["gflops"], profile["cpu_ms"])
    assert models.base_card("microaunet").params == 24_881  # the default variant's card is untouched
    assert tuple(card.checkpoint_variant["widths"]) == wide


@pytest.mark.parametrize("profile", [{"params": "many", "cpu_ms": True}, {"params": -3}, ["not", "a", "dict"]])
def test_a_profile_of_the_wrong_types_is_ignored(tmp_path, profile):
    path = tmp_path / "odd.pt"
    save_checkpoint(small_model(), path, architecture="microaunet", extra={"profile": profile})
    set_preferred("microaunet", path)
    card = models.get_card("microaunet")
    base = models.base_card("microaunet")
    assert card.trained and (card.params, card.cpu_ms) == (base.params, base.cpu_ms)
