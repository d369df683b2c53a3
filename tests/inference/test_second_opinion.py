"""The second opinion: a checking network overrules the first one's mask only where it sees none of it."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

import models
from napari_polyp.inference.prediction import Prediction, PredictorBase
from napari_polyp.inference.second_opinion import AGREES, SEEN, SecondOpinion, checked, fits, overrules


def disc(centre, radius=8, size=64, inside=0.95, outside=0.02):
    rr, cc = np.ogrid[:size, :size]
    inner = (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius ** 2
    return np.where(inner, inside, outside).astype(np.float32)


LUMP, POLYP = (16, 16), (46, 44)  # where the first network looks, where the second one does


def test_the_second_overrules_where_it_sees_none_of_the_first_mask():
    first, second = disc(LUMP), disc(POLYP)
    assert overrules(first, second)
    result = checked(Prediction(first, {"where ea-dk looked": first}, model="ea-dk", checkpoint_sha256="a"),
                     Prediction(second, {"where dino-keys looked": second}, model="dino-keys", checkpoint_sha256="b"))
    assert result.overruled and np.array_equal(result.probability, second)
    assert result.model == "ea-dk" and result.checkpoint_sha256 == "a"  # the pair stands for the first network
    assert "dino-keys overruled ea-dk" in result.second_opinion
    assert list(result.attention) == ["where ea-dk looked"]  # where the overruled network looked


def test_the_first_mask_stands_where_the_second_sees_any_of_it():
    first = disc(LUMP)
    second = disc(POLYP)
    second[LUMP[0] - 8:LUMP[0] + 9, LUMP[1] - 8:LUMP[1] + 9] = SEEN + 0.05  # unsure, but it sees the lump
    assert not overrules(first, second)
    result = checked(Prediction(first, model="ea-dk"), Prediction(second, model="dino-keys"))
    assert not result.overruled and np.array_equal(result.probability, first)
    assert result.second_opinion == f"dino-keys {AGREES}" and result.model == "ea-dk"


def test_one_region_the_second_sees_keeps_the_whole_first_mask():
    first = np.maximum(disc(LUMP), disc(POLYP))  # two regions: the second sees one of them
    assert not overrules(first, disc(POLYP))


def test_a_second_network_that_finds_nothing_never_overrules():
    assert not overrules(disc(LUMP), np.zeros((64, 64), np.float32))


def test_what_the_first_missed_the_second_may_find():
    result = checked(Prediction(np.zeros((64, 64), np.float32), model="ea-dk"), Prediction(disc(POLYP), model="dino-keys"))
    assert result.overruled and "found what ea-dk did not" in result.second_opinion


class Fixed(PredictorBase):
    """A predictor that answers one probability map, whatever the image."""

    engine, tta = "fake", False

    def __init__(self, name, probability, seconds=0.1):
        self.model_name, self.probability, self.seconds = name, probability, seconds
        self.card, self.checkpoint_sha256, self.calls = SimpleNamespace(input_size=64), name * 4, 0

    def _predict_rgb(self, images, attention):
        self.calls += len(images)
        return [Prediction(self.probability, {"map": self.probability} if attention else {}, self.model_name,
                           self.checkpoint_sha256, self.seconds, self.engine) for _ in images]


def test_the_checked_predictor_stands_for_the_first_network():
    first, second = Fixed("ea-dk", disc(LUMP)), Fixed("dino-keys", disc(POLYP))
    predictor = SecondOpinion(first, second)
    assert predictor.model_name == "ea-dk" and predictor.card is first.card and predictor.checkpoint_sha256 == "ea-dk" * 4
    result = predictor.predict(np.zeros((64, 64, 3), np.uint8))
    assert result.overruled and result.seconds == pytest.approx(0.2)
    assert first.calls == second.calls == 1
    batch = predictor.predict_batch(np.zeros((3, 64, 64, 3), np.uint8))
    assert len(batch) == 3 and all(r.overruled for r in batch)


def test_the_check_is_on_by_default_only_within_the_time_budget():
    fast, slow, second = (SimpleNamespace(cpu_ms=ms) for ms in (80.0, 300.0, 430.0))
    assert fits(fast, second, tta=True, max_cpu_ms=1000.0)  # 3 x 80 + 430
    assert not fits(slow, second, tta=True, max_cpu_ms=1000.0)  # 3 x 300 + 430
    assert fits(slow, second, tta=False, max_cpu_ms=1000.0)


def test_which_network_checks_which():
    assert models.second_opinion_for("ea-dk") == models.SECOND_OPINION["polyp"] == "dino-keys"
    assert models.second_opinion_for("dino-keys") is None  # not its own check
    assert models.second_opinion_for("eam-net") is None  # no checking network for skin


def test_predict_second_opinion_runs_both_shipped_networks_and_records_them(tmp_path, capsys):
    """The CLI end to end: the spec carries the second network; the run's summary and identity name it."""
    from PIL import Image

    from napari_polyp.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    image = np.full((72, 88, 3), 90, np.uint8)
    image[20:50, 30:60] = (200, 120, 110)
    Image.fromarray(image).save(folder / "a.png")
    out = tmp_path / "out"
    assert main(["predict", "--model", "ea-dk", "--second-opinion", "--quiet", "--json", str(folder),
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == 1 and summary["second_opinion"]["model"] == "dino-keys"
    assert summary["second_opinion"]["checkpoint_sha256"] == models.peek_header(models.default_checkpoint("dino-keys"))["sha256"]
    assert (out / "a.png").is_file()
    identity = json.loads((out / "predict-run.jsonl").read_text().splitlines()[0])["identity"]
    assert identity["second_opinion"]["model"] == "dino-keys"
    unchecked = tmp_path / "unchecked"  # without the option a run's identity is what it was before it
    assert main(["predict", "--model", "ea-dk", "--quiet", "--json", str(folder), "--out", str(unchecked)]) == 0
    assert "second_opinion" not in json.loads((unchecked / "predict-run.jsonl").read_text().splitlines()[0])["identity"]


def test_predict_second_opinion_for_a_network_nobody_checks_is_one_message(tmp_path, capsys):
    from PIL import Image

    from napari_polyp.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(folder / "skin.png")
    assert main(["predict", "--model", "eam-net", "--second-opinion", "--quiet", str(folder),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no network checks eam-net's masks" in err and "Traceback" not in err


def test_the_checked_pair_in_onnx_runtime_matches_torch():
    """The shipped pair as the app serves it (each network's exported graph) against torch."""
    from napari_polyp.inference import Predictor

    image = np.random.default_rng(3).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    image[30:70, 40:90] = (210, 130, 120)
    pairs = {engine: SecondOpinion(*(Predictor(name, device="cpu", engine=engine, threads=1)
                                     for name in ("ea-dk", models.second_opinion_for("ea-dk"))))
             for engine in ("torch", "onnxruntime")}
    assert pairs["onnxruntime"].engine == "onnxruntime" and pairs["onnxruntime"].second.engine == "onnxruntime"
    expected, got = (pairs[engine].predict(image, attention=False) for engine in ("torch", "onnxruntime"))
    np.testing.assert_allclose(got.probability, expected.probability, atol=2e-3)
    assert (got.overruled, got.model, got.second_opinion) == (expected.overruled, expected.model, expected.second_opinion)


def test_the_default_check_is_the_checking_network_where_both_fit():
    card = models.get_card("ea-dk")
    from napari_polyp.inference.second_opinion import default_check

    assert default_check(card, tta=True) == models.second_opinion_for("ea-dk")  # 3 x 84.7 + 433 ms
    assert default_check(models.get_card(models.second_opinion_for("ea-dk")), tta=False) == ""
    assert default_check(models.get_card("eam-net"), tta=False) == ""
