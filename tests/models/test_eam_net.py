"""EAM-Net: size against the paper, block behaviour (MRCF, CMAM, EAB), outputs."""
import pytest
import torch

import models
from models import count_params
from models.eam_net import CMAM, EAB, MRCF, EAMNet

PAPER_PARAMS = 4.6e6


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EAMNet()


def test_params_within_10_percent_of_the_paper(net):
    params = count_params(net)
    assert abs(params - PAPER_PARAMS) / PAPER_PARAMS < 0.10
    assert params == models.get_card("eam-net").params


def test_card():
    card = models.get_card("eam-net")
    assert card.task == "skin" and card.input_size == 256 and card.normalization == "imagenet"
    assert set(card.attention_maps) == {"cmam_spatial", "eab_max"}


@pytest.mark.parametrize("size", [(16, 16), (9, 13)])
def test_mrcf_keeps_shape(size):
    block = MRCF(32)
    x = torch.randn(2, 32, *size)
    assert block(x).shape == x.shape
    # three depthwise dilated branches (3/5/7) on C/4 channels each, one group kept as is
    assert [b[0].dilation[0] for b in block.branches] == [3, 5, 7]
    assert all(b[0].groups == 8 and b[0].in_channels == 8 for b in block.branches)


def test_cmam_keeps_shape_and_pools_keys():
    block = CMAM(64).eval()
    x = torch.randn(1, 64, 40, 24)
    out = block(x)
    assert out.shape == x.shape
    s_map = block.last_spatial_map
    assert s_map.shape == (1, 1, 40, 24) and 0 <= s_map.min() and s_map.max() <= 1
    _, k, v = block._tokens(block.q_channel, block.kv_channel, x)
    assert k.shape == v.shape == (1, 16 * 16, 16)  # <= 16x16 tokens of d = C/4


def test_eab_keeps_half_the_channels():
    torch.manual_seed(0)
    block = EAB(32).eval()  # eval: BN is an identity at init, so the added term is F_hat * mask
    s = torch.randn(3, 32, 12, 10)
    affinity, read = block.read_memory(s)
    assert affinity.shape == (3, 120, 64) and read.shape == (3, 120, 32)
    torch.testing.assert_close(affinity.sum(dim=2), torch.ones(3, 120))  # l1 over the S units
    mask = block.channel_mask(read)
    assert (mask.sum(dim=1) == 16).all()
    # the kept channels are those with the largest mean |F_hat|
    score = read.abs().mean(dim=1)
    assert (score[mask.bool()].view(3, 16).min(1).values >= score[~mask.bool()].view(3, 16).max(1).values).all()
    added = block(s) - s
    kept = added.abs().amax(dim=(2, 3)) > 0
    assert (kept.sum(dim=1) == 16).all()


def test_training_outputs(net):
    net.train()
    out = net(torch.randn(2, 3, 64, 48))
    assert out["logits"].shape == (2, 1, 64, 48)
    aux = out["aux_logits"]
    assert len(aux) == 5 and all(a.shape[:2] == (2, 1) for a in aux)
    assert [a.shape[-2] for a in aux] == [4, 8, 16, 32, 64]  # bottleneck, then /8 .. /1
    for name in ("cmam_spatial", "eab_max"):
        amap = out["attention"][name]
        assert amap.shape == (2, 1, 64, 48) and 0 <= amap.min() and amap.max() <= 1


def test_eval_has_no_aux(net):
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 33, 47))
    assert out["logits"].shape == (1, 1, 33, 47) and "aux_logits" not in out
