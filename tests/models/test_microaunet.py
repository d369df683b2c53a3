"""MicroAUNet and its distillation teachers: sizes against MODELS.md [V], block behaviour."""
from pathlib import Path

import pytest
import torch

import models
from models import count_params
from models.microaunet import (
    DWD,
    LDGA,
    LSCAB,
    MALUNet,
    MicroAUNet,
    WIDTHS,
    build_teacher,
)

EFFNET_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights" / "tf_efficientnet_lite0.in1k.safetensors"
PAPER = (4, 8, 12, 16, 24, 32)
REPO = (8, 16, 24, 32, 48, 64)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, 24_881),  # the paper's 0.0249M
    ({"variant": "paper"}, 24_881),
    ({"variant": "repo"}, 84_281),  # the official code's default widths
    ({"widths": REPO}, 84_281),
    ({"widths": list(PAPER)}, 24_881),  # a checkpoint header stores a list
])
def test_param_counts_match_the_paper_and_the_code(kwargs, expected):
    model = models.create_model("microaunet", checkpoint=False, **kwargs)
    assert count_params(model) == expected


def test_card():
    card = models.base_card("microaunet")  # the paper variant's figures; the shipped file may be another
    assert card.params == 24_881 and card.normalization == "minmax" and card.input_size == 256
    assert card.attention_maps == ("lscab_spatial",)
    assert set(card.variants) == set(WIDTHS)  # the trainer checks names against the card


def test_teacher_is_not_a_product_model():
    assert set(models.list_models()) == {"ea-dk", "microaunet", "pefnet", "dino-keys", "eam-net"}


def test_malunet_teacher_param_count():
    assert count_params(MALUNet()) == 177_943
    assert count_params(build_teacher("malunet")) == 177_943


def test_lscab_shares_its_parameters_across_levels():
    widths = PAPER[:5]
    lscab = LSCAB(widths)
    total = sum(widths)
    # one Conv1d(k3), ONE FC(sum c -> sum c), one 7x7 conv on 2 maps, alpha and beta
    assert count_params(lscab) == 3 + (total * total + total) + 2 * 49 + 2
    assert lscab.alpha.item() == 0.5 and lscab.beta.item() == 0.5
    skips = [torch.randn(2, c, 64 // 2 ** i, 64 // 2 ** i, requires_grad=True) for i, c in enumerate(widths)]
    refined, spatial = lscab(skips)
    assert [r.shape for r in refined] == [s.shape for s in skips]
    assert [s.shape for s in spatial] == [(2, 1, *t.shape[-2:]) for t in skips]
    assert all(0 <= s.min() and s.max() <= 1 for s in spatial)
    # the deepest level alone trains the spatial conv shared with every level, and its
    # channel weights are mixed from all levels by the one shared FC
    refined[-1].sum().backward()
    assert lscab.satt.conv.weight.grad.abs().sum() > 0
    assert lscab.catt.fc.weight.grad[-widths[-1]:, :widths[0]].abs().sum() > 0
    assert skips[0].grad.abs().sum() > 0


def test_lscab_formula():
    torch.manual_seed(0)
    lscab = LSCAB((4, 8))
    skips = [torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4)]
    refined, spatial = lscab(skips)
    channel = lscab.catt(skips)
    for t, r, a, s in zip(skips, refined, channel, spatial):
        torch.testing.assert_close(r, (0.5 * a + 0.5 * s) * t + t)


def test_blocks_keep_or_change_width():
    x = torch.randn(1, 8, 16, 16)
    assert DWD(8)(x).shape == x.shape
    assert LDGA(8, 12)(x).shape == (1, 12, 16, 16)
    assert count_params(LDGA(8, 8)) < count_params(LDGA(8, 12))  # projected shortcut only when needed


@pytest.mark.parametrize("size", [(64, 64), (96, 80), (20, 36)])
def test_training_outputs_for_distillation(size):
    model = MicroAUNet().train()
    out = model(torch.rand(2, 3, *size))
    assert out["logits"].shape == (2, 1, *size)
    feats = out["features"]
    assert [f.shape[1] for f in feats] == list(PAPER[:5])
    assert all(a.shape[-1] >= b.shape[-1] for a, b in zip(feats, feats[1:]))
    assert out["decoder_features"].shape[:2] == (2, PAPER[0])
    assert out["decoder_features"].shape[-2:] == feats[0].shape[-2:]
    assert out["attention"]["lscab_spatial"].shape == (2, 1, *size)


def test_features_are_taken_after_lscab():
    model = MicroAUNet().train()
    seen = {}
    model.lscab.register_forward_hook(lambda mod, inp, out: seen.update(out=out[0]))
    out = model(torch.rand(1, 3, 64, 64))
    assert all(f is s for f, s in zip(out["features"], seen["out"]))


def test_eval_mode_returns_only_the_contract():
    out = MicroAUNet().eval()(torch.rand(1, 3, 64, 64))
    assert set(out) == {"logits", "attention"}


def test_native_size_resolutions():
    model = MicroAUNet().train()
    out = model(torch.rand(1, 3, 256, 256))
    assert [f.shape[-1] for f in out["features"]] == [128, 64, 32, 16, 8]


def test_malunet_teacher_outputs():
    teacher = build_teacher("malunet").train()
    out = teacher(torch.rand(2, 3, 64, 64))
    assert out["logits"].shape == (2, 1, 64, 64)
    assert [f.shape[1] for f in out["features"]] == [8, 16, 24, 32, 48]
    assert out["decoder_features"].shape == (2, 8, 32, 32)
    assert 0 <= out["attention"]["scab_spatial"].min() and out["attention"]["scab_spatial"].max() <= 1


def test_efficientnet_teacher_outputs():
    teacher = build_teacher("efficientnet_lite0").train()
    out = teacher(torch.rand(1, 3, 64, 64))
    assert out["logits"].shape == (1, 1, 64, 64)
    assert [f.shape[-1] for f in out["features"]] == [32, 16, 8, 4, 2]
    assert out["decoder_features"].shape[-2:] == (32, 32)


def test_unknown_teacher():
    with pytest.raises(ValueError):
        build_teacher("unet")


@pytest.mark.skipif(not EFFNET_WEIGHTS.is_file(), reason="local EfficientNet-Lite0 weights are absent")
def test_efficientnet_teacher_loads_pretrained_weights():
    scratch = build_teacher("efficientnet_lite0")
    teacher = build_teacher("efficientnet_lite0", pretrained_backbone=True, backbone_weights=EFFNET_WEIGHTS)
    stem = teacher.encoder.conv_stem.weight
    assert not torch.equal(stem, scratch.encoder.conv_stem.weight)
    from safetensors.torch import load_file

    assert torch.equal(stem, load_file(str(EFFNET_WEIGHTS))["conv_stem.weight"])
