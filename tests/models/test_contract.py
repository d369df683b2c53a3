"""The contract every registered network keeps (see models/__init__.py)."""
import pytest
import torch

import models
from models import count_params

EXPECTED = {"ea-dk", "microaunet", "pefnet", "dino-keys", "eam-net"}
# Small variants keep the CPU suite fast; each variant's own file tests the rest.
FAST_KWARGS = {"pefnet": {"variant": "tiny"}}


def build(name):
    return models.create_model(name, pretrained_backbone=False, checkpoint=False, **FAST_KWARGS.get(name, {}))


def test_all_five_are_registered():
    assert EXPECTED <= set(models.list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_card_is_complete(name):
    card = models.get_card(name)
    assert card.name == name and card.title and card.arxiv
    assert card.task in ("polyp", "skin")
    assert card.input_size >= 64 and len(card.mean) == 3 and len(card.std) == 3
    assert card.params > 0 and card.gflops > 0
    assert card.attention_maps, "every network shows at least one attention map"


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("size", [(64, 64), (96, 80)])
def test_forward_shapes_and_attention(name, size):
    model = build(name).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        out = model(x)
    assert out["logits"].shape == (1, 1, *size)
    assert torch.isfinite(out["logits"]).all()
    assert set(models.get_card(name).attention_maps) <= set(out["attention"])
    for key, amap in out["attention"].items():
        assert amap.dim() == 4 and amap.shape[:2] == (1, 1), key
        assert torch.isfinite(amap).all(), key
        assert amap.min() >= 0 and amap.max() <= 1, key


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_backward_reaches_every_trainable_weight(name):
    torch.manual_seed(0)
    model = build(name).train()
    out = model(torch.randn(2, 3, 64, 64))
    loss = out["logits"].mean() + sum(a.mean() for a in out.get("aux_logits", []))
    loss.backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient reaches {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
        else:
            assert p.grad is None, f"{name}: frozen {pname} got a gradient"


# pefnet's card counts its base variant (123 M): tests/models/test_pefnet.py counts all three on "meta".
# base_card: the default variant's card; a shipped checkpoint's card states its own variant's figures.
@pytest.mark.parametrize("name", sorted(EXPECTED - {"pefnet"}))
def test_card_params_match_the_network(name):
    assert count_params(build(name)) == models.base_card(name).params


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_card_variant_builds(name):
    """The card (torch-free, read by the trainer's name check and the menus) lists exactly
    the variants the builder knows: a variant missing from the card cannot be trained."""
    for variant in models.base_card(name).variants:
        models.create_model(name, pretrained_backbone=False, checkpoint=False, variant=variant)
    with pytest.raises(ValueError):
        models.create_model(name, pretrained_backbone=False, checkpoint=False, variant="no-such-variant")
