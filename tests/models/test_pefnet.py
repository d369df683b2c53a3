"""PEFNet (models/pefnet.py): variant sizes vs the paper, MKCNN, the sinusoidal positional embedding."""
import pytest
import torch

import models
from models import count_params
from models.pefnet import MultiKernelConv, SinusoidalPositionEmbedding2d, sinusoidal_position_embedding_2d

PAPER_PARAMS_M = {"tiny": 52, "small": 74, "base": 129}


@pytest.mark.parametrize("variant", sorted(PAPER_PARAMS_M))
def test_param_counts_within_10_percent_of_the_paper(variant):
    with torch.device("meta"):  # no memory for 123M weights
        model = models.get_entry("pefnet").builder(variant=variant)
    counted = count_params(model)
    assert abs(counted / 1e6 - PAPER_PARAMS_M[variant]) <= 0.10 * PAPER_PARAMS_M[variant]
    if variant == models.base_card("pefnet").default_variant:
        assert counted == models.base_card("pefnet").params


def test_card_lists_the_papers_three_variants_and_the_cpu_one():
    card = models.base_card("pefnet")
    assert set(card.variants) == set(PAPER_PARAMS_M) | {"efficientnet_lite0"} and card.default_variant == "base"
    with pytest.raises(ValueError):
        models.get_entry("pefnet").builder(variant="large")


def test_a_card_names_a_checkpoints_variant_other_than_the_default():
    import dataclasses

    base = models.base_card("pefnet")
    assert "variant" not in base.summary()
    lite = dataclasses.replace(base, checkpoint_variant={"variant": "efficientnet_lite0"})
    assert "variant efficientnet_lite0; " in lite.summary()


def test_efficientnet_lite0_variant_feeds_the_decoder_strides_4_to_32():
    torch.manual_seed(0)
    model = models.create_model("pefnet", checkpoint=False, variant="efficientnet_lite0").eval()
    assert model.backbone.feature_info.reduction() == [4, 8, 16, 32]
    assert model.backbone_name.startswith("tf_efficientnet_lite0")
    assert count_params(model) < 6e6  # the MPE decoder on a 3.4 M encoder, not a ConvNeXt
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 80))
    assert out["logits"].shape == (1, 1, 96, 80)
    assert out["attention"]["mpe_energy"].shape == (1, 1, 48, 40)  # stride 2, as with ConvNeXt


@pytest.mark.parametrize("hw", [(4, 6), (9, 7)])
def test_position_embedding_any_size_and_distinct_positions(hw):
    h, w = hw
    pe = sinusoidal_position_embedding_2d(h, w, 16)
    assert pe.shape == (1, 16, h, w)
    assert pe.abs().max() <= 1.0
    flat = pe[0].flatten(1).T  # [h*w, c]: one vector per position
    distances = torch.cdist(flat, flat) + torch.eye(h * w) * 1e3
    assert distances.min() > 1e-3, "two positions share an embedding"
    # half the channels vary along y only, half along x only
    assert torch.allclose(pe[0, :8], pe[0, :8, :, :1].expand(8, h, w))
    assert torch.allclose(pe[0, 8:], pe[0, 8:, :1, :].expand(8, h, w))


def test_position_embedding_is_shared_across_sizes_and_cached():
    small = sinusoidal_position_embedding_2d(4, 4, 12)
    large = sinusoidal_position_embedding_2d(8, 8, 12)
    assert torch.allclose(small, large[..., :4, :4])  # the same absolute positions
    module = SinusoidalPositionEmbedding2d()
    x = torch.zeros(2, 12, 4, 4)
    assert torch.allclose(module(x), small.expand(2, -1, -1, -1))
    assert module.embedding(x) is module.embedding(x.clone())
    assert len(module._cache) == 1 and not list(module.state_dict())


def test_mkcnn_keeps_the_shape():
    assert MultiKernelConv(8)(torch.randn(2, 8, 5, 7)).shape == (2, 8, 5, 7)


def test_mpe_energy_is_min_max_scaled_at_half_resolution():
    torch.manual_seed(0)
    model = models.create_model("pefnet", checkpoint=False, variant="tiny").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    energy = out["attention"]["mpe_energy"]
    assert energy.shape == (2, 1, 32, 32)
    assert torch.allclose(energy.flatten(1).amax(1), torch.ones(2))
    assert torch.allclose(energy.flatten(1).amin(1), torch.zeros(2))
    assert "aux_logits" not in out
